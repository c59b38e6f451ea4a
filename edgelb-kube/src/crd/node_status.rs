//! Each EdgeNode's `status` from the pipeline's [`PipelineStatus`]: what `/metrics` knows of
//! the edge (in sync, live digest, last deploy and its outcome, failures, health) and the
//! conditions `Ready` and `InSync`, so `kubectl get edgenodes` shows the fleet at a glance.
//! [`NodeStatusWriter`](super::NodeStatusWriter) writes them.

use std::collections::BTreeMap;
use std::time::SystemTime;

use edgelb_core::{EdgeHealth, NodeStatus, PipelineStatus};
use k8s_openapi::jiff::Timestamp;

use super::node_set::NodeSet;
use super::{Condition, EdgeNodeStatus};

/// RFC 3339 to the second, as Kubernetes writes times.
pub(super) fn rfc3339(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    Timestamp::from_second(secs)
        .map_or_else(|_| "1970-01-01T00:00:00Z".to_owned(), |t| t.to_string())
}

fn condition(type_: &str, ok: Option<bool>, reason: &str, message: String) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: match ok {
            Some(true) => "True",
            Some(false) => "False",
            None => "Unknown",
        }
        .to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time: String::new(),
        observed_generation: None,
    }
}

/// The status of a valid node in `pools` (empty: the default pool), from the pipeline's
/// view of it; `generation` is the pipeline's current generation. Conditions have no
/// `lastTransitionTime` yet (the writer sets it).
pub fn node_status(pools: &[String], node: Option<&NodeStatus>, generation: u64) -> EdgeNodeStatus {
    let pools = if pools.is_empty() {
        edgelb_core::DEFAULT_POOL.to_owned()
    } else {
        pools.join(",")
    };
    let Some(node) = node else {
        return EdgeNodeStatus {
            pools: Some(pools),
            in_sync: Some(false),
            health: Some("Unknown".into()),
            conditions: vec![
                condition(
                    "Ready",
                    None,
                    "Pending",
                    "edgelb has not deployed to this edge yet".into(),
                ),
                condition(
                    "InSync",
                    None,
                    "Pending",
                    "edgelb has not deployed to this edge yet".into(),
                ),
            ],
            ..EdgeNodeStatus::default()
        };
    };
    let in_sync = node.in_sync(generation);
    let result = match (&node.last_error, node.last_outcome) {
        (Some(_), _) => Some("failed".to_owned()),
        (None, Some(applied)) => Some(applied.to_string()),
        (None, None) => None,
    };
    let (health, reason) = match &node.health {
        EdgeHealth::Healthy { .. } => ("Healthy", None),
        EdgeHealth::Unhealthy { reason, .. } => ("Unhealthy", Some(reason.clone())),
        EdgeHealth::Unknown => ("Unknown", None),
    };
    let ready = match (&node.health, node.live_generation) {
        (EdgeHealth::Unhealthy { reason, .. }, _) => condition(
            "Ready",
            Some(false),
            "Unhealthy",
            format!("health probes fail: {reason}"),
        ),
        (_, None) => condition(
            "Ready",
            Some(false),
            "NoConfig",
            "the edge runs no config of edgelb's yet".into(),
        ),
        (EdgeHealth::Healthy { .. }, Some(_)) => condition(
            "Ready",
            Some(true),
            "Serving",
            "the edge serves and passes its health probes".into(),
        ),
        (EdgeHealth::Unknown, Some(_)) => condition(
            "Ready",
            Some(true),
            "Serving",
            "the edge runs a config of edgelb's (its health is not probed)".into(),
        ),
    };
    let synced = if in_sync {
        condition(
            "InSync",
            Some(true),
            "InSync",
            format!("the edge runs the config of generation {generation}"),
        )
    } else if let Some(e) = &node.last_error {
        condition("InSync", Some(false), "DeployFailed", e.to_string())
    } else if node.deploying_since.is_some() {
        condition(
            "InSync",
            Some(false),
            "Deploying",
            "a deploy is under way".into(),
        )
    } else {
        condition(
            "InSync",
            Some(false),
            "Pending",
            "the edge waits for its deploy".into(),
        )
    };
    EdgeNodeStatus {
        observed_generation: None,
        pools: Some(pools),
        in_sync: Some(in_sync),
        live_digest: node.live_digest.map(|d| d.to_string()),
        last_deploy_time: node.last_attempt.map(rfc3339),
        last_deploy_result: result,
        last_error: node.last_error.as_ref().map(ToString::to_string),
        consecutive_failures: Some(node.consecutive_failures),
        health: Some(health.into()),
        health_reason: reason,
        conditions: vec![ready, synced],
    }
}

/// The status of an EdgeNode that cannot be used (`reason`).
pub fn invalid_status(reason: &str) -> EdgeNodeStatus {
    let message = format!("{reason}; edgelb leaves this edge alone until it is fixed");
    EdgeNodeStatus {
        in_sync: Some(false),
        health: Some("Unknown".into()),
        conditions: vec![
            condition("Ready", Some(false), "InvalidSpec", message.clone()),
            condition("InSync", Some(false), "InvalidSpec", message),
        ],
        ..EdgeNodeStatus::default()
    }
}

/// When each (node, condition type) last changed status: `(status, lastTransitionTime)`.
pub type Transitions = BTreeMap<(String, String), (String, String)>;

