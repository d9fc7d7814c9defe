//! The device commands: connect as one device through libmode, do one thing (send an event,
//! read or write a key, send bulk data), or follow what arrives, and map every outcome to an
//! exit code. The first connection attempt decides: a refusal or an unreachable cloud ends the
//! command at once instead of retrying for ever.

use std::path::Path;
use std::time::Duration;

use mode_client::{Client, DisconnectReason, Notification, Notifications, provision};
use mode_core::ddp::Change;
use mode_core::proto::{Map, Qos, Value};
use serde_json::json;

use crate::error::{CliError, Exit};
use crate::json::{parse_json, parse_object};
use crate::output::{self, Progress, describe, retry_text};
use crate::settings::{self, Settings};
use crate::wait;

/// A connected device.
pub struct Session {
    client: Client,
    notes: Notifications,
    wait: Duration,
}

impl Session {
    /// Connects and waits for the connection (and, with `reload`, for the kv mirror). A
    /// refused or failed first attempt ends it: exit 3 for credentials, 4 for the network.
    pub async fn connect(settings: &Settings, reload: bool) -> Result<Session, CliError> {
        let config = settings.client_config()?;
        let device_id = config.device_id();
        tracing::debug!(device = device_id, endpoint = %settings.endpoint(), "connecting");
        let (client, mut notes) = Client::connect(config)?;
        let deadline = tokio::time::Instant::now() + settings.wait;
        let failed = |exit, text: String| {
            client.try_close(Duration::ZERO);
            Err(CliError::new(exit, text))
        };
        loop {
            let note = match tokio::time::timeout_at(deadline, notes.recv()).await {
                Err(_) => {
                    return failed(
                        Exit::Timeout,
                        format!(
                            "no connection to {} within {:?}",
                            settings.endpoint(),
                            settings.wait
                        ),
                    );
                }
                Ok(None) => return failed(Exit::Other, "the client stopped".into()),
                Ok(Some(note)) => note,
            };
            match note {
                Notification::Connected if !reload => break,
                Notification::KvReloaded { .. } if reload => break,
                Notification::Disconnected { reason, .. } => {
                    let exit = match reason {
                        DisconnectReason::AuthFailed(_) => Exit::Auth,
                        _ => Exit::Connection,
                    };
                    return failed(
                        exit,
                        format!(
                            "device {device_id} could not connect to {}: {reason}",
                            settings.endpoint()
                        ),
                    );
                }
                _ => {}
            }
        }
        Ok(Session {
            client,
            notes,
            wait: settings.wait,
        })
    }

    /// Waits for `delivery` (the cloud's acknowledgement) within the wait.
    async fn delivered(&self, delivery: mode_client::Delivery) -> Result<(), CliError> {
        let wait = self.wait;
        wait::within(wait, delivery, || {
            format!("the cloud did not acknowledge within {wait:?}")
        })
        .await?
        .map_err(CliError::from)
    }

    /// Closes, delivering what is queued.
    async fn close(self) -> Result<(), CliError> {
        self.client.close(self.wait).await.map_err(CliError::from)
    }

    /// Waits for the cloud's broadcast of our own change of `key` and returns its rev.
    async fn echo_of(&mut self, key: &str, deleted: bool) -> Result<u64, CliError> {
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            let what = format!("the cloud's confirmation of the change of {key:?}");
            let note = wait::next_note(&mut self.notes, deadline, self.wait, &what).await?;
            match note {
                Notification::KvChanged { rev, change }
                    if change.key() == key
                        && matches!(change, Change::Deleted { .. }) == deleted =>
                {
                    return Ok(rev);
                }
                _ => {}
            }
        }
    }
}

/// `mode event send TYPE [JSON]`.
pub async fn event_send(
    settings: &Settings,
    json: bool,
    event_type: &str,
    data: Option<&str>,
    qos: u8,
) -> Result<(), CliError> {
    let data = parse_object("event data", data)?;
    let qos = Qos::from_level(qos)
        .ok_or_else(|| CliError::usage(format!("--qos {qos}: MODE takes 0 or 1")))?;
    let session = Session::connect(settings, false).await?;
    let delivery = session
        .client
        .send_event(event_type, data.clone(), qos)
        .await?;
    session.delivered(delivery).await?;
    session.close().await?;
    let outcome = match qos {
        Qos::AtMostOnce => "qos 0, written: QoS 0 has no acknowledgement",
        Qos::AtLeastOnce => "qos 1, acknowledged",
    };
    if json {
        output::json_line(&json!({
            "sent": "event", "eventType": event_type, "eventData": data, "qos": qos.level(),
            "acknowledged": qos == Qos::AtLeastOnce,
        }));
    } else {
        output::line(format!(
            "sent event {event_type} {} ({outcome})",
            Value::Object(data)
        ));
    }
    Ok(())
}

