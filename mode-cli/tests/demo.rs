//! `mode demo` plays its whole scenario on every transport and says so in its summary.

mod common;

async fn demo_completes(transport: &str) {
    let run = common::mode(
        &["demo", "--transport", transport],
        &[],
        &std::env::temp_dir(),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    for expected in [
        "events sent 8 / acknowledged 8 / recorded by the cloud 8",
        "commands handled 3",
        "reconnects 1",
        "reloads 2",
        "device mirror {\"interval\":10,\"status\":\"ok\"}",
        "ok: the scenario completed",
    ] {
        assert!(
            run.stdout.contains(expected),
            "{expected:?} missing: {}",
            run.stdout
        );
    }
    // Not a terminal: no colour codes.
    assert!(!run.stdout.contains('\x1b'), "{}", run.stdout);
}

#[tokio::test]
async fn demo_completes_its_scenario_over_mqtt() {
    demo_completes("mqtt").await;
}

#[tokio::test]
async fn demo_completes_its_scenario_over_http() {
    demo_completes("http").await;
}

#[tokio::test]
async fn demo_completes_its_scenario_over_mqtt_on_websocket() {
    demo_completes("mqtt-websocket").await;
}

#[tokio::test]
async fn demo_answers_usage_errors_with_exit_code_2() {
    common::usage_error(&["demo", "--transport", "carrier-pigeon"]).await;
    common::usage_error(&[]).await;
}