/// The statuses to write for `nodes` and `status`: each condition keeps its
/// `lastTransitionTime` from `transitions` while its status stays, and gets `now` when it
/// changes (`transitions` is updated).
pub fn desired_statuses(
    nodes: &NodeSet,
    status: &PipelineStatus,
    transitions: &mut Transitions,
    now: &str,
) -> BTreeMap<String, EdgeNodeStatus> {
    let mut out = BTreeMap::new();
    let valid = nodes.nodes.iter().map(|n| {
        (
            n.name.clone(),
            node_status(&n.pools, status.nodes.get(&n.name), status.generation),
        )
    });
    let invalid = nodes
        .invalid
        .iter()
        .map(|(name, reason)| (name.clone(), invalid_status(reason)));
    for (name, mut s) in valid.chain(invalid) {
        let generation = nodes.generations.get(&name).copied().flatten();
        s.observed_generation = generation;
        for c in &mut s.conditions {
            c.observed_generation = generation;
            let key = (name.clone(), c.type_.clone());
            match transitions.get(&key) {
                Some((status, at)) if *status == c.status => c.last_transition_time.clone_from(at),
                _ => {
                    c.last_transition_time = now.to_owned();
                    transitions.insert(key, (c.status.clone(), now.to_owned()));
                }
            }
        }
        out.insert(name, s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use edgelb_core::{Applied, Digest};

    #[test]
    fn a_synced_healthy_node_is_ready_and_in_sync() {
        let digest = Digest::of(b"cfg");
        let node = NodeStatus {
            desired_digest: Some(digest),
            live_digest: Some(digest),
            live_generation: Some(4),
            last_outcome: Some(Applied::RuntimeUpdated),
            last_attempt: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            health: EdgeHealth::Healthy {
                since: SystemTime::now(),
            },
            ..NodeStatus::default()
        };
        let s = node_status(&["fra".into(), "public".into()], Some(&node), 4);
        assert_eq!(s.pools.as_deref(), Some("fra,public"));
        assert_eq!(s.in_sync, Some(true));
        assert_eq!(s.live_digest, Some(digest.to_string()));
        assert_eq!(s.last_deploy_time.as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(s.last_deploy_result.as_deref(), Some("runtime-updated"));
        assert_eq!(s.health.as_deref(), Some("Healthy"));
        assert_eq!(s.consecutive_failures, Some(0));
        let by_type: BTreeMap<&str, (&str, &str)> = s
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), (c.status.as_str(), c.reason.as_str())))
            .collect();
        assert_eq!(by_type["Ready"], ("True", "Serving"));
        assert_eq!(by_type["InSync"], ("True", "InSync"));
    }

    #[test]
    fn transition_times_stay_while_the_status_stays() {
        let mut set = NodeSet::default();
        set.nodes.push(edgelb_core::EdgeNode::new("edge-1"));
        set.generations.insert("edge-1".into(), Some(7));
        let mut transitions = Transitions::new();
        // Seeded from an earlier writer: InSync has been False since t0.
        transitions.insert(
            ("edge-1".into(), "InSync".into()),
            ("Unknown".into(), "2026-01-01T00:00:00Z".into()),
        );
        let pending = PipelineStatus::default();
        let first = desired_statuses(&set, &pending, &mut transitions, "2026-01-02T00:00:00Z");
        let c = &first["edge-1"].conditions;
        assert_eq!(
            c[1].last_transition_time, "2026-01-01T00:00:00Z",
            "unchanged: kept"
        );
        assert_eq!(
            c[0].last_transition_time, "2026-01-02T00:00:00Z",
            "first seen: now"
        );
        assert_eq!(c[0].observed_generation, Some(7));
        assert_eq!(first["edge-1"].observed_generation, Some(7));

        let digest = Digest::of(b"cfg");
        let mut synced = PipelineStatus {
            generation: 1,
            ..PipelineStatus::default()
        };
        synced.nodes.insert(
            "edge-1".into(),
            NodeStatus {
                desired_digest: Some(digest),
                live_digest: Some(digest),
                live_generation: Some(1),
                ..NodeStatus::default()
            },
        );
        let second = desired_statuses(&set, &synced, &mut transitions, "2026-01-03T00:00:00Z");
        let c = &second["edge-1"].conditions;
        assert_eq!(
            (c[1].status.as_str(), c[1].last_transition_time.as_str()),
            ("True", "2026-01-03T00:00:00Z")
        );
        let third = desired_statuses(&set, &synced, &mut transitions, "2026-01-04T00:00:00Z");
        assert_eq!(third, second, "nothing changed: nothing to write");
    }

    #[test]
    fn failures_and_bad_health_say_why() {
        let node = NodeStatus {
            live_generation: Some(1),
            consecutive_failures: 3,
            last_error: Some(edgelb_core::DeployError::Connect {
                node: "edge-1".into(),
                message: "connection refused".into(),
            }),
            health: EdgeHealth::Unhealthy {
                since: SystemTime::now(),
                reason: "haproxy does not answer".into(),
            },
            ..NodeStatus::default()
        };
        let s = node_status(&[], Some(&node), 2);
        assert_eq!(s.pools.as_deref(), Some("default"));
        assert_eq!(s.in_sync, Some(false));
        assert_eq!(s.last_deploy_result.as_deref(), Some("failed"));
        assert_eq!(s.consecutive_failures, Some(3));
        assert_eq!(s.health_reason.as_deref(), Some("haproxy does not answer"));
        assert!(
            s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("connection refused"))
        );
        assert_eq!(s.conditions[0].reason, "Unhealthy");
        assert_eq!(s.conditions[1].reason, "DeployFailed");
        let invalid = invalid_status("spec.extraBinds: port 80 is listed twice");
        assert_eq!(invalid.conditions[0].reason, "InvalidSpec");
        assert!(invalid.conditions[0].message.contains("listed twice"));
    }
}
