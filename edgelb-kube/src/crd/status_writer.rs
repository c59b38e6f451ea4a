//! Writes `status` of every EdgeNode (see [`node_status`](super::node_status)) from the
//! pipeline's [`PipelineStatus`].
//!
//! A JSON merge patch of the `status` subresource, sent only when the status changed and at
//! most once per [`NodeStatusWriter::min_interval`] per node; failed writes are retried
//! with the next pass. RBAC, in edgelb's namespace: `patch` on `edgenodes/status`, and `list`
//! on `edgenodes` (once at start, to take over what an earlier writer wrote).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use edgelb_core::{CancellationToken, PipelineStatus};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use super::node_set::NodeSet;
use super::node_status::{Transitions, desired_statuses, rfc3339};
use super::{EdgeNode, EdgeNodeStatus};
use crate::error::{Error, Result};
use crate::status::FIELD_MANAGER;

/// Keeps every EdgeNode's `status` in line with the pipeline. Run it only while this
/// replica leads.
pub struct NodeStatusWriter {
    api: Api<EdgeNode>,
    namespace: String,
    /// The shortest time between two writes of one node's status (default 2 s).
    pub min_interval: Duration,
    written: BTreeMap<String, (EdgeNodeStatus, Instant)>,
    transitions: Transitions,
}

impl NodeStatusWriter {
    /// A writer of the EdgeNodes in `namespace`.
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            min_interval: Duration::from_secs(2),
            written: BTreeMap::new(),
            transitions: BTreeMap::new(),
        }
    }

    /// Takes over what another replica (or an earlier run) wrote: the conditions keep their
    /// `lastTransitionTime`, and a status that is already right is not written again.
    async fn seed(&mut self) {
        let list = match self.api.list(&kube::api::ListParams::default()).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(namespace = %self.namespace, error = %e, "listing the EdgeNodes' statuses failed; writing them afresh");
                return;
            }
        };
        let at = Instant::now()
            .checked_sub(self.min_interval)
            .unwrap_or_else(Instant::now);
        for object in list.items {
            let (Some(name), Some(status)) = (object.metadata.name, object.status) else {
                continue;
            };
            for c in &status.conditions {
                self.transitions.insert(
                    (name.clone(), c.type_.clone()),
                    (c.status.clone(), c.last_transition_time.clone()),
                );
            }
            self.written.insert(name, (status, at));
        }
    }

    /// Runs until `shutdown` or a channel closes.
    pub async fn run(
        mut self,
        mut nodes: watch::Receiver<Option<NodeSet>>,
        mut status: watch::Receiver<PipelineStatus>,
        shutdown: CancellationToken,
    ) -> Result<()> {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = self.seed() => {}
        }
        loop {
            let current_nodes = nodes.borrow_and_update().clone();
            let current = status.borrow_and_update().clone();
            let mut next_at: Option<Instant> = None;
            if let Some(set) = &current_nodes {
                let now = Instant::now();
                let now_text = rfc3339(SystemTime::now());
                let desired = desired_statuses(set, &current, &mut self.transitions, &now_text);
                for (name, desired) in desired {
                    match self.written.get(&name) {
                        Some((written, _)) if *written == desired => continue,
                        Some((_, at)) if *at + self.min_interval > now => {
                            let at = *at + self.min_interval;
                            next_at = Some(next_at.map_or(at, |n| n.min(at)));
                            continue;
                        }
                        _ => {}
                    }
                    match self.write(&name, &desired).await {
                        Ok(()) => {
                            self.written.insert(name, (desired, Instant::now()));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "writing an EdgeNode's status failed; retrying");
                            let at = Instant::now() + self.min_interval;
                            next_at = Some(next_at.map_or(at, |n| n.min(at)));
                        }
                    }
                }
                self.written
                    .retain(|name, _| set.generations.contains_key(name));
                self.transitions
                    .retain(|(name, _), _| set.generations.contains_key(name));
            }
            let sleep = async {
                match next_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                changed = status.changed() => if changed.is_err() { break },
                changed = nodes.changed() => if changed.is_err() { break },
                () = sleep => {}
            }
        }
        Ok(())
    }

    async fn write(&self, name: &str, status: &EdgeNodeStatus) -> Result<()> {
        // The whole status replaces the old one: fields now unset are sent as null.
        let mut body = serde_json::to_value(status).unwrap_or_else(|_| json!({}));
        if let Some(map) = body.as_object_mut() {
            for key in [
                "observedGeneration",
                "pools",
                "inSync",
                "liveDigest",
                "lastDeployTime",
                "lastDeployResult",
                "lastError",
                "consecutiveFailures",
                "health",
                "healthReason",
                "conditions",
            ] {
                map.entry(key).or_insert(serde_json::Value::Null);
            }
        }
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        self.api
            .patch_status(name, &params, &Patch::Merge(&json!({"status": body})))
            .await
            .map(drop)
            .map_err(|e| {
                Error::api(
                    "patching the status of",
                    format!("EdgeNode {}/{name}", self.namespace),
                    e,
                )
            })
    }
}
