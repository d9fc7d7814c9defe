//! The bridge between tokio's clock and the core's caller-given time: the core counts
//! milliseconds from an origin of the driver's choosing, which is when the driver started.

use std::time::Duration;

use mode_core::time::Instant as CoreInstant;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    origin: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            origin: Instant::now(),
        }
    }

    /// Now, as the core counts time.
    pub(crate) fn now(self) -> CoreInstant {
        self.at(Instant::now())
    }

    pub(crate) fn at(self, at: Instant) -> CoreInstant {
        let millis = at.saturating_duration_since(self.origin).as_millis();
        CoreInstant::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
    }

    /// The tokio instant of a core instant, for a timer.
    pub(crate) fn to_tokio(self, at: CoreInstant) -> Instant {
        self.origin + Duration::from_millis(at.as_millis())
    }
}
