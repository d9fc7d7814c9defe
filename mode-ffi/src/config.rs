//! `mode_config_*`: a device's connection settings, built up field by field and consumed by
//! ::mode_client_new. Every setter validates what it is given and says so by status.

use std::ffi::{c_char, c_int};
use std::fmt::Display;
use std::time::Duration;

use mode_client::{ClientConfig, ClientConfigBuilder, FullQueuePolicy, Transport};
use mode_core::backoff::BackoffPolicy;

use crate::util::{borrow_mut, enum_arg, fail, free_new, str_arg, write_new};
use crate::{ModeStatus, ffi_guard};

mode_ffi_core::c_enums!(ModeTransport);
use mode_ffi_core::engine::full_queue_policy_arg;

/// Connection settings for one device. Not thread-safe: build it on one thread, then hand it
/// to ::mode_client_new, which consumes it when it succeeds.
pub struct ModeConfig {
    pub(crate) builder: ClientConfigBuilder,
    /// Kept only to scrub it from log lines, should any ever hold it.
    pub(crate) api_key: String,
}

/// Which transport a client uses.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeTransport {
    /// MQTT 3.1.1 over TCP, TLS on 8883 by default (the default).
    ModeTransportMqtt = 0,
    /// MQTT 3.1.1 over WebSocket.
    ModeTransportMqttWebsocket = 1,
    /// REST events + WebSocket commands and DDP.
    ModeTransportHttp = 2,
}

impl ModeConfig {
    /// Applies one builder step.
    fn update(&mut self, step: impl FnOnce(ClientConfigBuilder) -> ClientConfigBuilder) {
        let builder = self.builder.clone();
        self.builder = step(builder);
    }

    /// The finished configuration, or the reason it cannot work.
    pub(crate) fn build(&self) -> Result<ClientConfig, String> {
        self.builder.clone().build().map_err(|err| err.to_string())
    }
}

/// Runs a setter on a config.
///
/// # Safety
/// `config` NULL or from ::mode_config_new.
unsafe fn set(
    config: *mut ModeConfig,
    step: impl FnOnce(ClientConfigBuilder) -> ClientConfigBuilder,
) -> ModeStatus {
    ffi_guard!({
        unsafe { borrow_mut(config) }?.update(step);
        Ok(())
    })
}

/// Runs a setter whose value was checked first: an error (its reason already the last error)
/// changes nothing and is the status, before the config itself is looked at.
///
/// # Safety
/// As [`set`].
unsafe fn set_checked<V>(
    config: *mut ModeConfig,
    value: Result<V, ModeStatus>,
    step: impl FnOnce(ClientConfigBuilder, V) -> ClientConfigBuilder,
) -> ModeStatus {
    match value {
        Ok(value) => unsafe { set(config, |b| step(b, value)) },
        Err(status) => status,
    }
}

/// A number that must be at least `min`, else MODE_ERR_INVALID_ARGUMENT: "`what` 5`unit` is
/// too small: use at least 64`unit`".
fn at_least<T: PartialOrd + Display>(
    value: T,
    min: T,
    what: &str,
    unit: &str,
) -> Result<T, ModeStatus> {
    if value < min {
        return Err(fail(
            ModeStatus::ModeErrInvalidArgument,
            format!("{what} {value}{unit} is too small: use at least {min}{unit}"),
        ));
    }
    Ok(value)
}

/// A number that must be 1 to 65535, else MODE_ERR_INVALID_ARGUMENT naming `what`.
fn one_to_u16_max<T: Copy + Display>(value: T, what: &str) -> Result<u16, ModeStatus>
where
    u16: TryFrom<T>,
{
    match u16::try_from(value) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(fail(
            ModeStatus::ModeErrInvalidArgument,
            format!("{what} {value} is out of range: use 1 to 65535"),
        )),
    }
}

/// Runs a setter that takes a duration given in milliseconds, at least `min_ms`.
///
/// # Safety
/// As [`set`].
unsafe fn set_ms(
    config: *mut ModeConfig,
    ms: u32,
    min_ms: u32,
    step: impl FnOnce(ClientConfigBuilder, Duration) -> ClientConfigBuilder,
) -> ModeStatus {
    let ms = at_least(ms, min_ms, "a time of", " ms");
    unsafe {
        set_checked(config, ms, |b, ms| {
            step(b, Duration::from_millis(ms.into()))
        })
    }
}

