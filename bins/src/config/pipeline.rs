use std::time::Duration;

use edgelb_core::{HealthConfig, PipelineConfig};
use serde::Deserialize;

/// `pipeline:` — timings. Durations take a unit: `250ms`, `5s`, `1m`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSettings {
    /// Quiet time before a change is applied (default 200ms).
    #[serde(with = "edgelb_core::duration")]
    pub debounce: Duration,
    /// Longest wait under a steady stream of changes (default 2s).
    #[serde(with = "edgelb_core::duration")]
    pub max_debounce: Duration,
    /// How often live configs are re-checked and drift repaired (default 60s).
    #[serde(with = "edgelb_core::duration")]
    pub resync: Duration,
    /// First retry delay after a failure, doubling per failure (default 1s).
    #[serde(with = "edgelb_core::duration")]
    pub backoff_initial: Duration,
    /// Cap of the retry delay (default 60s).
    #[serde(with = "edgelb_core::duration")]
    pub backoff_max: Duration,
    /// Nodes deployed at once (default 8).
    pub max_concurrency: usize,
    /// A backend that had endpoints and that the source empties keeps its endpoints until
    /// the emptiness has lasted this long (default 10s; `0ms` turns the safety off).
    #[serde(with = "edgelb_core::duration")]
    pub empty_backend_hold: Duration,
    /// A deploy still running after this long is reported (a WARN line and the
    /// `edgelb_node_deploy_started_timestamp_seconds` metric; default 10s). The other edges
    /// never wait for it.
    #[serde(with = "edgelb_core::duration")]
    pub slow_deploy_after: Duration,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        let d = PipelineConfig::default();
        Self {
            debounce: d.debounce,
            max_debounce: d.max_debounce,
            resync: d.resync_interval,
            backoff_initial: d.backoff_initial,
            backoff_max: d.backoff_max,
            max_concurrency: d.max_concurrency,
            empty_backend_hold: Duration::from_secs(10),
            slow_deploy_after: d.slow_deploy_after,
        }
    }
}

impl PipelineSettings {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.max_concurrency == 0 {
            return Err("max_concurrency: must be at least 1".into());
        }
        if self.resync < Duration::from_secs(1) {
            return Err("resync: must be at least 1s".into());
        }
        if self.backoff_initial.is_zero() || self.backoff_max < self.backoff_initial {
            return Err(
                "backoff_initial must be above 0 and backoff_max at least backoff_initial".into(),
            );
        }
        if self.slow_deploy_after.is_zero() {
            return Err("slow_deploy_after: must be above 0".into());
        }
        if self.max_debounce < self.debounce {
            return Err("max_debounce must be at least debounce".into());
        }
        Ok(())
    }

    /// The pipeline's config, with `batch_size` chosen by the deployer and the `health:`
    /// settings.
    pub fn to_pipeline_config(&self, batch_size: usize, health: HealthConfig) -> PipelineConfig {
        PipelineConfig {
            debounce: self.debounce,
            max_debounce: self.max_debounce,
            resync_interval: self.resync,
            backoff_initial: self.backoff_initial,
            backoff_max: self.backoff_max,
            max_concurrency: self.max_concurrency,
            empty_backend_hold: self.empty_backend_hold,
            batch_size,
            slow_deploy_after: self.slow_deploy_after,
            health,
        }
    }
}
