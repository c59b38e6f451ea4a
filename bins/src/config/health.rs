use std::time::Duration;

use edgelb_core::HealthConfig;
use serde::Deserialize;

/// `health:` — how each edge is probed (with the native SSH and local deployers), and so
/// which edges' addresses are published. Durations take a unit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    /// Probe the edges (default true). Off: every edge's health stays unknown and every
    /// edge that runs a Service's config is published.
    pub enabled: bool,
    /// Time between two probes of an edge (default 2s).
    #[serde(with = "edgelb_core::duration")]
    pub interval: Duration,
    /// A probe that takes longer fails (default 3s).
    #[serde(with = "edgelb_core::duration")]
    pub timeout: Duration,
    /// Failed probes in a row that make an edge unhealthy (default 3).
    pub fall: u32,
    /// Good probes in a row that make it healthy again (default 2).
    pub rise: u32,
}

impl Default for HealthSettings {
    fn default() -> Self {
        let d = HealthConfig::default();
        Self {
            enabled: d.enabled,
            interval: d.interval,
            timeout: d.timeout,
            fall: d.fall,
            rise: d.rise,
        }
    }
}

impl HealthSettings {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.interval < Duration::from_millis(100) || self.interval > Duration::from_secs(3600) {
            return Err("interval: must be between 100ms and 1h".into());
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(600) {
            return Err("timeout: must be above 0 and at most 10m".into());
        }
        for (name, value) in [("fall", self.fall), ("rise", self.rise)] {
            if !(1..=100).contains(&value) {
                return Err(format!("{name}: must be between 1 and 100"));
            }
        }
        Ok(())
    }

    /// The pipeline's health settings.
    pub fn to_health_config(&self) -> HealthConfig {
        HealthConfig {
            enabled: self.enabled,
            interval: self.interval,
            timeout: self.timeout,
            fall: self.fall,
            rise: self.rise,
        }
    }
}