/// How long and how much `listen` and `watch` follow.
#[derive(Debug, Clone, Copy)]
pub struct Follow {
    /// Stop after this many records.
    pub count: Option<u64>,
    /// Stop after this long.
    pub limit: Option<Duration>,
}

impl Follow {
    /// Follows records from `next` until the count or the limit; reaching the limit before
    /// the count is a timeout (exit 5), without a count it is the normal end.
    pub async fn run(
        self,
        mut next: impl AsyncFnMut() -> Result<Option<u64>, CliError>,
    ) -> Result<(), CliError> {
        let deadline = self.limit.map(|l| tokio::time::Instant::now() + l);
        let mut seen = 0;
        loop {
            if self.count.is_some_and(|c| seen >= c) {
                return Ok(());
            }
            let step = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, next()).await {
                    Ok(step) => step,
                    Err(_) => {
                        return match self.count {
                            Some(count) => Err(CliError::new(
                                Exit::Timeout,
                                format!("saw {seen} of {count} before the time ran out"),
                            )),
                            None => Ok(()),
                        };
                    }
                },
                None => next().await,
            };
            match step? {
                Some(n) => seen += n,
                None => return Ok(()),
            }
        }
    }
}

/// One notification as a record for `listen` / `kv watch`: how many records it was.
fn show(note: &Notification, json: bool, commands: bool) -> u64 {
    match note {
        Notification::Command(command) if commands => {
            if json {
                output::json_line(&json!({
                    "type": "command", "action": command.action, "parameters": command.parameters,
                }));
            } else {
                output::line(format!(
                    "command {} {}",
                    command.action,
                    Value::Object(command.parameters.clone())
                ));
            }
            1
        }
        Notification::KvChanged { rev, change } => {
            if json {
                output::json_line(&match change {
                    Change::Set {
                        key,
                        value,
                        previous,
                    } => json!({
                        "type": "kvSet", "rev": rev, "key": key, "value": value, "previous": previous,
                    }),
                    Change::Deleted { key, previous } => json!({
                        "type": "kvDelete", "rev": rev, "key": key, "previous": previous,
                    }),
                });
            } else {
                output::line(format!("kv rev {rev}: {}", describe(change)));
            }
            1
        }
        // The reload at connect was consumed by connecting; a later one follows a reconnect.
        Notification::KvReloaded { rev, diff } => {
            if diff.is_empty() {
                return 0;
            }
            if json {
                let changes: Vec<Value> = diff.iter().map(change_json).collect();
                output::json_line(&json!({"type": "kvReload", "rev": rev, "changes": changes}));
            } else {
                let changes: Vec<String> = diff.iter().map(describe).collect();
                output::line(format!("kv reload rev {rev}: [{}]", changes.join(", ")));
            }
            1
        }
        Notification::Disconnected { reason, retry_in } => {
            output::note(format!(
                "mode: disconnected ({reason}){}",
                retry_text(*retry_in)
            ));
            0
        }
        Notification::Connected => {
            output::note("mode: connected");
            0
        }
        _ => 0,
    }
}

/// One change of a reload as JSON: `{"key", "value", "previous"}` or
/// `{"key", "deleted": true, "previous"}`.
fn change_json(change: &Change) -> Value {
    match change {
        Change::Set {
            key,
            value,
            previous,
        } => json!({"key": key, "value": value, "previous": previous}),
        Change::Deleted { key, previous } => {
            json!({"key": key, "deleted": true, "previous": previous})
        }
    }
}

/// `mode listen` (commands and kv changes) and `mode kv watch` (kv only, starting with the
/// current contents).
pub async fn listen(
    settings: &Settings,
    json: bool,
    follow: Follow,
    commands: bool,
) -> Result<(), CliError> {
    let mut session = Session::connect(settings, true).await?;
    // On stderr, so stdout holds only records; scripts and tests may wait for it.
    output::note(format!(
        "mode: listening as device {} on {}",
        session.client.device_id(),
        settings.endpoint()
    ));
    if !commands {
        print_snapshot(&session.client, json);
    }
    let notes = &mut session.notes;
    let result = follow
        .run(async || match notes.recv().await {
            Some(note) => Ok(Some(show(&note, json, commands))),
            None => Ok(None),
        })
        .await;
    session.client.try_close(Duration::ZERO);
    result
}

