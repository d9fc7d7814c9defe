//! TLS on every path against the simulator, with a private CA made by rcgen: MQTT over TLS,
//! MQTT over `wss://`, the HTTP transport over HTTPS and `wss://`; mutual TLS (a client
//! certificate and key, PEM) on MQTT and HTTPS; and a wrong CA, a wrong host name, and a
//! missing, unknown or expired client certificate each fail with an error that says which.

use std::path::PathBuf;

use mode_client::{Client, ClientConfig, DisconnectReason, Transport};
use mode_core::proto::Map;
use mode_integration::*;
use mode_sim::config::TlsConfig;
use mode_sim::{Sim, SimConfig};
use mode_test_support::{Issued, Pki, ca};

/// A simulator whose TLS listeners serve a certificate for `localhost` issued by a fresh CA,
/// and (with [`mtls_sim`]) require client certificates issued by that CA.
struct TlsSim {
    sim: Sim,
    ca_file: PathBuf,
    other_ca_file: PathBuf,
    pki: Pki,
}

async fn tls_sim() -> TlsSim {
    start_tls_sim(false).await
}

async fn mtls_sim() -> TlsSim {
    start_tls_sim(true).await
}

async fn start_tls_sim(client_certs: bool) -> TlsSim {
    init_tracing();
    let pki = Pki::new("libmode test CA");
    let other_ca_file = pki.write("other-ca.pem", &ca("someone else").pem());
    let mut tls = TlsConfig::new(pki.path("server.pem"), pki.path("server.key"));
    if client_certs {
        tls = tls.with_client_ca(pki.path("ca.pem"));
    }
    let sim = Sim::start(SimConfig {
        tls: Some(tls),
        ..SimConfig::demo()
    })
    .await
    .unwrap();
    TlsSim {
        sim,
        ca_file: pki.path("ca.pem"),
        other_ca_file,
        pki,
    }
}

/// Which client certificate a test presents.
enum ClientCert {
    /// Issued by the simulator's client CA for device 1001 (CN = 1001).
    Valid,
    /// Issued by a CA the simulator does not trust.
    OtherCa,
    /// Issued by the simulator's client CA, expired in 2021.
    Expired,
}

impl TlsSim {
    /// Writes a client certificate and key (PEM) for device 1001; returns their paths.
    fn client_cert(&self, which: ClientCert) -> (PathBuf, PathBuf) {
        let stranger = ca("stranger");
        let (name, issued) = match which {
            ClientCert::Valid => ("valid", Issued::Valid),
            ClientCert::OtherCa => ("other-ca", Issued::By(&stranger)),
            ClientCert::Expired => ("expired", Issued::Expired),
        };
        self.pki
            .client_cert(&format!("client-{name}"), &D1.to_string(), issued)
    }

