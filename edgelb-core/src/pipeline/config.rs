use std::time::Duration;

use crate::health::HealthConfig;

/// Timings and limits of a [`Pipeline`](super::Pipeline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Quiet time after a snapshot before it is applied; a burst of changes becomes one deploy.
    pub debounce: Duration,
    /// Longest a snapshot waits under a steady stream of changes before it is applied anyway.
    pub max_debounce: Duration,
    /// How often every node's live digest is re-checked and drift repaired.
    pub resync_interval: Duration,
    /// First retry delay after a failed deploy; doubles per failure.
    pub backoff_initial: Duration,
    /// Cap of the retry delay.
    pub backoff_max: Duration,
    /// Deploy calls in flight at once.
    pub max_concurrency: usize,
    /// A backend that had endpoints and that the source empties (or drops) keeps its
    /// endpoints until the emptiness has lasted this long, so a flapping watch cannot
    /// black-hole traffic. Zero (the default) applies emptiness at once.
    pub empty_backend_hold: Duration,
    /// Nodes per [`Deployer::deploy`](crate::Deployer::deploy) call (1: the pipeline fans
    /// out; Ansible wants all nodes in one call). Each batch is kept in sync by a task of its
    /// own, so with 1 no node ever waits for another.
    pub batch_size: usize,
    /// A deploy still running after this long is reported (a WARN line, and
    /// [`NodeStatus::deploying_since`](crate::NodeStatus::deploying_since) for metrics); it
    /// is not cut short: the deployer's own per-step timeouts end a hung one.
    pub slow_deploy_after: Duration,
    /// How each edge's health is probed (see [`HealthConfig`]).
    pub health: HealthConfig,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(200),
            max_debounce: Duration::from_secs(2),
            resync_interval: Duration::from_secs(60),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            max_concurrency: 8,
            empty_backend_hold: Duration::ZERO,
            batch_size: 1,
            slow_deploy_after: Duration::from_secs(10),
            health: HealthConfig::default(),
        }
    }
}

impl PipelineConfig {
    /// Retry delay after `failures` consecutive failures (1 → `backoff_initial`).
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.backoff_initial
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let c = PipelineConfig::default();
        let secs: Vec<u64> = (1..=9).map(|n| c.backoff(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(c.backoff(u32::MAX).as_secs(), 60);
    }
}
