//! What the simulator's own tests (`mode-sim/tests`) and the client's end-to-end tests
//! (`tests/integration`) both need, written once: a private PKI in a temporary directory (a CA,
//! a `localhost` server certificate, client certificates), a log writer that keeps what it is
//! given, and numbers from the environment. A dev-dependency only; never one of the SDK.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};

/// A self-signed CA named `name`.
pub fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key")).expect("a CA")
}

/// A fresh CA and, in a temporary directory, `ca.pem` (the CA), `server.pem` and `server.key`
/// (a certificate for `localhost` it issued): what a TLS simulator serves and a client trusts.
pub struct Pki {
    /// The CA, to issue more certificates with.
    pub ca: CertifiedIssuer<'static, KeyPair>,
    dir: tempfile::TempDir,
}

/// How a client certificate from [`Pki::client_cert`] is made.
pub enum Issued<'a> {
    /// By the PKI's CA, valid now.
    Valid,
    /// By the PKI's CA, expired in 2021.
    Expired,
    /// By another CA.
    By(&'a CertifiedIssuer<'static, KeyPair>),
}

impl Pki {
    /// Makes the CA (named `ca_name`) and writes the three files.
    pub fn new(ca_name: &str) -> Pki {
        let pki = Pki {
            ca: ca(ca_name),
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        let server_key = KeyPair::generate().expect("a key");
        let server = CertificateParams::new(vec!["localhost".to_owned()])
            .expect("server parameters")
            .signed_by(&server_key, &pki.ca)
            .expect("a server certificate");
        pki.write("ca.pem", &pki.ca.pem());
        pki.write("server.pem", &server.pem());
        pki.write("server.key", &server_key.serialize_pem());
        pki
    }

    /// The path of `name` in the PKI's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `contents` to `name` in the PKI's directory; returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("writing into the temporary directory");
        path
    }

    /// A client certificate with subject CN `cn`, written as `{file}.pem` and `{file}.key`;
    /// returns their paths.
    pub fn client_cert(&self, file: &str, cn: &str, issued: Issued<'_>) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client parameters");
        params.distinguished_name.push(DnType::CommonName, cn);
        let issuer = match issued {
            Issued::Valid => &self.ca,
            Issued::Expired => {
                params.not_before = date_time_ymd(2020, 1, 1);
                params.not_after = date_time_ymd(2021, 1, 1);
                &self.ca
            }
            Issued::By(other) => other,
        };
        let cert = params
            .signed_by(&key, issuer)
            .expect("a client certificate");
        (
            self.write(&format!("{file}.pem"), &cert.pem()),
            self.write(&format!("{file}.key"), &key.serialize_pem()),
        )
    }
}

/// A log writer (for `tracing_subscriber::fmt().with_writer(move || captured.clone())`) that
/// keeps every byte, for a test to read back.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The number in environment variable `name`, else `default` (how a test's size is turned up
/// for a benchmark run).
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A seed for a randomised test: environment variable `name` when set (to repeat a run), else
/// the clock.
pub fn seed(name: &str) -> u64 {
    env_or(
        name,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    )
}

/// The next number of the reproducible sequence `state` seeds (mode-core's SplitMix64, the
/// engine's and the simulator's generator too); `state` advances.
pub fn next_random(state: &mut u64) -> u64 {
    let mut random = mode_core::random::SplitMix64(*state);
    let next = random.next_u64();
    *state = random.0;
    next
}

/// What a kill test found.
#[derive(Debug)]
pub struct KillOutcome {
    /// How often the process under test was killed.
    pub kills: u64,
    /// Messages it confirmed before a kill (acknowledged, or a send that returned).
    pub confirmed: usize,
    /// Which of those are not where they must be.
    pub missing: Vec<u64>,
    /// Copies beyond the first (QoS 1 allows them).
    pub duplicates: usize,
    /// How long the run took.
    pub elapsed: std::time::Duration,
}

impl KillOutcome {
    /// Prints the run as a line naming its seed (`seed_var`=`seed`, to repeat it) and as a
    /// Markdown table (for BENCHMARKS.md) whose columns are `columns`, then fails the test if
    /// any confirmed message is missing.
    pub fn check(&self, test: &str, seed_var: &str, seed: u64, columns: [&str; 5]) {
        let secs = self.elapsed.as_secs_f64();
        let missing = self.missing.len();
        println!(
            "{test} ({seed_var}={seed}): {} kills, {} {}, {missing} missing, {} duplicates, {secs:.1} s",
            self.kills, self.confirmed, columns[1], self.duplicates
        );
        println!("| {} |", columns.join(" | "));
        println!("|---|---|---|---|---|");
        println!(
            "| {} | {} | {missing} | {} | {secs:.1} |",
            self.kills, self.confirmed, self.duplicates
        );
        assert!(
            self.missing.is_empty(),
            "{missing} of {} {} are missing ({seed_var}={seed}), e.g. {:?}",
            self.confirmed,
            columns[1],
            &self.missing[..missing.min(10)]
        );
    }
}
