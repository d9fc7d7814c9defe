//! Huge input from a client (a 900 KB kv key, a 60 KB topic, a 900 KB field) is quoted in the
//! simulator's logs and error bodies by its head and length, never whole. The logs of this test
//! binary (the simulator's, every level) are captured in memory by one global subscriber.

mod common;

use std::sync::OnceLock;

use common::*;
use mode_test_support::Captured;
use rumqttc::QoS;

const BIG: usize = 900_000;
/// The longest log line or error body allowed: our own words plus 128 bytes of quoted input.
const LINE_MAX: usize = 2048;

fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            // The simulator's lines only: the test's own rumqttc client logs what it sends.
            .with_env_filter("mode_sim=trace")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        logs
    })
}

/// Every captured line is short, and some line says `needle`. Returns that line.
fn assert_logged_briefly(needle: &str) -> String {
    let text = logs().text();
    for line in text.lines() {
        assert!(
            line.len() <= LINE_MAX,
            "a log line of {} bytes: {}…",
            line.len(),
            &line[..200]
        );
    }
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no log line says {needle:?}"))
        .to_owned()
}

#[tokio::test]
async fn a_huge_invalid_kv_key_or_topic_is_logged_by_its_head_and_length() {
    logs();
    let sim = demo().await;
    let mut opts = options(&sim, D1);
    opts.set_max_packet_size(2 << 20, 2 << 20);
    let (device, mut eventloop) = connect_with(opts).await;
    let key = format!("{}!", "k".repeat(BIG - 1));
    let update = format!(r#"{{"action":"set","key":"{key}","value":1}}"#);
    device
        .publish("/devices/1001/kv", QoS::AtLeastOnce, false, update)
        .await
        .unwrap();
    // The refusal is logged before the PUBACK goes out.
    puback(&mut eventloop).await;
    let line = assert_logged_briefly("kv update refused");
    assert!(line.contains(&format!("({BIG} bytes)")), "{line}");

    let topic = format!("/devices/1001/{}", "t".repeat(60_000));
    device
        .publish(topic, QoS::AtMostOnce, false, "x")
        .await
        .unwrap();
    until_error(&mut eventloop).await;
    let line = assert_logged_briefly("mqtt connection closed");
    assert!(line.contains("unknown topic"), "{line}");

    let mut opts = options(&sim, D1);
    opts.set_max_packet_size(2 << 20, 2 << 20);
    let (subscriber, mut eventloop) = connect_with(opts).await;
    let filter = format!("/devices/1001/{}", "f".repeat(60_000));
    subscriber.subscribe(filter, QoS::AtMostOnce).await.unwrap();
    suback(&mut eventloop).await;
    assert_logged_briefly("refusing subscription");
}

#[tokio::test]
async fn a_huge_field_in_a_rest_body_comes_back_in_the_error_by_its_head_and_length() {
    logs();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = demo().await;
    let http = sim.http_addr().unwrap();
    let send = |path: &'static str, body: String| {
        reqwest::Client::new()
            .post(format!("http://{http}{path}"))
            .header("Authorization", format!("ModeCloud {}", key(D1)))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let huge = "v".repeat(BIG);
    for (path, body) in [
        (
            "/deviceRegistration",
            format!(r#"{{"claimable": "{huge}"}}"#),
        ),
        (
            "/deviceRegistration",
            format!(r#"{{"deviceId": "{huge}"}}"#),
        ),
        ("/devices", format!(r#"{{"{huge}": 1}}"#)),
    ] {
        let resp = send(path, body).await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_client_error(), "{status}");
        assert!(
            text.len() <= LINE_MAX,
            "{path}: an error body of {} bytes: {}…",
            text.len(),
            &text[..200]
        );
    }
    let put = reqwest::Client::new()
        .put(format!("http://{http}/devices/1001/event"))
        .header("Authorization", format!("ModeCloud {}", key(D1)))
        .body(format!(r#"{{"eventType": "t", "eventData": "{huge}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 400);
    let text = put.text().await.unwrap();
    assert!(
        text.len() <= LINE_MAX,
        "an error body of {} bytes",
        text.len()
    );
    assert_logged_briefly("mode-sim started");
}
