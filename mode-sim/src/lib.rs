//! mode-sim: a local MODE cloud.
