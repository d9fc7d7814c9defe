//! MQTT over TLS against the simulator with a test CA made by rcgen: the client trusts an extra
//! CA file, and a wrong CA or host name fails with an error that says what to fix.

use std::path::PathBuf;

use mode_client::{Client, ClientConfig, DisconnectReason, Notification};
use mode_core::proto::{Map, Qos};
use mode_integration::*;
use mode_sim::config::TlsConfig;
use mode_sim::{Sim, SimConfig};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// A simulator serving MQTT over TLS with a certificate for `localhost` issued by a fresh CA.
struct TlsSim {
    sim: Sim,
    ca_file: PathBuf,
    other_ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

async fn tls_sim() -> TlsSim {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("libmode test CA");
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(path("other-ca.pem"), self::ca("someone else").pem()).unwrap();
    std::fs::write(path("server.pem"), server.pem()).unwrap();
    std::fs::write(path("server.key"), server_key.serialize_pem()).unwrap();
    let sim = Sim::start(SimConfig {
        tls: Some(TlsConfig {
            cert: path("server.pem"),
            key: path("server.key"),
        }),
        ..SimConfig::demo()
    })
    .await
    .unwrap();
    TlsSim {
        sim,
        ca_file: path("ca.pem"),
        other_ca_file: path("other-ca.pem"),
        _dir: dir,
    }
}

fn tls_config(t: &TlsSim, host: &str) -> mode_client::ClientConfigBuilder {
    let port = t.sim.mqtt_tls_addr().expect("a TLS listener").port();
    ClientConfig::builder(D1, key(D1))
        .mqtt_host(host)
        .mqtt_port(port)
        .keepalive(std::time::Duration::from_secs(2))
        .backoff(fast_backoff())
        .api_url("http://127.0.0.1:9")
}

async fn first_tls_error(builder: mode_client::ClientConfigBuilder) -> String {
    let (_client, mut notifications) = Client::connect(builder.build().unwrap()).unwrap();
    match next(&mut notifications, |n| {
        matches!(n, Notification::Disconnected { .. })
    })
    .await
    {
        Notification::Disconnected {
            reason: DisconnectReason::Tls(detail),
            ..
        } => detail,
        other => panic!("expected a TLS failure, got {other:?}"),
    }
}

#[tokio::test]
async fn mqtt_over_tls_works_with_the_test_ca_as_an_extra_ca_file() {
    let t = tls_sim().await;
    let (client, _notifications) =
        start(tls_config(&t, "localhost").extra_ca_file(&t.ca_file)).await;
    client
        .send_event("secure", Map::new(), Qos::AtLeastOnce)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(t.sim.cloud().events_from(D1)[0].event_type, "secure");
}

#[tokio::test]
async fn a_server_certificate_from_an_untrusted_ca_is_a_clear_tls_error() {
    let t = tls_sim().await;
    let detail = first_tls_error(tls_config(&t, "localhost").extra_ca_file(&t.other_ca_file)).await;
    assert!(detail.contains("not signed by a trusted CA"), "{detail}");
    assert!(detail.contains("extra_ca_file"), "{detail}");
    assert_eq!(
        t.sim.cloud().connect_attempts(D1).total(),
        0,
        "no CONNECT may follow a failed handshake"
    );
}

#[tokio::test]
async fn a_host_name_the_certificate_does_not_name_is_a_clear_tls_error() {
    let t = tls_sim().await;
    let detail = first_tls_error(tls_config(&t, "127.0.0.1").extra_ca_file(&t.ca_file)).await;
    assert!(
        detail.contains("not valid for the host name 127.0.0.1"),
        "{detail}"
    );
}

#[tokio::test]
async fn danger_accept_invalid_certs_connects_to_a_server_it_cannot_verify() {
    let t = tls_sim().await;
    let (client, _notifications) =
        start(tls_config(&t, "127.0.0.1").danger_accept_invalid_certs(true)).await;
    assert!(client.is_connected());
}

#[tokio::test]
async fn an_unreadable_ca_file_is_refused_at_connect_with_its_path() {
    let t = tls_sim().await;
    let err = Client::connect(
        tls_config(&t, "localhost")
            .extra_ca_file("/nonexistent/ca.pem")
            .build()
            .unwrap(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}
