//! TLS settings: `--ca-file` makes a device trust a private CA (mode-sim's MQTT over TLS with a
//! certificate from a test CA made by rcgen); without it the connection fails with exit 4, and
//! a CA file that holds no certificate is a usage error. `--client-cert`/`--client-key` (or
//! MODE_CLIENT_CERT/MODE_CLIENT_KEY) give mutual TLS on MQTT and HTTPS; a missing one and a
//! wrong host name say which. And `mode info` with `--host` but no REST URL names the setting.

mod common;

use mode_sim::config::{TlsConfig, demo_device_key};
use mode_sim::{Sim, SimConfig};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

#[tokio::test]
async fn a_private_ca_is_trusted_with_ca_file_and_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    pki(dir.path());
    std::fs::write(path("not-a-cert.pem"), "hello").unwrap();
    let sim = Sim::start(SimConfig {
        tls: Some(TlsConfig::new(path("server.pem"), path("server.key"))),
        ..SimConfig::demo()
    })
    .await
    .unwrap();
    let port = sim.mqtt_tls_addr().unwrap().port().to_string();
    let api_url = format!("http://{}", sim.http_addr().unwrap());
    let vars = common::vars(&[
        ("MODE_HOST", "localhost"),
        ("MODE_PORT", &port),
        ("MODE_API_URL", &api_url),
        ("MODE_DEVICE_ID", "1001"),
        ("MODE_API_KEY", &demo_device_key(1001)),
        ("MODE_APP_KEY", mode_sim::config::DEMO_APP_KEY),
        ("MODE_BACKOFF_MS", "50"),
        ("MODE_TIMEOUT", "5"),
    ]);
    let home = dir.path();

    let (ca, bad) = (path("ca.pem"), path("not-a-cert.pem"));
    let (ca, bad) = (ca.to_str().unwrap(), bad.to_str().unwrap());
    let device = ["event", "send", "x"];
    let app = ["app", "kv", "list", "1001"];
    // The device without the CA fails at the handshake (exit 4); the app side reads the same
    // file (for https:// and wss://), and one without a certificate is refused before anything
    // is sent (exit 2).
    let cases: [(&[&str], &[&str], i32); 4] = [
        (&[], &device, 4),
        (&["--ca-file", ca], &device, 0),
        (&["--ca-file", bad], &app, 2),
        (&["--ca-file", ca], &app, 0),
    ];
    for (options, command, code) in cases {
        let run = common::mode(&[options, command].concat(), &vars, home).await;
        assert_eq!(run.code, code, "{options:?} {command:?}: {run:?}");
        if command == device {
            let events = if code == 0 { 1 } else { 0 };
            assert_eq!(sim.cloud().count_events_from(1001), events, "{options:?}");
        }
    }
}

/// A private PKI in `dir`: ca.pem, server.pem/.key for localhost, client.pem/.key for device
/// 1001 (CN = 1001), all from one CA.
fn pki(dir: &std::path::Path) {
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
    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client
        .distinguished_name
        .push(rcgen::DnType::CommonName, "1001");
    let client = client.signed_by(&client_key, &ca).unwrap();
    for (name, text) in [
        ("ca.pem", ca.pem()),
        ("server.pem", server.pem()),
        ("server.key", server_key.serialize_pem()),
        ("client.pem", client.pem()),
        ("client.key", client_key.serialize_pem()),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

#[tokio::test]
async fn client_cert_and_key_give_mutual_tls_on_mqtt_and_https_and_a_missing_one_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    pki(dir.path());
    let sim = Sim::start(SimConfig {
        tls: Some(
            TlsConfig::new(path("server.pem"), path("server.key")).with_client_ca(path("ca.pem")),
        ),
        ..SimConfig::demo()
    })
    .await
    .unwrap();
    let mqtt_port = sim.mqtt_tls_addr().unwrap().port().to_string();
    let https_port = sim.https_addr().unwrap().port().to_string();
    let vars = common::vars(&[
        ("MODE_HOST", "localhost"),
        ("MODE_CA_FILE", &path("ca.pem")),
        ("MODE_DEVICE_ID", "1001"),
        ("MODE_API_KEY", &demo_device_key(1001)),
        ("MODE_BACKOFF_MS", "50"),
        ("MODE_TIMEOUT", "5"),
    ]);
    let home = dir.path();
    let (cert, key) = (path("client.pem"), path("client.key"));
    let with_cert = ["--client-cert", &cert, "--client-key", &key];
    let mqtt = ["--port", &mqtt_port];
    let https = ["--transport", "http", "--port", &https_port];

    // MQTT over TLS and the HTTP transport over HTTPS + wss://, each with the flags.
    for (endpoint, event) in [(&mqtt[..], "cli-mtls-mqtt"), (&https[..], "cli-mtls-https")] {
        let args = [&with_cert[..], endpoint, &["event", "send", event]].concat();
        let run = common::mode(&args, &vars, home).await;
        assert_eq!(run.code, 0, "{run:?}");
    }
    assert_eq!(sim.cloud().count_events_from(1001), 2);

    // The same from the environment; `mode info` over HTTPS finds the REST API from --host.
    let mut env_vars = vars.clone();
    env_vars.push(("MODE_CLIENT_CERT".into(), cert.clone()));
    env_vars.push(("MODE_CLIENT_KEY".into(), key.clone()));
    let run = common::mode(&[&https[..], &["--json", "info"]].concat(), &env_vars, home).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json_lines()[0]["id"], 1001);

    // No certificate: exit 4, and the reason names what is missing, on both.
    for endpoint in [&mqtt[..], &https[..]] {
        let run = common::mode(&[endpoint, &["event", "send", "x"]].concat(), &vars, home).await;
        assert_eq!(run.code, 4, "{run:?}");
        assert!(
            run.stderr
                .contains("requires a client certificate and none was sent"),
            "{run:?}"
        );
    }

    // A wrong host name: the certificate names localhost.
    let run = common::mode(
        &[
            &with_cert[..],
            &mqtt[..],
            &["--host", "127.0.0.1", "event", "send", "x"],
        ]
        .concat(),
        &vars,
        home,
    )
    .await;
    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stderr.contains("not valid for the host name 127.0.0.1"),
        "{run:?}"
    );

    // A certificate without its key is a usage error.
    let run = common::mode(&["--client-cert", &cert, "event", "send", "x"], &vars, home).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--client-key"), "{run:?}");
}

#[tokio::test]
async fn info_with_a_host_but_no_rest_url_names_the_setting_to_give() {
    let env = common::Env::start().await;
    let vars = env.with("MODE_API_URL", None);
    let run = env.mode_with(&["info"], &vars).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("no REST API URL"), "{run:?}");
    assert!(
        run.stderr.contains("--api-url") && run.stderr.contains("MODE_API_URL"),
        "{run:?}"
    );
    // With the HTTP transport --host and --port are the REST API.
    let http = env.sim.http_addr().unwrap();
    let run = env
        .mode_with(
            &[
                "--transport",
                "http",
                "--host",
                &http.ip().to_string(),
                "--port",
                &http.port().to_string(),
                "--json",
                "info",
            ],
            &vars,
        )
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json_lines()[0]["id"], 1001);
}
