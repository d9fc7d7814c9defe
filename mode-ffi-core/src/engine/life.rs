//! The life cycle of an engine from C: its configuration (defaults, checks), making one, restoring its outbox after a restart, freeing it.

use super::*;

/// Fills `*out` with the defaults for `device_id`, seeded with `seed` (pass a random number).
///
/// # Safety
/// `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_config_init(
    device_id: u64,
    seed: u64,
    out: *mut ModeEngineConfig,
) -> ModeStatus {
    ffi_guard!({ unsafe { write_required(out, || Ok(config_defaults(device_id, seed))) } })
}

/// The C form of the engine's defaults.
fn config_defaults(device_id: u64, seed: u64) -> ModeEngineConfig {
    let defaults = EngineConfig::new(device_id, seed);
    let backoff = &defaults.backoff;
    let ms = |d: Duration| d.as_millis().min(u128::from(u64::MAX)) as u64;
    ModeEngineConfig {
        device_id,
        seed,
        queue_size: defaults.queue_size,
        full_queue: ModeFullQueuePolicy::ModeQueueError as c_int,
        max_inflight: defaults.max_inflight,
        max_message_size: defaults.max_message_size,
        watchdog_ms: defaults.watchdog.map_or(0, ms),
        linger_ms: ms(defaults.linger),
        backoff_cap_ms: ms(backoff.cap),
        backoff_unit_ms: ms(backoff.unit),
        backoff_jitter: backoff.jitter,
        backoff_stable_after_ms: ms(backoff.stable_after),
        auth_failure_wait_ms: ms(backoff.auth_failure_wait),
        auth_failure_cap_ms: ms(backoff.auth_failure_cap),
        journal: defaults.journal,
    }
}

fn engine_config(c: &ModeEngineConfig) -> Result<EngineConfig, ModeStatus> {
    let ms = Duration::from_millis;
    let mut config = EngineConfig {
        queue_size: c.queue_size,
        max_inflight: c.max_inflight,
        max_message_size: c.max_message_size,
        backoff: BackoffPolicy {
            cap: ms(c.backoff_cap_ms.max(c.backoff_unit_ms)),
            unit: ms(c.backoff_unit_ms),
            jitter: c.backoff_jitter,
            stable_after: ms(c.backoff_stable_after_ms),
            auth_failure_wait: ms(c.auth_failure_wait_ms),
            auth_failure_cap: ms(c.auth_failure_cap_ms.max(c.auth_failure_wait_ms)),
        },
        watchdog: (c.watchdog_ms > 0).then(|| ms(c.watchdog_ms)),
        linger: ms(c.linger_ms),
        journal: c.journal,
        ..EngineConfig::new(c.device_id, c.seed)
    };
    config
        .check()
        .map_err(|problem| fail(ModeStatus::ModeErrConfig, problem))?;
    config.full_queue = full_queue_policy_arg(c.full_queue)?;
    Ok(config)
}

/// Creates an engine from `*config` (copied) at time `now_ms` into `*out`; free it with
/// ::mode_engine_free. It asks to connect at once (MODE_TRANSMIT_CONNECT). MODE_ERR_CONFIG when
/// a setting cannot work (::mode_last_error says which).
///
/// # Safety
/// `config` NULL or a readable config; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_new(
    config: *const ModeEngineConfig,
    now_ms: u64,
    out: *mut *mut ModeEngine,
) -> ModeStatus {
    ffi_guard!({
        let config = unsafe { borrow(config) }?;
        unsafe {
            write_new(out, || {
                Ok(ModeEngine {
                    engine: Engine::new(engine_config(config)?, at(now_ms)),
                    held: Held::default(),
                    sent_any: false,
                })
            })
        }
    })
}

/// Frees an engine and everything it holds (unsent messages included: close it first to
/// deliver them). NULL is a no-op.
///
/// # Safety
/// `engine` NULL or from ::mode_engine_new, not yet freed; no pointer it handed out is used
/// after.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_free(engine: *mut ModeEngine) {
    unsafe { free_new(engine) }
}

/// Puts back messages a previous run accepted and did not finish (from your durable outbox:
/// the MODE_JOURNAL_ADDED messages without a DONE), before anything is sent: they keep their
/// ids and go first, in id order; new ids continue after the largest. Their topics and payloads
/// are copied. All or nothing: MODE_ERR_INVALID_STATE once a send was accepted;
/// MODE_ERR_INVALID_ARGUMENT for an id of 0, a repeated id or a bad QoS; MODE_ERR_INVALID_UTF8
/// for a topic; MODE_ERR_QUEUE_FULL when they do not all fit in the queue.
///
/// # Safety
/// `messages` NULL (with `count` 0) or `count` readable messages, each topic and payload as
/// its lengths say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_restore(
    engine: *mut ModeEngine,
    messages: *const ModePublish,
    count: usize,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { engine_mut(engine) }?;
        let messages: &[ModePublish] = match (messages.is_null(), count) {
            (true, 0) => &[],
            (true, _) => return Err(ModeStatus::ModeErrNull),
            (false, _) => unsafe { core::slice::from_raw_parts(messages, count) },
        };
        if engine.sent_any {
            return Err(fail(
                ModeStatus::ModeErrInvalidState,
                "restore comes before any send: a restored message must go first",
            ));
        }
        let mut ids = BTreeSet::new();
        let mut restored = Vec::with_capacity(messages.len());
        for message in messages {
            if message.id == 0 || !ids.insert(message.id) {
                return Err(fail(
                    ModeStatus::ModeErrInvalidArgument,
                    format!("message id {} is 0 or given twice", message.id),
                ));
            }
            let topic = unsafe { text_arg(message.topic, message.topic_len, "a topic") }?;
            let payload = unsafe { bytes_arg(message.payload, message.payload_len) }?;
            restored.push(Publish {
                id: message.id,
                topic: topic.to_owned(),
                payload: payload.to_vec(),
                qos: qos_arg(message.qos)?,
            });
        }
        if restored.len() > engine.engine.room() {
            return Err(fail(
                ModeStatus::ModeErrQueueFull,
                format!(
                    "{} messages do not fit: the queue has room for {}; raise queue_size",
                    restored.len(),
                    engine.engine.room()
                ),
            ));
        }
        let refused = engine.engine.restore(restored);
        debug_assert!(refused.is_empty());
        Ok(())
    })
}
