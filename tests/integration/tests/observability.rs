//! What the client logs: every line of its connection task carries the device id, and the API
//! key appears nowhere, at any level, whether the key is accepted or refused.

use mode_client::Client;
use mode_core::proto::Map;
use mode_integration::*;
use mode_test_support::Captured;

// One thread: the subscriber set for this thread sees the client's tasks too.
#[tokio::test(flavor = "current_thread")]
async fn logs_name_the_device_and_never_the_api_key() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let sim = mode_sim::Sim::start(mode_sim::SimConfig::demo())
        .await
        .unwrap();
    let (client, _notifications) = connected(&sim, D1).await;
    send_acked(&client, "logged", Map::new()).await;
    client.close(WAIT).await.unwrap();

    let wrong = "v1.this-key-must-never-be-logged";
    let builder = plain(&sim, D2, wrong).backoff(fast_backoff());
    let (refused, mut notifications) = Client::connect(builder.build().unwrap()).unwrap();
    disconnected(&mut notifications).await;
    refused.close(WAIT).await.unwrap();

    let text = captured.text();
    assert!(text.contains("device_id=1001"), "{text}");
    assert!(text.contains("device_id=1002"), "{text}");
    assert!(text.contains("connected"), "{text}");
    assert!(text.contains("authentication failed"), "{text}");
    assert!(!text.contains(&key(D1)), "the accepted key was logged");
    assert!(!text.contains(wrong), "the refused key was logged");
}
