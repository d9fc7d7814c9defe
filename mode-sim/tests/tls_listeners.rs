//! Every TLS listener (MQTT over TLS, MQTT over `wss://`, HTTPS) with a private CA made by
//! rcgen, client-certificate mode (`client_ca`: a verified certificate whose CN is a device id
//! stands for that device's key), and the admin API's raw publish.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use mode_sim::config::TlsConfig;
use mode_sim::{Sim, SimConfig};
use mode_test_support::{Issued, Pki};
use rumqttc::{ConnectReturnCode, MqttOptions, QoS, TlsConfiguration, Transport};

const ADMIN: &str = "admin-secret";

/// A simulator whose TLS listeners use a `localhost` certificate of a fresh CA and, with
/// `client_certs`, require client certificates of that CA.
struct TlsSim {
    sim: Sim,
    pki: Pki,
}

impl TlsSim {
    async fn start(client_certs: bool) -> TlsSim {
        let pki = Pki::new("sim test CA");
        let mut tls = TlsConfig::new(pki.path("server.pem"), pki.path("server.key"));
        if client_certs {
            tls = tls.with_client_ca(pki.path("ca.pem"));
        }
        let mut config = SimConfig {
            tls: Some(tls),
            ..SimConfig::demo()
        };
        config.admin_key = Some(ADMIN.into());
        let sim = Sim::start(config).await.unwrap();
        TlsSim { sim, pki }
    }

    /// A client certificate with subject CN `cn`, issued by the simulator's CA.
    fn client_cert(&self, cn: &str) -> (PathBuf, PathBuf) {
        self.pki.client_cert(cn, cn, Issued::Valid)
    }

    fn rustls(&self, client: Option<&(PathBuf, PathBuf)>) -> rustls::ClientConfig {
        let builder = tls_trusting(self.pki.ca.der().clone());
        match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(certs(cert), private_key(key))
                .unwrap(),
        }
    }

    fn mqtt(
        &self,
        device: &str,
        password: &str,
        client: Option<&(PathBuf, PathBuf)>,
    ) -> MqttOptions {
        let port = self.sim.mqtt_tls_addr().unwrap().port();
        let mut opts = MqttOptions::new("", "localhost", port);
        opts.set_credentials(device, password);
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(self.rustls(client)),
        )));
        opts
    }

    fn https(&self, client: Option<&(PathBuf, PathBuf)>) -> reqwest::Client {
        reqwest::Client::builder()
            .use_preconfigured_tls(self.rustls(client))
            .build()
            .unwrap()
    }

    fn https_url(&self, path: &str) -> String {
        let port = self.sim.https_addr().unwrap().port();
        format!("https://localhost:{port}{path}")
    }
}

fn certs(path: &Path) -> Vec<rustls_pki_types::CertificateDer<'static>> {
    let pem = std::fs::read(path).unwrap();
    rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .unwrap()
}

fn private_key(path: &Path) -> rustls_pki_types::PrivateKeyDer<'static> {
    let pem = std::fs::read(path).unwrap();
    rustls_pemfile::private_key(&mut &pem[..]).unwrap().unwrap()
}

async fn connack(opts: MqttOptions) -> Result<ConnectReturnCode, rumqttc::ConnectionError> {
    let (_client, mut eventloop) = rumqttc::AsyncClient::new(opts, 10);
    match tokio::time::timeout(WAIT, eventloop.poll()).await.unwrap() {
        Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))) => Ok(ack.code),
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => Ok(code),
        Ok(other) => panic!("expected a CONNACK, got {other:?}"),
        Err(err) => Err(err),
    }
}

