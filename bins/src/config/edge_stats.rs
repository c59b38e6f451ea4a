use std::time::Duration;

use serde::Deserialize;

/// `edge_stats:` — how often each edge's HAProxy is asked for its traffic (`show stat`,
/// `show info` on the stats socket, over the deployer's session), for the `edgelb_edge_*`
/// metrics. Only with the native SSH and local deployers, and only on the leading replica.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeStatsSettings {
    /// Poll the edges (default true).
    pub enabled: bool,
    /// Time between two polls of an edge (default 15s, Prometheus's usual scrape interval).
    #[serde(with = "edgelb_core::duration")]
    pub interval: Duration,
    /// A poll that takes longer fails (default 10s).
    #[serde(with = "edgelb_core::duration")]
    pub timeout: Duration,
}

impl Default for EdgeStatsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(10),
        }
    }
}

impl EdgeStatsSettings {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.interval < Duration::from_millis(200) || self.interval > Duration::from_secs(3600) {
            return Err("interval: must be between 200ms and 1h".into());
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(600) {
            return Err("timeout: must be above 0 and at most 10m".into());
        }
        Ok(())
    }
}
