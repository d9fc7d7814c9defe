//! A malformed message from the cloud (sent as raw bytes by the simulator's test control) is
//! reported as `Notification::Error` with its topic, on every transport, and the connection
//! goes on: a command sent after it still arrives.

use mode_client::{Notification, Transport};
use mode_core::proto::{Command, Map};
use mode_integration::*;
use mode_sim::cloud::RawChannel;

async fn malformed_message_is_a_notification(transport: Transport) {
    let sim = demo().await;
    let builder = config(&sim, D1).transport(transport);
    let builder = match transport {
        // The demo's plain MQTT over WebSocket listener.
        Transport::MqttWebSocket => {
            builder.mqtt_ws_url(format!("ws://{}/mqtt", sim.mqtt_ws_addr()))
        }
        _ => builder,
    };
    let (_client, mut notifications) = start(builder).await;
    check(&sim, &mut notifications).await;
}

async fn check(sim: &mode_sim::Sim, notifications: &mut mode_client::Notifications) {
    for (channel, topic) in [
        (RawChannel::Command, "/devices/1001/command"),
        (RawChannel::Kv, "/devices/1001/kv"),
    ] {
        let sent = sim
            .cloud()
            .publish_raw(D1, channel, b"{\"action\": 42".to_vec().into())
            .unwrap();
        assert!(sent >= 1, "no connection receives {channel:?}");
        match next(notifications, |n| matches!(n, Notification::Error { .. })).await {
            Notification::Error { topic: got, error } => {
                assert!(got.ends_with(topic.rsplit('/').next().unwrap()), "{got}");
                assert!(!error.to_string().is_empty());
            }
            _ => unreachable!(),
        }
    }
    sim.cloud()
        .send_command(D1, Command::new("after", Map::new()))
        .unwrap();
    next(
        notifications,
        |n| matches!(n, Notification::Command(c) if c.action == "after"),
    )
    .await;
}

#[tokio::test]
async fn a_malformed_message_over_mqtt_is_an_error_notification_and_the_link_stays() {
    malformed_message_is_a_notification(Transport::Mqtt).await;
}

#[tokio::test]
async fn a_malformed_message_over_mqtt_websocket_is_an_error_notification_and_the_link_stays() {
    malformed_message_is_a_notification(Transport::MqttWebSocket).await;
}

#[tokio::test]
async fn a_malformed_message_over_the_http_websockets_is_an_error_notification_and_the_link_stays()
{
    malformed_message_is_a_notification(Transport::Http).await;
}