fn print_snapshot(client: &Client, json: bool) {
    if let Value::Object(items) = client.kv_snapshot() {
        for (key, value) in items {
            if json {
                output::json_line(&json!({"key": key, "value": value}));
            } else {
                output::line(format!("{key} = {value}"));
            }
        }
    }
}

/// `mode kv get KEY`: the value in the device's mirror after the reload.
pub async fn kv_get(settings: &Settings, json: bool, key: &str) -> Result<(), CliError> {
    let session = Session::connect(settings, true).await?;
    let value = session.client.kv_get(key);
    session.client.try_close(Duration::ZERO);
    let (id, _) = settings.device()?;
    let value = value
        .ok_or_else(|| CliError::new(Exit::Refused, format!("device {id} has no key {key:?}")))?;
    if json {
        output::json_line(&json!({"key": key, "value": value}));
    } else {
        output::line(value.to_string());
    }
    Ok(())
}

/// `mode kv list`: every key of the device's store.
pub async fn kv_list(settings: &Settings, json: bool) -> Result<(), CliError> {
    let session = Session::connect(settings, true).await?;
    print_snapshot(&session.client, json);
    session.client.try_close(Duration::ZERO);
    Ok(())
}

/// `mode kv set KEY JSON` and `mode kv delete KEY`: writes, then waits for the cloud's
/// broadcast to report the change's revision.
pub async fn kv_write(
    settings: &Settings,
    json: bool,
    key: &str,
    value: Option<&str>,
) -> Result<(), CliError> {
    let value = value.map(|v| parse_json("the value", v)).transpose()?;
    let mut session = Session::connect(settings, true).await?;
    let delivery = match &value {
        Some(value) => session.client.kv_set(key, value.clone()).await?,
        None => {
            if session.client.kv_get(key).is_none() {
                session.client.try_close(Duration::ZERO);
                let (id, _) = settings.device()?;
                return Err(CliError::new(
                    Exit::Refused,
                    format!("device {id} has no key {key:?}"),
                ));
            }
            session.client.kv_delete(key).await?
        }
    };
    session.delivered(delivery).await?;
    let rev = session.echo_of(key, value.is_none()).await?;
    session.close().await?;
    match (&value, json) {
        (Some(v), true) => output::json_line(&json!({"set": key, "value": v, "rev": rev})),
        (Some(v), false) => output::line(format!("set {key} = {v} (rev {rev})")),
        (None, true) => output::json_line(&json!({"deleted": key, "rev": rev})),
        (None, false) => output::line(format!("deleted {key} (rev {rev})")),
    }
    Ok(())
}

/// `mode bulk send LABEL FILE`: the file's bytes to the smart module, with progress on a
/// terminal while the file is read and while the cloud has not acknowledged it.
pub async fn bulk_send(
    settings: &Settings,
    json: bool,
    label: &str,
    file: &Path,
) -> Result<(), CliError> {
    let progress = Progress::new(format!("bulk {label}"));
    let data = read_with_progress(file, &progress).await?;
    let session = Session::connect(settings, false).await?;
    let size = data.len();
    let delivery = session
        .client
        .send_bulk_data(label, &data, Qos::AtLeastOnce)
        .await?;
    let started = std::time::Instant::now();
    let outcome = {
        let mut delivery = std::pin::pin!(session.delivered(delivery));
        loop {
            tokio::select! {
                outcome = &mut delivery => break outcome,
                _ = tokio::time::sleep(Duration::from_millis(200)) => progress.update(format!(
                    "{size} bytes sent, awaiting acknowledgement ({:.1}s)",
                    started.elapsed().as_secs_f64()
                )),
            }
        }
    };
    progress.finish();
    outcome?;
    session.close().await?;
    if json {
        output::json_line(&json!({"sent": "bulkData", "label": label, "bytes": size}));
    } else {
        output::line(format!(
            "sent {size} bytes of bulk data to {label} (acknowledged)"
        ));
    }
    Ok(())
}

