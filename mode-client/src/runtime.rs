//! A runtime many devices share: the IO threads and what every device would otherwise build for
//! itself. A gateway that speaks for thousands of sensors, or a load test, runs them all on one
//! `Runtime` (`Client::connect_in`); a device then costs its engine, its socket and its task,
//! not a thread pool and a TLS configuration of its own.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tracing::instrument::WithSubscriber;

use super::config::{ConfigError, TlsOptions};
use super::tls;

/// IO threads and shared state for many [`Client`](crate::Client)s.
///
/// Cloning is cheap and shares the runtime. Dropping the last clone stops the IO threads, which
/// ends every client still running on it (their handles then report
/// [`ClientError::Closed`](crate::ClientError::Closed)): close the clients first.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` when the runtime belongs to the caller ([`Runtime::with_handle`]).
    tokio: Option<tokio::runtime::Runtime>,
    handle: Handle,
    /// One rustls configuration per distinct [`TlsOptions`]: its root store (the built-in roots
    /// alone are about 150 certificates) is shared by every device that asks for the same
    /// settings. Read once: a CA file changed on disk later is not read again by this runtime.
    tls: Mutex<Vec<(TlsOptions, Arc<rustls::ClientConfig>)>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("owned", &self.inner.tokio.is_some())
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// The most threads a runtime starts for blocking work beside its IO threads. Resolving a
    /// host name is blocking work (getaddrinfo): a fleet connecting by name would otherwise
    /// start a thread per device in flight (30 and more were seen for 1,000 devices on TLS),
    /// each alive for 10 s after. One runs the lookups one after the other: quick for a cloud's
    /// few names (the resolver caches them), and it keeps a fleet's process at 4 threads.
    pub const BLOCKING_THREADS: usize = 1;

    /// A runtime with `io_threads` IO threads (at least 1) named `mode-io`. One thread carries
    /// thousands of idle devices; a second helps when many of them are busy at once.
    pub fn new(io_threads: usize) -> std::io::Result<Runtime> {
        Ok(Runtime::from_tokio(
            Runtime::tokio_builder(io_threads).build()?,
        ))
    }

    /// The tokio runtime a device runtime is: `io_threads` IO threads (at least 1) named
    /// `mode-io`, at most [`BLOCKING_THREADS`](Self::BLOCKING_THREADS) beside them, IO and
    /// timers on. For a front end that adds its own hooks (the C library blocks SIGPIPE on
    /// these threads) before [`from_tokio`](Self::from_tokio) or [`with_handle`](Self::with_handle).
    pub fn tokio_builder(io_threads: usize) -> tokio::runtime::Builder {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder
            .worker_threads(io_threads.max(1))
            .max_blocking_threads(Runtime::BLOCKING_THREADS)
            .thread_name("mode-io")
            .enable_all();
        builder
    }

    /// Takes over a tokio runtime built by the caller (e.g. with thread start hooks).
    pub fn from_tokio(tokio: tokio::runtime::Runtime) -> Runtime {
        Runtime {
            inner: Arc::new(Inner {
                handle: tokio.handle().clone(),
                tokio: Some(tokio),
                tls: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Runs devices on a tokio runtime the caller owns and keeps running.
    pub fn with_handle(handle: Handle) -> Runtime {
        Runtime {
            inner: Arc::new(Inner {
                tokio: None,
                handle,
                tls: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The tokio runtime the devices run on, e.g. to `block_on` a client's future from a thread
    /// outside it.
    pub fn handle(&self) -> &Handle {
        &self.inner.handle
    }

    /// The rustls configuration for `options`, built on first use and shared after.
    pub(crate) fn tls(
        &self,
        options: &TlsOptions,
    ) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
        let mut cache = self
            .inner
            .tls
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, config)) = cache.iter().find(|(known, _)| known == options) {
            return Ok(config.clone());
        }
        let config = Arc::new(tls::client_config(options)?);
        cache.push((options.clone(), config.clone()));
        Ok(config)
    }
}

/// Spawns a task of a client on `runtime`, carrying the caller's `tracing` dispatcher: many
/// devices share the IO threads, so a host that wants each device's log lines apart (the C
/// library hands them to that client's log callback) sets a dispatcher around the client's calls
/// and every task the client spawns keeps it.
pub(crate) fn spawn_on<F>(runtime: &Handle, task: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    runtime.spawn(task.with_current_subscriber())
}

/// [`spawn_on`] the runtime the caller runs on.
pub(crate) fn spawn<F>(task: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn_on(&Handle::current(), task)
}

impl Drop for Inner {
    fn drop(&mut self) {
        let Some(tokio) = self.tokio.take() else {
            return;
        };
        // A runtime cannot be dropped (waiting for its threads) from inside a runtime, which is
        // where the last clone goes when a task held it: there the threads are left to stop on
        // their own.
        if Handle::try_current().is_ok() {
            tokio.shutdown_background();
        } else {
            tokio.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_with_the_same_tls_settings_share_one_configuration() {
        let runtime = Runtime::new(1).unwrap();
        let defaults = TlsOptions::default();
        let first = runtime.tls(&defaults).unwrap();
        assert!(Arc::ptr_eq(&first, &runtime.tls(&defaults).unwrap()));
        let other = TlsOptions {
            webpki_roots: false,
            ..TlsOptions::default()
        };
        let second = runtime.tls(&other).unwrap();
        assert!(
            !Arc::ptr_eq(&first, &second),
            "other settings, another configuration"
        );
        assert!(Arc::ptr_eq(&second, &runtime.tls(&other).unwrap()));
    }
}
