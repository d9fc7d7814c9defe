//! The `mode-sim` binary as a child process, for tests that kill it or measure its memory.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

/// A running `mode-sim` and the addresses it printed.
pub struct SimProcess {
    pub child: Child,
    pub mqtt: SocketAddr,
    pub mqtt_ws: SocketAddr,
    pub http: SocketAddr,
    /// The read end of its stdout, kept open for its console's replies.
    _stdout: std::io::Lines<std::io::BufReader<ChildStdout>>,
}

impl SimProcess {
    /// Starts the binary on free loopback ports with `args` added; returns once it printed its
    /// addresses (it is listening by then).
    pub async fn start(args: &[&std::ffi::OsStr]) -> SimProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mode-sim"))
            .args(["--mqtt-port", "0", "--ws-port", "0", "--http-port", "0"])
            .args(args)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mode-sim starts");
        let stdout = child.stdout.take().unwrap();
        tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut lines = std::io::BufReader::new(stdout).lines();
            let (mut mqtt, mut mqtt_ws) = (None, None);
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                let addr = |s: &str| s.split('/').next().unwrap().trim().parse().ok();
                let line = line.trim();
                if let Some(rest) = line.strip_prefix("MQTT/WebSocket ws://") {
                    mqtt_ws = addr(rest);
                } else if let Some(rest) = line.strip_prefix("MQTT ") {
                    mqtt = addr(rest);
                } else if let Some(rest) = line.strip_prefix("HTTP ") {
                    let http = addr(rest.trim().trim_start_matches("http://")).unwrap();
                    return SimProcess {
                        child,
                        mqtt: mqtt.unwrap(),
                        mqtt_ws: mqtt_ws.unwrap(),
                        http,
                        _stdout: lines,
                    };
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("mode-sim exited without printing its addresses");
        })
        .await
        .unwrap()
    }

    /// Starts it with `dir` as its data directory.
    pub async fn with_data_dir(dir: &Path) -> SimProcess {
        SimProcess::start(&["--data-dir".as_ref(), dir.as_os_str()]).await
    }

    /// A field of `/proc/{pid}/status` in KiB: `VmRSS` (resident now) or `VmHWM` (the peak).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"))
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
