use std::time::Duration;

use edgelb_kube::LeaderElectionConfig;
use serde::Deserialize;

/// `leader_election:` — one active replica at a time, through a `coordination.k8s.io/v1`
/// Lease. Present means on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaderElectionSettings {
    /// The Lease's name (default `edgelb-leader`).
    pub lease: String,
    /// The Lease's namespace (default `$POD_NAMESPACE`).
    pub namespace: Option<String>,
    /// This replica's name in the Lease (default `$POD_NAME`, else the host name).
    pub identity: Option<String>,
    /// How long a lease lasts without renewal (default 15s).
    #[serde(with = "edgelb_core::duration")]
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up (default 10s).
    #[serde(with = "edgelb_core::duration")]
    pub renew_deadline: Duration,
    /// How often to try (default 2s).
    #[serde(with = "edgelb_core::duration")]
    pub retry_period: Duration,
}

impl Default for LeaderElectionSettings {
    fn default() -> Self {
        let d = LeaderElectionConfig::new("", "");
        Self {
            lease: d.lease_name,
            namespace: None,
            identity: None,
            lease_duration: d.lease_duration,
            renew_deadline: d.renew_deadline,
            retry_period: d.retry_period,
        }
    }
}

impl LeaderElectionSettings {
    /// Checks the lease name and timings offline, as the elector will when `run` starts it
    /// (namespace and identity may come from the pod's environment, so they are not checked).
    pub(super) fn validate(&self) -> Result<(), String> {
        let mut config = LeaderElectionConfig::new("check", "check");
        config.lease_name = self.lease.clone();
        config.lease_duration = self.lease_duration;
        config.renew_deadline = self.renew_deadline;
        config.retry_period = self.retry_period;
        config.validate().map_err(|e| e.to_string())
    }

    /// The elector's config, with namespace and identity from the environment where unset.
    pub fn to_config(&self) -> Result<LeaderElectionConfig, String> {
        let namespace = self
            .namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .ok_or("leader_election.namespace: set it, or run in a pod with POD_NAMESPACE from the downward API")?;
        let identity = self
            .identity
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
            })
            .filter(|h| !h.is_empty())
            .ok_or("leader_election.identity: set it, or POD_NAME")?;
        let mut config = LeaderElectionConfig::new(namespace, identity);
        config.lease_name = self.lease.clone();
        config.lease_duration = self.lease_duration;
        config.renew_deadline = self.renew_deadline;
        config.retry_period = self.retry_period;
        Ok(config)
    }
}
