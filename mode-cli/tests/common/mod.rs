//! Runs the built `mode` binary against a simulator started in-process, and checks that no
//! run ever shows a key on stdout or stderr.

#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use mode_sim::config::{DEMO_APP_KEY, demo_device_key};
use mode_sim::{Sim, SimConfig};
use tokio::io::AsyncReadExt;

/// Keys that must never appear in any output.
pub const SECRETS: &[&str] = &[
    "v1.demo-device-1001",
    "v1.demo-device-1002",
    "v1.demo-app",
    "v1.wrong-key",
    "demo-provisioning-token",
];

/// What one run of `mode` produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout lines parsed as JSON.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON {l:?}: {e}")))
            .collect()
    }
}

/// Asserts that `text` holds no key.
pub fn assert_no_secret(text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "a key leaked: {secret} in {text}");
    }
}

/// The environment of a run: each name with its value.
pub fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A simulator with the demo project, and the environment that points `mode` at it.
pub struct Env {
    pub sim: Sim,
    pub vars: Vec<(String, String)>,
    pub home: tempfile::TempDir,
}

impl Env {
    pub async fn start() -> Env {
        let sim = Sim::start(SimConfig::demo())
            .await
            .expect("simulator starts");
        let mqtt = sim.mqtt_addr();
        let vars = [
            ("MODE_PLAIN", "1".to_owned()),
            ("MODE_HOST", mqtt.ip().to_string()),
            ("MODE_PORT", mqtt.port().to_string()),
            (
                "MODE_MQTT_WS_URL",
                format!("ws://{}/mqtt", sim.mqtt_ws_addr()),
            ),
            (
                "MODE_API_URL",
                format!("http://{}", sim.http_addr().unwrap()),
            ),
            ("MODE_DEVICE_ID", "1001".to_owned()),
            ("MODE_API_KEY", demo_device_key(1001)),
            ("MODE_APP_KEY", DEMO_APP_KEY.to_owned()),
            ("MODE_BACKOFF_MS", "50".to_owned()),
            ("MODE_TIMEOUT", "5".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Env {
            sim,
            vars,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// The environment with `name` set to `value` (or removed when `None`).
    pub fn with(&self, name: &str, value: Option<&str>) -> Vec<(String, String)> {
        let mut vars: Vec<_> = self
            .vars
            .iter()
            .filter(|(k, _)| k != name)
            .cloned()
            .collect();
        if let Some(value) = value {
            vars.push((name.to_owned(), value.to_owned()));
        }
        vars
    }

    /// Runs `mode args` with the simulator's environment.
    pub async fn mode(&self, args: &[&str]) -> Run {
        mode(args, &self.vars, self.home.path()).await
    }

    /// Runs `mode args` and asserts it succeeded (exit 0).
    pub async fn ok(&self, args: &[&str]) -> Run {
        let run = self.mode(args).await;
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        run
    }

    /// Runs `mode args` with `vars`.
    pub async fn mode_with(&self, args: &[&str], vars: &[(String, String)]) -> Run {
        mode(args, vars, self.home.path()).await
    }

    /// Starts `mode args` and returns the child (for commands that follow).
    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        command(args, &self.vars, self.home.path())
            .spawn()
            .expect("mode starts")
    }

    pub fn cloud(&self) -> &mode_sim::Cloud {
        self.sim.cloud()
    }
}

fn command(
    args: &[&str],
    vars: &[(String, String)],
    home: &std::path::Path,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_mode"));
    cmd.args(args)
        .env_clear()
        .env("HOME", home)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs `mode args` with no settings at all; asserts it exits 2 (a usage error).
pub async fn usage_error(args: &[&str]) {
    let run = mode(args, &[], &std::env::temp_dir()).await;
    assert_eq!(run.code, 2, "{args:?}: {run:?}");
}

/// Runs `mode args` with exactly `vars` (and HOME), within 20 s, and checks the output for keys.
pub async fn mode(args: &[&str], vars: &[(String, String)], home: &std::path::Path) -> Run {
    let child = command(args, vars, home).spawn().expect("mode starts");
    finish(child).await
}

/// Waits for a started `mode` (20 s at most) and checks its output for keys.
pub async fn finish(child: tokio::process::Child) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("mode finished within 20 s")
        .expect("mode ran");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_no_secret(&run.stdout);
    assert_no_secret(&run.stderr);
    run
}

/// Reads a started child's stdout until a line contains `needle`; returns the lines so far.
pub async fn read_until(child: &mut tokio::process::Child, needle: &str) -> Vec<String> {
    let stdout = child.stdout.as_mut().expect("piped stdout");
    let lines = lines_until(stdout, needle).await;
    lines.iter().for_each(|l| assert_no_secret(l));
    lines
}

/// Reads `mode sim`'s banner until `needle`: the simulator's own keys are meant to show there.
pub async fn read_banner_until(child: &mut tokio::process::Child, needle: &str) -> Vec<String> {
    lines_until(child.stdout.as_mut().expect("piped stdout"), needle).await
}

/// Reads a started child's stderr until a line contains `needle`.
pub async fn stderr_until(child: &mut tokio::process::Child, needle: &str) -> Vec<String> {
    let stderr = child.stderr.as_mut().expect("piped stderr");
    let lines = lines_until(stderr, needle).await;
    lines.iter().for_each(|l| assert_no_secret(l));
    lines
}

async fn lines_until(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    needle: &str,
) -> Vec<String> {
    // Byte by byte, so nothing past the line is consumed from the pipe.
    let mut seen = Vec::new();
    let mut line = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        let mut byte = [0u8; 1];
        while let Ok(1) = stream.read(&mut byte).await {
            if byte[0] != b'\n' {
                line.push(byte[0]);
                continue;
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            line.clear();
            let done = text.contains(needle);
            seen.push(text);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert!(found == Ok(true), "no line with {needle:?} in {seen:?}");
    seen
}

/// Drains what is left of a child's stderr.
pub async fn stderr_of(child: &mut tokio::process::Child) -> String {
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text).await;
    }
    text
}