/// Runs a setter that takes a string.
///
/// # Safety
/// As [`set`]; `value` NUL-terminated.
unsafe fn set_str(
    config: *mut ModeConfig,
    value: *const c_char,
    step: impl FnOnce(ClientConfigBuilder, String) -> ClientConfigBuilder,
) -> ModeStatus {
    ffi_guard!({
        let value = unsafe { str_arg(value) }?.to_owned();
        unsafe { borrow_mut(config) }?.update(|b| step(b, value));
        Ok(())
    })
}

/// Creates settings for device `device_id` with its API key (copied) into `*out`, with every
/// default of the real cloud (MQTT over TLS to mqtt.tinkermode.com:8883). The API key is never
/// logged. Free with ::mode_config_free unless a ::mode_client_new succeeded with it.
///
/// # Safety
/// `api_key` NUL-terminated; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_new(
    device_id: u64,
    api_key: *const c_char,
    out: *mut *mut ModeConfig,
) -> ModeStatus {
    ffi_guard!({
        let api_key = unsafe { str_arg(api_key) }?;
        let builder =
            ClientConfig::builder(device_id, api_key).full_queue_policy(FullQueuePolicy::Error);
        unsafe {
            write_new(out, || {
                Ok(ModeConfig {
                    builder,
                    api_key: api_key.to_owned(),
                })
            })
        }
    })
}

/// Destroys settings that were not consumed. NULL is a no-op.
///
/// # Safety
/// `config` NULL or from ::mode_config_new, not consumed or freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_free(config: *mut ModeConfig) {
    unsafe { free_new(config) }
}

/// Sets the transport: a ::mode_transport_t value (MODE_ERR_INVALID_ARGUMENT for others).
///
/// # Safety
/// `config` from ::mode_config_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_set_transport(
    config: *mut ModeConfig,
    transport: c_int,
) -> ModeStatus {
    use ModeTransport::*;
    let table = [
        (ModeTransportMqtt, Transport::Mqtt),
        (ModeTransportMqttWebsocket, Transport::MqttWebSocket),
        (ModeTransportHttp, Transport::Http),
    ];
    let transport = enum_arg(transport, &table, "transport", "mode_transport_t");
    unsafe { set_checked(config, transport, ClientConfigBuilder::transport) }
}

/// Sets the MQTT broker's host name (copied).
///
/// # Safety
/// `config` from ::mode_config_new; `host` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_set_mqtt_host(
    config: *mut ModeConfig,
    host: *const c_char,
) -> ModeStatus {
    unsafe { set_str(config, host, |b, host| b.mqtt_host(host)) }
}

/// Sets the MQTT broker's port, 1 to 65535.
///
/// # Safety
/// `config` from ::mode_config_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_set_mqtt_port(
    config: *mut ModeConfig,
    port: c_int,
) -> ModeStatus {
    let port = one_to_u16_max(port, "port");
    unsafe { set_checked(config, port, ClientConfigBuilder::mqtt_port) }
}

/// Sets the URL of MQTT over WebSocket, e.g. "ws://127.0.0.1:8081/mqtt" (copied).
///
/// # Safety
/// `config` from ::mode_config_new; `url` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_set_mqtt_ws_url(
    config: *mut ModeConfig,
    url: *const c_char,
) -> ModeStatus {
    unsafe { set_str(config, url, |b, url| b.mqtt_ws_url(url)) }
}

/// Sets the REST/WebSocket API base URL, e.g. "http://127.0.0.1:8080" (copied).
///
/// # Safety
/// `config` from ::mode_config_new; `url` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_set_api_url(
    config: *mut ModeConfig,
    url: *const c_char,
) -> ModeStatus {
    unsafe { set_str(config, url, |b, url| b.api_url(url)) }
}

/// Turns TLS off: plain TCP, `ws://` and `http://`, for a local simulator only. TLS is on by
/// default. (`plain` in every front end: Rust `.plain()`, Python `plain=True`, `mode --plain`.)
///
/// # Safety
/// `config` from ::mode_config_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_set_plain(config: *mut ModeConfig) -> ModeStatus {
    unsafe { set(config, |b| b.plain()) }
}

/// The name ::mode_config_set_plain had before the naming table (README, Configuration); kept
/// for programs written against it.
///
/// # Safety
/// `config` from ::mode_config_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_set_plain_tcp(config: *mut ModeConfig) -> ModeStatus {
    unsafe { mode_config_set_plain(config) }
}

