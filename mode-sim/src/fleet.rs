//! Generated devices for load tests (`--devices N`, `--devices-csv FILE`): N devices with
//! deterministic ids and keys added to a configuration, and their credentials as CSV for the
//! tool that drives them (the fleet benchmark, Locust workers, a script).

use std::io::Write;
use std::path::Path;

use mode_core::proto::DeviceId;

use crate::config::{ConfigError, DeviceConfig, SimConfig};

/// The lowest id a generated device gets; above every id of the demo and of most hand-written
/// configurations, so the fleet does not depend on what else the configuration holds.
pub const FLEET_FIRST_ID: DeviceId = 100_000;

/// The API key of generated device `id`: `v1.fleet-device-{id}`. Deterministic, so a driver
/// started later (or on another machine) can reach a device without the CSV.
pub fn fleet_device_key(id: DeviceId) -> String {
    format!("v1.fleet-device-{id}")
}

/// One generated device, as the CSV lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetDevice {
    /// Its id (the MQTT username).
    pub id: DeviceId,
    /// Its API key (the MQTT password).
    pub api_key: String,
    /// The project it is in.
    pub project_id: u64,
    /// The home it is in, when the project has one.
    pub home_id: Option<u64>,
}

/// Adds `count` devices to the first project of `config` (in its first home, if it has one),
/// with ids from [`FLEET_FIRST_ID`] on (or from just above the highest configured id, when
/// that is higher) and keys from [`fleet_device_key`]. Returns them in id order.
pub fn add_devices(config: &mut SimConfig, count: usize) -> Result<Vec<FleetDevice>, ConfigError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let highest = config
        .projects
        .iter()
        .flat_map(|p| &p.devices)
        .map(|d| d.id)
        .max();
    let first = highest.map_or(FLEET_FIRST_ID, |h| FLEET_FIRST_ID.max(h + 1));
    let project = config.projects.first_mut().ok_or_else(|| {
        ConfigError::Invalid(
            "--devices needs a project to put the devices in, and the configuration has none: \
             add a [[project]] to it, or run without --config for the demo project"
                .into(),
        )
    })?;
    let home_id = project.homes.first().map(|h| h.id);
    let fleet: Vec<FleetDevice> = (first..)
        .take(count)
        .map(|id| FleetDevice {
            id,
            api_key: fleet_device_key(id),
            project_id: project.id,
            home_id,
        })
        .collect();
    project.devices.extend(fleet.iter().map(|d| DeviceConfig {
        id: d.id,
        api_key: d.api_key.clone(),
        name: format!("fleet device {}", d.id),
        tag: "fleet".into(),
        device_class: "sensor".into(),
        home_id,
    }));
    Ok(fleet)
}

/// Writes `devices` to `path` as CSV: a header `device_id,api_key,project_id,home_id`, then one
/// line per device (an empty `home_id` when it has no home). Keys contain no comma or quote.
pub fn write_csv(path: &Path, devices: &[FleetDevice]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "device_id,api_key,project_id,home_id")?;
    for d in devices {
        let home = d.home_id.map(|h| h.to_string()).unwrap_or_default();
        writeln!(out, "{},{},{},{home}", d.id, d.api_key, d.project_id)?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_go_into_the_first_project_and_home_with_deterministic_credentials() {
        let mut config = SimConfig::demo();
        let fleet = add_devices(&mut config, 3).unwrap();
        assert_eq!(
            fleet.iter().map(|d| d.id).collect::<Vec<_>>(),
            [100_000, 100_001, 100_002]
        );
        assert_eq!(fleet[2].api_key, "v1.fleet-device-100002");
        assert_eq!(fleet[0].home_id, Some(crate::config::DEMO_HOME));
        assert_eq!(config.projects[0].devices.len(), 2 + 3);
        config.validate().unwrap();
    }

    #[test]
    fn ids_start_above_a_configured_id_in_the_fleet_range() {
        let mut config = SimConfig::demo();
        config.projects[0].devices[0].id = 100_005;
        let fleet = add_devices(&mut config, 1).unwrap();
        assert_eq!(fleet[0].id, 100_006);
        config.validate().unwrap();
    }

    #[test]
    fn a_configuration_without_a_project_is_refused_with_what_to_do() {
        let mut config = SimConfig::default();
        let err = add_devices(&mut config, 1).unwrap_err();
        assert!(err.to_string().contains("add a [[project]]"), "{err}");
    }
}
