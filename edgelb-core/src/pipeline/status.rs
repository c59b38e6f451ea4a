use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::deploy::{Applied, DeployError};
use crate::digest::Digest;
use crate::health::EdgeHealth;
use crate::model::{ServiceKey, Snapshot};

/// What the pipeline knows, published through a `tokio::sync::watch` channel after every
/// change. Status sinks (Service status, events, metrics, readiness) read it.
#[derive(Debug, Clone, Default)]
pub struct PipelineStatus {
    /// Incremented for every snapshot accepted as the new desired state.
    pub generation: u64,
    /// The desired state (the last accepted snapshot).
    pub snapshot: Option<Arc<Snapshot>>,
    /// When the desired state was received from the source.
    pub snapshot_received_at: Option<SystemTime>,
    /// The last source problem (or rejected snapshot), cleared by the next good snapshot.
    pub source_error: Option<String>,
    /// Backends (`namespace/name:port`) the source empties but that keep their endpoints
    /// while the empty-backend hold runs.
    pub held_backends: Vec<String>,
    /// Per node, by name.
    pub nodes: BTreeMap<String, NodeStatus>,
}

impl PipelineStatus {
    /// Nodes that run the current desired state.
    pub fn nodes_in_sync(&self) -> usize {
        self.nodes
            .values()
            .filter(|n| n.in_sync(self.generation))
            .count()
    }

    /// Services quarantined on at least one node, with the nodes.
    pub fn quarantined(&self) -> BTreeMap<&ServiceKey, Vec<&str>> {
        let mut out: BTreeMap<&ServiceKey, Vec<&str>> = BTreeMap::new();
        for (name, node) in &self.nodes {
            for key in node.quarantined.keys() {
                out.entry(key).or_default().push(name);
            }
        }
        out
    }
}

/// One node's state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStatus {
    /// Digest of the config rendered for the current desired state.
    pub desired_digest: Option<Digest>,
    /// Digest last seen live (after a deploy or a resync).
    pub live_digest: Option<Digest>,
    /// Generation of the snapshot whose config is live, when known.
    pub live_generation: Option<u64>,
    /// How the last successful deploy went.
    pub last_outcome: Option<Applied>,
    /// The last error, cleared by the next success.
    pub last_error: Option<DeployError>,
    /// When a deploy was last attempted.
    pub last_attempt: Option<SystemTime>,
    /// When the node last reached the desired state.
    pub last_success: Option<SystemTime>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Deploy attempts recorded since start.
    pub deploys: u64,
    /// Deploy results since start, by label: `reloaded`, `runtime-updated`, `unchanged`, or
    /// a failure's [`DeployError::kind`].
    pub results: BTreeMap<String, u64>,
    /// For the last generation this node reached: how long from the source delivering the
    /// snapshot to the node confirming it live.
    pub last_convergence: Option<std::time::Duration>,
    /// Services this node refused (its `haproxy -c`, its reload or a taken port), with why:
    /// the node runs the rest of the desired state, and each of these as it last ran there
    /// (or not at all when it never did), until the service's input changes or the next
    /// resync tries it again.
    pub quarantined: BTreeMap<ServiceKey, String>,
    /// What the node's live config was rendered from: the desired state of
    /// [`NodeStatus::live_generation`] with its quarantined services as they last ran there.
    pub live_snapshot: Option<Arc<Snapshot>>,
    /// When the deploy now in flight to this node started (`None` when none is).
    pub deploying_since: Option<SystemTime>,
    /// Whether the node serves, from its health probes.
    pub health: EdgeHealth,
    /// When its health was last probed, whatever the result (`None`: never).
    pub health_checked_at: Option<SystemTime>,
    /// Health changes since start (healthy ↔ unhealthy, and the first verdict).
    pub health_transitions: u64,
}

impl NodeStatus {
    /// Whether the node runs the config of `generation` (less its quarantined services).
    pub fn in_sync(&self, generation: u64) -> bool {
        self.live_generation == Some(generation)
            && self.desired_digest.is_some()
            && self.live_digest == self.desired_digest
    }
}