/// Trusts the CA certificates in PEM file `path` as well as the built-in roots.
///
/// # Safety
/// `config` from ::mode_config_new; `path` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_set_ca_file(
    config: *mut ModeConfig,
    path: *const c_char,
) -> ModeStatus {
    unsafe { set_str(config, path, |b, path| b.ca_file(path)) }
}

/// Uses the client certificate chain and private key in PEM files `cert_path` and `key_path`.
///
/// # Safety
/// `config` from ::mode_config_new; paths NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_set_client_cert(
    config: *mut ModeConfig,
    cert_path: *const c_char,
    key_path: *const c_char,
) -> ModeStatus {
    ffi_guard!({
        let cert = unsafe { str_arg(cert_path) }?.to_owned();
        let key = unsafe { str_arg(key_path) }?.to_owned();
        unsafe { borrow_mut(config) }?.update(|b| b.client_cert(cert, key));
        Ok(())
    })
}

/// DANGER: accepts any server certificate, removing all protection against an impostor. For
/// local development against a self-signed server only; never in a product.
///
/// # Safety
/// `config` from ::mode_config_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_set_danger_accept_invalid_certs(
    config: *mut ModeConfig,
    accept: bool,
) -> ModeStatus {
    unsafe { set(config, |b| b.danger_accept_invalid_certs(accept)) }
}

/// Sets the MQTT keepalive in milliseconds (default 60000; at least 1000).
///
/// # Safety
/// `config` from ::mode_config_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_set_keepalive_ms(
    config: *mut ModeConfig,
    keepalive_ms: u32,
) -> ModeStatus {
    unsafe { set_ms(config, keepalive_ms, 1000, ClientConfigBuilder::keepalive) }
}

/// Sets how long one connection attempt may take, TCP + TLS + MQTT CONNECT or both WebSockets,
/// in milliseconds (default 10000; at least 1).
///
/// # Safety
/// `config` from ::mode_config_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_set_connect_timeout_ms(
    config: *mut ModeConfig,
    timeout_ms: u32,
) -> ModeStatus {
    unsafe { set_ms(config, timeout_ms, 1, ClientConfigBuilder::connect_timeout) }
}

/// Sets how long one REST request may take (HTTP transport sends, device info, provisioning),
/// in milliseconds (default 30000; at least 1).
///
/// # Safety
/// `config` from ::mode_config_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_set_request_timeout_ms(
    config: *mut ModeConfig,
    timeout_ms: u32,
) -> ModeStatus {
    unsafe { set_ms(config, timeout_ms, 1, ClientConfigBuilder::request_timeout) }
}

/// Sets how many QoS 1 messages may be on the network unacknowledged at once (default 100;
/// 1 to 65535). 1 makes the cloud see messages strictly one at a time.
///
/// # Safety
/// `config` from ::mode_config_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_set_max_inflight(
    config: *mut ModeConfig,
    max_inflight: u32,
) -> ModeStatus {
    let max_inflight = one_to_u16_max(max_inflight, "max_inflight");
    unsafe { set_checked(config, max_inflight, ClientConfigBuilder::max_inflight) }
}

/// Sets how many messages may wait for delivery (at least 1).
///
/// # Safety
/// `config` from ::mode_config_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_set_queue_size(
    config: *mut ModeConfig,
    queue_size: usize,
) -> ModeStatus {
    let queue_size = at_least(queue_size, 1, "a queue size of", "");
    unsafe { set_checked(config, queue_size, ClientConfigBuilder::queue_size) }
}

/// Sets the full-queue policy: a ::mode_full_queue_policy_t value (default MODE_QUEUE_ERROR;
/// why C has no blocking policy: see ::mode_full_queue_policy_t).
///
/// # Safety
/// `config` from ::mode_config_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_set_full_queue_policy(
    config: *mut ModeConfig,
    policy: c_int,
) -> ModeStatus {
    let policy = full_queue_policy_arg(policy);
    unsafe { set_checked(config, policy, ClientConfigBuilder::full_queue_policy) }
}

/// Sets the largest message the client sends or accepts, in bytes (default 1 MiB).
///
/// # Safety
/// `config` from ::mode_config_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_set_max_message_size(
    config: *mut ModeConfig,
    bytes: usize,
) -> ModeStatus {
    let bytes = at_least(bytes, 64, "a maximum message size of", " bytes");
    unsafe { set_checked(config, bytes, ClientConfigBuilder::max_message_size) }
}

