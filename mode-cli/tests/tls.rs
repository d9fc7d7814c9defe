//! TLS settings: `--ca-file` makes a device trust a private CA (mode-sim's MQTT over TLS with a
//! certificate from a test CA made by rcgen); without it the connection fails with exit 4, and
//! a CA file that holds no certificate is a usage error.

mod common;

use mode_sim::config::{TlsConfig, demo_device_key};
use mode_sim::{Sim, SimConfig};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

#[tokio::test]
async fn a_private_ca_is_trusted_with_ca_file_and_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mode-cli test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    std::fs::write(path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(path("server.pem"), server.pem()).unwrap();
    std::fs::write(path("server.key"), server_key.serialize_pem()).unwrap();
    std::fs::write(path("not-a-cert.pem"), "hello").unwrap();
    let sim = Sim::start(SimConfig {
        tls: Some(TlsConfig::new(path("server.pem"), path("server.key"))),
        ..SimConfig::demo()
    })
    .await
    .unwrap();
    let port = sim.mqtt_tls_addr().unwrap().port().to_string();
    let api_url = format!("http://{}", sim.http_addr().unwrap());
    let vars: Vec<(String, String)> = [
        ("MODE_HOST", "localhost"),
        ("MODE_PORT", &port),
        ("MODE_API_URL", &api_url),
        ("MODE_DEVICE_ID", "1001"),
        ("MODE_API_KEY", &demo_device_key(1001)),
        ("MODE_APP_KEY", mode_sim::config::DEMO_APP_KEY),
        ("MODE_BACKOFF_MS", "50"),
        ("MODE_TIMEOUT", "5"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let home = dir.path();

    let run = common::mode(&["event", "send", "x"], &vars, home).await;
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("TLS"), "{run:?}");

    let ca_file = path("ca.pem");
    let run = common::mode(
        &["--ca-file", ca_file.to_str().unwrap(), "event", "send", "x"],
        &vars,
        home,
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(sim.cloud().count_events_from(1001), 1);

    // The app side reads the same file (for https:// and wss://); one without a certificate
    // is refused before anything is sent.
    let bad = path("not-a-cert.pem");
    let run = common::mode(
        &[
            "--ca-file",
            bad.to_str().unwrap(),
            "app",
            "kv",
            "list",
            "1001",
        ],
        &vars,
        home,
    )
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    let run = common::mode(
        &[
            "--ca-file",
            ca_file.to_str().unwrap(),
            "app",
            "kv",
            "list",
            "1001",
        ],
        &vars,
        home,
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
}