async fn read_with_progress(file: &Path, progress: &Progress) -> Result<Vec<u8>, CliError> {
    use tokio::io::AsyncReadExt;
    let cannot =
        |e: std::io::Error| CliError::usage(format!("cannot read {}: {e}", file.display()));
    let mut f = tokio::fs::File::open(file).await.map_err(cannot)?;
    let total = f.metadata().await.map_err(cannot)?.len();
    let mut data = Vec::with_capacity(total as usize);
    let mut chunk = vec![0; 64 * 1024];
    loop {
        let n = f.read(&mut chunk).await.map_err(cannot)?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&chunk[..n]);
        if let Some(percent) = (data.len() as u64 * 100).checked_div(total) {
            progress.update(format!(
                "reading {} / {total} bytes ({percent}%)",
                data.len()
            ));
        }
    }
    Ok(data)
}

/// `mode bulk request LABEL [JSON]`: the module's response; a status other than OK is exit 6.
pub async fn bulk_request(
    settings: &Settings,
    json: bool,
    label: &str,
    payload: Option<&str>,
) -> Result<(), CliError> {
    let payload = match payload {
        Some(text) => parse_json("the payload", text)?,
        None => Value::Object(Map::new()),
    };
    let session = Session::connect(settings, false).await?;
    let response = session
        .client
        .bulk_request(label, payload, session.wait)
        .await;
    session.client.try_close(Duration::ZERO);
    let response = response?;
    if json {
        output::json_line(&json!({
            "requestId": response.request_id,
            "status": response.status.as_str(),
            "payload": response.payload,
        }));
    } else {
        output::line(format!("{} {}", response.status.as_str(), response.payload));
    }
    if response.status.as_str() != "OK" {
        return Err(CliError::new(
            Exit::Refused,
            format!("bulk-data module {label}: {}", response.status.as_str()),
        ));
    }
    Ok(())
}

/// `mode info`: what the cloud knows of the device (`GET /devices/{id}`).
pub async fn info(settings: &Settings, json: bool) -> Result<(), CliError> {
    let config = settings.client_config()?;
    if config.api_url().is_none() {
        return Err(settings.no_api_url());
    }
    let (client, _notes) = Client::connect(config)?;
    let info = client.device_info().await;
    client.try_close(Duration::ZERO);
    let info = info?;
    if json {
        output::json_line(&Value::Object(info.raw));
    } else {
        output::line(format!("device {}", info.id));
        for (field, value) in &info.raw {
            if field != "id" {
                output::line(format!("  {field}: {value}"));
            }
        }
    }
    Ok(())
}

/// `mode provision TOKEN`: creates a device with a provisioning token. Its new key is saved
/// to a profile (`--save-profile`) or printed on stdout (`--show-key`), never otherwise.
pub async fn provision_device(
    settings: &Settings,
    json: bool,
    token: &str,
    save_profile: Option<&str>,
    show_key: bool,
) -> Result<(), CliError> {
    if save_profile.is_none() && !show_key {
        return Err(CliError::usage(
            "provisioning creates an API key: keep it with --save-profile NAME \
             (written to the profile file, mode 600) or print it with --show-key",
        ));
    }
    output::register_secret(token);
    let device = provision(&settings.api_url(), token, &settings.tls()).await?;
    let saved = match save_profile {
        Some(name) => Some(settings::save_profile(
            name,
            settings::profile_entries(settings, device.device_id, device.api_key.expose())?,
        )?),
        None => None,
    };
    let key = show_key.then(|| device.api_key.expose().to_owned());
    if !show_key {
        output::register_secret(device.api_key.expose());
    }
    if json {
        let mut out = device.info.raw.clone();
        if let Some(key) = &key {
            out.insert("apiKey".into(), key.clone().into());
        }
        if let (Some(path), Some(name)) = (&saved, save_profile) {
            out.insert("savedProfile".into(), name.into());
            out.insert("profileFile".into(), path.display().to_string().into());
        }
        // Written straight out: the key was asked for, and redact() would blank it.
        println!("{}", Value::Object(out));
    } else {
        println!("provisioned device {}", device.device_id);
        if let Some(key) = &key {
            println!("  api key: {key}");
        }
        if let (Some(path), Some(name)) = (&saved, save_profile) {
            println!(
                "  saved as profile [{name}] in {} (use --profile {name})",
                path.display()
            );
        }
    }
    Ok(())
}
