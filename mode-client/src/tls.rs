//! The rustls configuration every transport uses: webpki roots plus extra CA files, an optional
//! client certificate, and the explicitly named switch that turns verification off; and the
//! TCP/TLS stream every link runs on (MQTT, MQTT over WebSocket, REST and the WebSockets).

use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::config::TlsOptions;
use super::error::ConfigError;

fn tls_error(what: &'static str, path: &Path, detail: impl ToString) -> ConfigError {
    ConfigError::Tls {
        what,
        path: path.display().to_string(),
        detail: detail.to_string(),
    }
}

fn read_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let file = File::open(path).map_err(|e| tls_error(what, path, e))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(what, path, e))?;
    if certs.is_empty() {
        return Err(tls_error(what, path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let what = "client key";
    let file = File::open(path).map_err(|e| tls_error(what, path, e))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| tls_error(what, path, e))?
        .ok_or_else(|| {
            tls_error(
                what,
                path,
                "no PEM private key (PKCS#8, PKCS#1 or SEC1) in the file",
            )
        })
}

/// Builds the rustls client configuration for `options` with the `ring` provider.
pub(crate) fn client_config(options: &TlsOptions) -> Result<ClientConfig, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", Path::new("-"), e))?;
    let builder = if options.danger_accept_invalid_certs {
        tracing::warn!(
            "TLS certificate verification is OFF (danger_accept_invalid_certs): development only"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        if options.webpki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for path in &options.extra_ca_files {
            for cert in read_certs("extra CA", path)? {
                roots
                    .add(cert)
                    .map_err(|e| tls_error("extra CA", path, e))?;
            }
        }
        builder.with_root_certificates(roots)
    };
    match &options.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = read_certs("client certificate", cert)?;
            let key_der = read_key(key)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| tls_error("client certificate", cert, e))
        }
    }
}

/// A connection to a server, plain or TLS. One boxed type, so REST and the WebSockets share
/// one copy of the code that drives it.
pub(crate) type Stream = Box<dyn Io>;

pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Connects to the host of `url` (`http`/`ws` in plain TCP, `https`/`wss` with TLS by `tls`).
/// TLS failures come back as an `io::Error` holding the `rustls::Error`.
pub(crate) async fn connect(url: &http::Uri, tls: &Arc<ClientConfig>) -> io::Result<Stream> {
    let secure = match url.scheme_str() {
        Some("http" | "ws") => false,
        Some("https" | "wss") => true,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the URL must start with http://, https://, ws:// or wss://",
            ));
        }
    };
    // `Uri::host` keeps the brackets of an IPv6 literal; neither DNS nor rustls wants them.
    let host = url.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_u16().unwrap_or(if secure { 443 } else { 80 });
    connect_to(host, port, secure, tls).await
}

/// Connects to `host:port`, with TLS by `tls` when `secure`. TLS failures come back as an
/// `io::Error` holding the `rustls::Error`.
pub(crate) async fn connect_to(
    host: &str,
    port: u16,
    secure: bool,
    tls: &Arc<ClientConfig>,
) -> io::Result<Stream> {
    let tcp = TcpStream::connect((host, port)).await?;
    // Requests, frames and MQTT batches are written whole and often wait for an answer: send
    // them without Nagle's delay.
    tcp.set_nodelay(true)?;
    if !secure {
        return Ok(Box::new(tcp));
    }
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host:?}: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await?;
    Ok(Box::new(stream))
}

/// The verifier behind `danger_accept_invalid_certs`: signatures are still checked (so the
/// handshake is well-formed), the certificate's issuer and name are not.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

/// The `ServerCertVerifier` methods that check a handshake signature: each calls rustls's
/// function of the same name with the provider's algorithms.
macro_rules! verify_signatures {
    ($($check:ident),*) => {$(
        fn $check(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            $check(message, cert, dss, &self.0.signature_verification_algorithms)
        }
    )*};
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    // rustls's own checks of the handshake signatures, with the provider's algorithms.
    verify_signatures!(verify_tls12_signature, verify_tls13_signature);

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
