//! Each edge's health prober: probes the edge through the deployer every
//! [`HealthConfig::interval`](crate::HealthConfig::interval), each probe bounded by its
//! `timeout`, on a task of its own (a deploy in flight, even a hung one, does not delay it),
//! and publishes the verdict in the node's status.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::lane::Shared;
use crate::health::{EdgeHealth, HealthTracker};
use crate::node::EdgeNode;
use crate::traits::HealthProbe;

/// Probes `node` with `probe` until `shutdown`.
pub(super) async fn run(
    node: EdgeNode,
    probe: Arc<dyn HealthProbe>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let config = shared.config.health.clone();
    let mut tracker = HealthTracker::new(&config);
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ports = served_ports(&shared, &node.name);
        let probed = tokio::time::timeout(config.timeout, probe.probe_health(&node, &ports));
        let result = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            probed = probed => match probed {
                Err(_) => Err(format!("no answer to the health probe within {:?}", config.timeout)),
                Ok(result) => result.map_err(|e| e.to_string()),
            },
        };
        let now = SystemTime::now();
        let changed = tracker.observe(result, now).cloned();
        match &changed {
            Some(EdgeHealth::Unhealthy { reason, .. }) => tracing::warn!(
                node = %node.name,
                %reason,
                fall = config.fall,
                "edge unhealthy: its addresses leave what is published while another edge is healthy"
            ),
            Some(EdgeHealth::Healthy { .. }) => {
                tracing::info!(node = %node.name, rise = config.rise, "edge healthy: its addresses are published");
            }
            _ => {}
        }
        let state = tracker.state().clone();
        shared.status.send_if_modified(|s| {
            let Some(ns) = s.nodes.get_mut(&node.name) else {
                return false;
            };
            ns.health_checked_at = Some(now);
            // A new reason of a still unhealthy edge is recorded without waking every
            // reader; a transition wakes them.
            ns.health = state;
            if changed.is_some() {
                ns.health_transitions += 1;
            }
            changed.is_some()
        });
    }
}

/// The listen ports the node serves now on every address (from what its live config was
/// rendered from): the probe connects on the node's loopback, where a port bound on one asked
/// address does not answer, so those are left to the master's and workers' check.
fn served_ports(shared: &Shared, node: &str) -> Vec<u16> {
    let status = shared.status.borrow();
    let ports: BTreeSet<u16> = status
        .nodes
        .get(node)
        .and_then(|n| n.live_snapshot.as_ref())
        .map(|s| s.listen_ports_on_every_address())
        .unwrap_or_default();
    ports.into_iter().collect()
}