/// Sets the reconnect schedule: Fibonacci multiples of `unit_ms` (default 1000), at most
/// `cap_ms` (default 60000). Both at least 1, `cap_ms` >= `unit_ms`.
///
/// # Safety
/// `config` from ::mode_config_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_set_backoff_ms(
    config: *mut ModeConfig,
    unit_ms: u32,
    cap_ms: u32,
) -> ModeStatus {
    if unit_ms == 0 || cap_ms < unit_ms {
        return fail(
            ModeStatus::ModeErrInvalidArgument,
            format!(
                "backoff unit {unit_ms} ms, cap {cap_ms} ms: use a unit of at least 1 ms and a cap no smaller"
            ),
        );
    }
    let policy = BackoffPolicy {
        unit: Duration::from_millis(unit_ms.into()),
        cap: Duration::from_millis(cap_ms.into()),
        ..BackoffPolicy::default()
    };
    unsafe { set(config, |b| b.backoff(policy)) }
}

/// Checks the settings without creating a client. MODE_ERR_CONFIG means they cannot work;
/// ::mode_last_error says why.
///
/// # Safety
/// `config` from ::mode_config_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_validate(config: *mut ModeConfig) -> ModeStatus {
    ffi_guard!({
        let config = unsafe { borrow_mut(config) }?;
        config
            .build()
            .map(drop)
            .map_err(|err| fail(ModeStatus::ModeErrConfig, err))
    })
}

/// Keeps the client's outbox on disk in directory `path` (created if missing; copied), so
/// accepted QoS 1 messages survive the process dying or the power going out: a QoS 1 send
/// returns MODE_OK only once its message is written and fsynced (so with a durable outbox a
/// send does wait, for one commit, never for room), the message is removed when the cloud
/// confirmed it, and at the next ::mode_client_start on the same directory whatever is left is
/// sent first, in order, with its original message id; new ids continue after the last one.
/// Messages still queued at stop or free stay on disk for the next start. One client per
/// directory: ::mode_client_start of a second one (in this process or another) fails with
/// MODE_ERR_CONFIG, "in use by another client". A damaged store is read as far as it goes;
/// what was lost is logged (warn) and counted (`outbox_unrecovered` in ::mode_stats_t). See
/// ::mode_config_set_outbox_sync for what survives what. The store is a queue-file FIFO,
/// `outbox.queue` in `path`. (A libmode built without mode-client's `durable-outbox` feature,
/// which scripts/install-c's build has, fails at ::mode_client_new with MODE_ERR_CONFIG, naming
/// the feature.)
///
/// # Safety
/// `config` from ::mode_config_new; `path` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_set_outbox_dir(
    config: *mut ModeConfig,
    path: *const c_char,
) -> ModeStatus {
    unsafe { set_str(config, path, |b, path| b.outbox_dir(path)) }
}

/// The most the durable outbox holds, in bytes of stored messages (default 64 MiB); when it
/// is full a send does what the full-queue policy says (::mode_config_set_full_queue_policy).
///
/// # Safety
/// `config` from ::mode_config_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_set_outbox_max_bytes(
    config: *mut ModeConfig,
    bytes: u64,
) -> ModeStatus {
    let bytes = at_least(bytes, 1, "an outbox of at most", " bytes")
        .map(|bytes| usize::try_from(bytes).unwrap_or(usize::MAX));
    unsafe { set_checked(config, bytes, ClientConfigBuilder::outbox_max_bytes) }
}

/// When the durable outbox fsyncs: `every_message` true, one commit per message; false (the
/// default), group commit: one commit for everything queued since the last one, at most one
/// every `group_commit_ms` (0: as soon as the previous commit is done). Under both, a message
/// whose send returned MODE_OK survives a kill and a power cut (as far as the disk honours
/// fsync); a message delivered just before a crash may be sent once more (QoS 1 allows it).
/// Group commit lets concurrent senders share one fsync.
///
/// # Safety
/// `config` from ::mode_config_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_config_set_outbox_sync(
    config: *mut ModeConfig,
    every_message: bool,
    group_commit_ms: u32,
) -> ModeStatus {
    let policy = if every_message {
        mode_client::SyncPolicy::EveryMessage
    } else {
        mode_client::SyncPolicy::GroupCommit(Duration::from_millis(group_commit_ms.into()))
    };
    unsafe { set(config, |b| b.outbox_sync(policy)) }
}
