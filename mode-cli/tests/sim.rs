//! `mode sim` runs the simulator with mode-sim's flags, and the environment its banner prints
//! points the other commands at it.

mod common;

#[tokio::test]
async fn mode_sim_runs_the_simulator_and_its_banner_environment_works() {
    let home = tempfile::tempdir().unwrap();
    let mut sim = tokio::process::Command::new(env!("CARGO_BIN_EXE_mode"))
        .args([
            "sim",
            "--mqtt-port",
            "0",
            "--ws-port",
            "0",
            "--http-port",
            "0",
            "--tls-port",
            "0",
        ])
        .env_clear()
        .env("HOME", home.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let banner = common::read_banner_until(&mut sim, "export MODE_PLAIN=1").await;
    let export = banner.last().unwrap().trim().trim_start_matches("export ");
    // Parse NAME=VALUE words (values quoted with '').
    let vars: Vec<(String, String)> = export
        .split_whitespace()
        .filter_map(|word| word.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect();
    assert!(vars.iter().any(|(k, _)| k == "MODE_API_URL"), "{banner:?}");
    let run = common::mode(&["event", "send", "hello"], &vars, home.path()).await;
    assert_eq!(run.code, 0, "{run:?}");
    let run = common::mode(&["app", "kv", "set", "1001", "k", "1"], &vars, home.path()).await;
    assert_eq!(run.code, 0, "{run:?}");
    sim.start_kill().unwrap();
}

#[tokio::test]
async fn mode_sim_refuses_what_mode_sim_refuses() {
    common::usage_error(&["sim", "--tls-cert", "cert.pem"]).await;
    let missing = [
        "sim",
        "--config",
        "/nonexistent/sim.toml",
        "--mqtt-port",
        "0",
    ];
    common::usage_error(&missing).await;
}
