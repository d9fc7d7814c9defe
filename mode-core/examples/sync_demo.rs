//! The IO-free core at work, with no network: a device session receives a command, a DDP
//! reload and out-of-order, duplicated sync messages, and encodes what it sends back.
//! Run: `cargo run -p mode-core --example sync_demo`.

use mode_core::ddp::{Applied, Change};
use mode_core::proto::{Event, Qos};
use mode_core::session::{Incoming, Session};
use serde_json::json;

fn describe(incoming: &Incoming) -> String {
    match incoming {
        Incoming::Command(command) => {
            format!("command {:?} {}", command.action, json!(command.parameters))
        }
        Incoming::Kv(Applied::Ignored { rev, held, reason }) => {
            format!("kv rev {rev} ignored ({reason:?}: key already at rev {held})")
        }
        Incoming::Kv(Applied::Changed {
            rev,
            reload,
            changes,
        }) => {
            let what: Vec<String> = changes
                .iter()
                .map(|change| match change {
                    Change::Set {
                        key,
                        value,
                        previous,
                    } => {
                        let before = previous
                            .as_ref()
                            .map_or("(absent)".to_owned(), |v| v.to_string());
                        format!("{key}: {before} -> {value}")
                    }
                    Change::Deleted { key, previous } => format!("{key}: {previous} deleted"),
                })
                .collect();
            let kind = if *reload { "reload" } else { "change" };
            format!("kv {kind} at rev {rev}: [{}]", what.join(", "))
        }
        Incoming::BulkResponse { label, response } => {
            format!("bulk response on {label}: {response:?}")
        }
        Incoming::Unrelated { topic, reason } => format!("unrelated {topic}: {reason}"),
        Incoming::Invalid { topic, error } => format!("invalid payload on {topic}: {error}"),
    }
}

fn main() {
    let device_id = 1234;
    let mut session = Session::new(device_id, 0x5eed);
    println!("subscribe to: {:?}", session.subscriptions());
    session.on_subscribed();

    let kv = format!("/devices/{device_id}/kv");
    let inbox: [(&str, &[u8]); 7] = [
        (&kv, br#"{"action":"reload","rev":82,"numItems":2,"items":[{"key":"xyz","value":"hello world","modificationTime":"2017-11-19T01:23:22Z"},{"key":"foo","value":22399,"modificationTime":"2017-11-21T11:09:18Z"}]}"#),
        (&kv, br#"{"action":"delete","rev":85,"key":"xyz"}"#),
        (&kv, br#"{"action":"set","rev":83,"key":"xyz","value":"I have changed"}"#),
        (&kv, br#"{"action":"set","rev":84,"key":"foo","value":1}"#),
        (&kv, br#"{"action":"set","rev":84,"key":"foo","value":1}"#),
        ("/devices/1234/command", br#"{"action":"light","parameters":{"on":true,"serial":123456789012345678901234567890}}"#),
        (&kv, br#"{"action":"set","rev":"86"}"#),
    ];
    for (topic, payload) in inbox {
        println!("<- {topic}: {}", describe(&session.handle(topic, payload)));
    }
    println!(
        "mirror at rev {}: {}",
        session.mirror().rev(),
        session.mirror().snapshot()
    );

    let event = Event::new(
        "light-changed",
        json!({"on": true}).as_object().cloned().unwrap_or_default(),
    );
    for out in [
        session
            .event(&event, Qos::AtLeastOnce)
            .expect("valid event"),
        session.kv_set("status", json!("ok")).expect("valid key"),
    ] {
        println!(
            "-> {} (qos {}): {}",
            out.topic,
            out.qos.level(),
            String::from_utf8_lossy(&out.payload)
        );
    }
}