    /// The HTTP transport against the HTTPS listener, as `host`, trusting the test CA.
    fn https_config(&self, host: &str) -> mode_client::ClientConfigBuilder {
        let port = self.sim.https_addr().expect("an HTTPS listener").port();
        ClientConfig::builder(D1, key(D1))
            .transport(Transport::Http)
            .api_url(format!("https://{host}:{port}"))
            .ca_file(&self.ca_file)
            .keepalive(std::time::Duration::from_secs(2))
            .backoff(fast_backoff())
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
    match disconnected(&mut notifications).await {
        (DisconnectReason::Tls(detail), _) => detail,
        (other, _) => panic!("expected a TLS failure, got {other:?}"),
    }
}

#[tokio::test]
async fn mqtt_over_tls_works_with_the_test_ca_as_an_extra_ca_file() {
    let t = tls_sim().await;
    let (client, _notifications) = start(tls_config(&t, "localhost").ca_file(&t.ca_file)).await;
    send_acked(&client, "secure", Map::new()).await;
    assert_eq!(t.sim.cloud().events_from(D1)[0].event_type, "secure");
}

#[tokio::test]
async fn a_server_certificate_from_an_untrusted_ca_is_a_clear_tls_error() {
    let t = tls_sim().await;
    let detail = first_tls_error(tls_config(&t, "localhost").ca_file(&t.other_ca_file)).await;
    assert!(detail.contains("not signed by a trusted CA"), "{detail}");
    assert!(detail.contains("ca_file"), "{detail}");
    assert_eq!(
        t.sim.cloud().connect_attempts(D1).total(),
        0,
        "no CONNECT may follow a failed handshake"
    );
}

#[tokio::test]
async fn the_http_transport_works_over_https_and_wss_with_the_test_ca() {
    let t = tls_sim().await;
    let (client, _notifications) = start(t.https_config("localhost")).await;
    send_acked(&client, "over-https", Map::new()).await;
    assert_eq!(t.sim.cloud().events_from(D1)[0].event_type, "over-https");
    assert_eq!(client.device_info().await.unwrap().id, D1);
}

#[tokio::test]
async fn mqtt_over_wss_works_with_the_test_ca() {
    let t = tls_sim().await;
    let port = t.sim.mqtt_wss_addr().expect("a wss listener").port();
    let (client, _notifications) = start(
        tls_config(&t, "localhost")
            .transport(Transport::MqttWebSocket)
            .mqtt_ws_url(format!("wss://localhost:{port}/mqtt"))
            .ca_file(&t.ca_file),
    )
    .await;
    send_acked(&client, "over-wss", Map::new()).await;
    assert_eq!(t.sim.cloud().events_from(D1)[0].event_type, "over-wss");
}

#[tokio::test]
async fn mutual_tls_connects_mqtt_and_https_with_a_client_certificate_and_key() {
    let t = mtls_sim().await;
    let (cert, key_file) = t.client_cert(ClientCert::Valid);
    let (mqtt, _n1) = start(
        tls_config(&t, "localhost")
            .ca_file(&t.ca_file)
            .client_cert(&cert, &key_file),
    )
    .await;
    let (http, _n2) = start(t.https_config("localhost").client_cert(&cert, &key_file)).await;
    for (client, name) in [(&mqtt, "mqtt-mtls"), (&http, "https-mtls")] {
        send_acked(client, name, Map::new()).await;
    }
    let mut types = t.sim.cloud().event_types_from(D1);
    types.sort();
    assert_eq!(types, ["https-mtls", "mqtt-mtls"]);
    assert_eq!(http.device_info().await.unwrap().id, D1);
}

/// The first TLS failure of MQTT over TLS and of the HTTP transport over HTTPS, presenting
/// `cert` (or none) to the client-certificate simulator.
async fn mtls_errors(t: &TlsSim, cert: Option<ClientCert>) -> [String; 2] {
    let cert = cert.map(|c| t.client_cert(c));
    let with_cert = |b: mode_client::ClientConfigBuilder| match &cert {
        Some((c, k)) => b.client_cert(c, k),
        None => b,
    };
    [
        first_tls_error(with_cert(tls_config(t, "localhost").ca_file(&t.ca_file))).await,
        first_tls_error(with_cert(t.https_config("localhost"))).await,
    ]
}

#[tokio::test]
async fn a_missing_client_certificate_is_a_clear_tls_error_on_mqtt_and_https() {
    let t = mtls_sim().await;
    for detail in mtls_errors(&t, None).await {
        assert!(
            detail.contains("requires a client certificate and none was sent"),
            "{detail}"
        );
        assert!(detail.contains("client_cert"), "{detail}");
    }
    assert_eq!(t.sim.cloud().connect_attempts(D1).total(), 0);
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_a_clear_tls_error_on_mqtt_and_https() {
    let t = mtls_sim().await;
    for detail in mtls_errors(&t, Some(ClientCert::OtherCa)).await {
        assert!(
            detail.contains(
                "refused our client certificate: it is not issued by a CA the server trusts"
            ),
            "{detail}"
        );
    }
}

#[tokio::test]
async fn an_expired_client_certificate_is_a_clear_tls_error_on_mqtt_and_https() {
    let t = mtls_sim().await;
    for detail in mtls_errors(&t, Some(ClientCert::Expired)).await {
        assert!(
            detail.contains("refused our client certificate: it has expired"),
            "{detail}"
        );
    }
}

#[tokio::test]
async fn a_host_name_the_certificate_does_not_name_is_a_clear_tls_error_on_mqtt_and_https() {
    let t = tls_sim().await;
    let mqtt = tls_config(&t, "127.0.0.1").ca_file(&t.ca_file);
    // Each names what it connected to: MQTT its host, the HTTP transport its WebSocket's URL.
    let cases = [
        (mqtt, "not valid for the host name 127.0.0.1"),
        (
            t.https_config("127.0.0.1"),
            "not valid for the host name wss://127.0.0.1:",
        ),
    ];
    for (builder, needle) in cases {
        let detail = first_tls_error(builder).await;
        assert!(detail.contains(needle), "{needle}: {detail}");
    }
    // A REST call over HTTPS says the same.
    let err = Client::connect(t.https_config("127.0.0.1").build().unwrap())
        .unwrap()
        .0
        .device_info()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not valid for the host name"),
        "{err}"
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
            .ca_file("/nonexistent/ca.pem")
            .build()
            .unwrap(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}