#[tokio::test]
async fn https_serves_the_rest_api_and_mqtt_runs_over_wss() {
    let t = TlsSim::start(false).await;
    let answer = t
        .https(None)
        .put(t.https_url("/devices/1001/event"))
        .header("Authorization", format!("ModeCloud {}", key(D1)))
        .body(r#"{"eventType":"over-https"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);

    let port = t.sim.mqtt_wss_addr().unwrap().port();
    let mut opts = MqttOptions::new("", format!("wss://localhost:{port}/mqtt"), port);
    opts.set_credentials("1001", key(D1));
    opts.set_transport(Transport::wss_with_config(TlsConfiguration::Rustls(
        Arc::new(t.rustls(None)),
    )));
    let (client, mut eventloop) = connect_with(opts).await;
    publish1(
        &client,
        "/devices/1001/event",
        r#"{"eventType":"over-wss"}"#,
    )
    .await;
    puback(&mut eventloop).await;
    assert_eq!(
        t.sim.cloud().event_types_from(D1),
        ["over-https", "over-wss"]
    );
}

#[tokio::test]
async fn a_client_certificate_naming_the_device_stands_for_its_key() {
    let t = TlsSim::start(true).await;
    let cert = t.client_cert("1001");
    // MQTT: an empty password with the certificate; the right key still works; a wrong key or
    // another device's username is refused.
    let cases = [
        ("1001", "", ConnectReturnCode::Success),
        ("1001", &key(D1), ConnectReturnCode::Success),
        ("1001", "wrong", ConnectReturnCode::BadUserNamePassword),
        ("1002", &key(D2), ConnectReturnCode::NotAuthorized),
    ];
    for (user, password, code) in cases {
        let got = connack(t.mqtt(user, password, Some(&cert))).await.unwrap();
        assert_eq!(got, code, "{user} {password:?}");
    }
    // HTTPS: no key needed; the certificate is the device.
    let https = t.https(Some(&cert));
    let who = json(https.get(t.https_url("/auth")).send().await.unwrap()).await;
    assert_eq!(who["deviceId"], 1001, "{who}");
    let answer = https
        .put(t.https_url("/devices/1001/event"))
        .body(r#"{"eventType":"by-certificate"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    let other = https
        .put(t.https_url("/devices/1002/event"))
        .body(r#"{"eventType":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);
    assert_eq!(
        t.sim.cloud().events_from(D1)[0].event_type,
        "by-certificate"
    );
}

#[tokio::test]
async fn without_a_client_certificate_the_handshake_is_refused_on_every_tls_listener() {
    let t = TlsSim::start(true).await;
    let err = connack(t.mqtt("1001", &key(D1), None)).await.unwrap_err();
    assert!(
        format!("{err:?}").contains("CertificateRequired"),
        "{err:?}"
    );
    let err = t
        .https(None)
        .get(t.https_url("/auth"))
        .send()
        .await
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("CertificateRequired"),
        "{err:?}"
    );
    assert_eq!(t.sim.cloud().connect_attempts(D1).total(), 0);
}

#[tokio::test]
async fn the_admin_api_publishes_raw_bytes_on_a_devices_channel() {
    let _ = rustls::crypto::ring::default_provider().install_default(); // for reqwest
    let sim = {
        let mut config = SimConfig::demo();
        config.admin_key = Some(ADMIN.into());
        Sim::start(config).await.unwrap()
    };
    let (client, mut eventloop) = client(&sim, D1).await;
    client
        .subscribe("/devices/1001/command", QoS::AtMostOnce)
        .await
        .unwrap();
    suback(&mut eventloop).await;
    let http = sim.http_addr().unwrap();
    let raw_publish = async |channel: &str, body: &'static [u8]| {
        reqwest::Client::new()
            .post(format!(
                "http://{http}/admin/devices/1001/publish/{channel}"
            ))
            .header("Authorization", format!("ModeCloud {ADMIN}"))
            .body(body)
            .send()
            .await
            .unwrap()
    };
    let answer = raw_publish("command", b"{not json\xff").await;
    assert_eq!(answer.status(), 200);
    assert_eq!(json(answer).await["delivered"], 1);
    let publish = next_publish(&mut eventloop).await;
    assert_eq!(publish.topic, "/devices/1001/command");
    assert_eq!(&publish.payload[..], b"{not json\xff");
    // Offered to the connection, which is not subscribed to kv and forwards nothing (the
    // command above is the only publish it gets; see the check at the end); an unknown
    // channel is a 404.
    let kv = raw_publish("kv", b"x").await;
    assert_eq!(json(kv).await["delivered"], 1);
    let nowhere = raw_publish("bulk", b"x").await;
    assert_eq!(nowhere.status(), 404);
    // A command sent now is the next publish: the kv bytes never reached the connection.
    sim.cloud()
        .send_command(
            D1,
            mode_core::proto::Command::new("after", Default::default()),
        )
        .unwrap();
    assert_eq!(
        next_publish(&mut eventloop).await.topic,
        "/devices/1001/command"
    );
}

async fn json(answer: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap()
}
