//! The `edgelb.io/Placed` condition in a Service's `status.conditions`: `False` while some of
//! its placement cannot be honoured (a listen port an older Service holds on the same edges,
//! a pool without edges, an invalid pool or address), with the reason and what to do; `True`
//! again once that is resolved. A Service that never had a problem gets no condition (no
//! write per Service for nothing).
//!
//! Written with a JSON merge patch of the whole list, guarded by the Service's
//! `resourceVersion` (so other controllers' conditions are kept; a conflict reads again), by
//! the replica that runs the source (the leader). A write that fails is tried again at the
//! next rebuild of the snapshot. RBAC: `get` on `services`, `patch` on `services/status`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::convert::Warning;
use crate::error::{hint, status_code};
use crate::placement::PLACEMENT_REASONS;
use crate::status::FIELD_MANAGER;

/// The condition type edgelb writes on a Service whose placement had a problem.
pub const PLACED_CONDITION: &str = "edgelb.io/Placed";

/// The longest condition message (the API allows 32768 bytes).
const MAX_MESSAGE: usize = 4096;

/// What the condition says: `None` for `True` (placed as asked), else reason and message.
type Problem = Option<(String, String)>;

/// Writes [`PLACED_CONDITION`] from the source's warnings.
pub(crate) struct PlacementConditions {
    client: Client,
    /// What was last written, by `(namespace, name)`.
    written: BTreeMap<(String, String), Problem>,
}

impl PlacementConditions {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            written: BTreeMap::new(),
        }
    }

    /// Brings the condition of every Service in `warnings` (and of every Service it was
    /// `False` on before) in line with this build's warnings.
    pub(crate) async fn sync(&mut self, warnings: &[Warning]) {
        let want = problems(warnings);
        let mut jobs: Vec<((String, String), Problem)> = want
            .iter()
            .filter(|(k, p)| self.written.get(*k) != Some(&Some((*p).clone())))
            .map(|(k, p)| (k.clone(), Some(p.clone())))
            .collect();
        jobs.extend(
            self.written
                .iter()
                .filter(|(k, p)| p.is_some() && !want.contains_key(*k))
                .map(|(k, _)| (k.clone(), None)),
        );
        for (key, problem) in jobs {
            match self.write(&key, &problem).await {
                Ok(true) => {
                    self.written.insert(key, problem);
                }
                Ok(false) => {
                    self.written.remove(&key); // the Service is gone
                }
                Err(e) => tracing::warn!(
                    service = %format!("{}/{}", key.0, key.1),
                    error = %e,
                    hint = hint(&e),
                    "writing the Service's {PLACED_CONDITION} condition failed; tried again at the next change"
                ),
            }
        }
    }

    /// Writes one Service's condition; `Ok(false)` when the Service is gone.
    async fn write(&self, (ns, name): &(String, String), problem: &Problem) -> kube::Result<bool> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), ns);
        for _ in 0..3 {
            let svc = match api.get_status(name).await {
                Ok(svc) => svc,
                Err(e) if status_code(&e) == Some(404) => return Ok(false),
                Err(e) => return Err(e),
            };
            let existing = svc
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            let Some(conditions) = merged(&existing, problem, svc.metadata.generation) else {
                return Ok(true); // already says so
            };
            let body = json!({
                "metadata": {"resourceVersion": svc.metadata.resource_version},
                "status": {"conditions": conditions},
            });
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            };
            match api.patch_status(name, &params, &Patch::Merge(&body)).await {
                Ok(_) => {
                    tracing::info!(
                        service = %format!("{ns}/{name}"),
                        placed = problem.is_none(),
                        reason = problem.as_ref().map_or("Placed", |(r, _)| r.as_str()),
                        "{PLACED_CONDITION} condition written"
                    );
                    return Ok(true);
                }
                Err(e) if status_code(&e) == Some(409) => continue,
                Err(e) if status_code(&e) == Some(404) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        tracing::debug!(service = %format!("{ns}/{name}"), "the Service kept changing; its condition is written at the next change");
        Ok(true)
    }
}

/// The placement problems of each Service in `warnings`: the first reason, every message.
fn problems(warnings: &[Warning]) -> BTreeMap<(String, String), (String, String)> {
    let mut out: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
    for w in warnings {
        if !PLACEMENT_REASONS.contains(&w.reason) {
            continue;
        }
        let Some((Some(ns), Some(name))) = w
            .regarding
            .as_ref()
            .map(|r| (r.namespace.clone(), r.name.clone()))
        else {
            continue;
        };
        out.entry((ns, name))
            .and_modify(|(_, message)| {
                if message.len() < MAX_MESSAGE {
                    message.push_str("; ");
                    message.push_str(&w.message);
                }
            })
            .or_insert_with(|| (w.reason.to_owned(), w.message.clone()));
    }
    for (_, message) in out.values_mut() {
        if message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
    }
    out
}

/// `existing` with edgelb's condition set to `problem`, as JSON; `None` when it already says
/// that. Other conditions are kept as they are; the transition time moves only when the
/// status flips.
fn merged(
    existing: &[Condition],
    problem: &Problem,
    generation: Option<i64>,
) -> Option<Vec<Value>> {
    let (status, reason, message) = match problem {
        Some((reason, message)) => ("False", reason.as_str(), message.as_str()),
        None => (
            "True",
            "Placed",
            "every port of the Service is served as its placement asks",
        ),
    };
    let ours = existing.iter().find(|c| c.type_ == PLACED_CONDITION);
    if ours.is_some_and(|c| c.status == status && c.reason == reason && c.message == message) {
        return None;
    }
    let since = match ours {
        Some(c) if c.status == status => c.last_transition_time.0,
        _ => Timestamp::now(),
    };
    let mut out: Vec<Value> = existing
        .iter()
        .filter(|c| c.type_ != PLACED_CONDITION)
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    out.push(json!({
        "type": PLACED_CONDITION,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "observedGeneration": generation,
    }));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;

    fn warning(name: &str, reason: &'static str, message: &str) -> Warning {
        Warning {
            object: format!("Service ns/{name}"),
            regarding: Some(ObjectReference {
                namespace: Some("ns".into()),
                name: Some(name.into()),
                ..ObjectReference::default()
            }),
            reason,
            message: message.into(),
        }
    }

    #[test]
    fn placement_warnings_become_one_problem_per_service() {
        let p = problems(&[
            warning("a", "PortConflict", "port 443 taken"),
            warning("a", "UnsupportedProtocol", "udp"),
            warning("a", "PortConflict", "port 80 taken"),
            warning("b", "NoEdgesInPool", "pool x has no edges"),
        ]);
        assert_eq!(
            p[&("ns".into(), "a".into())],
            (
                "PortConflict".into(),
                "port 443 taken; port 80 taken".into()
            )
        );
        assert_eq!(p[&("ns".into(), "b".into())].0, "NoEdgesInPool");
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn the_condition_is_replaced_and_others_are_kept() {
        let other: Condition = serde_json::from_value(json!({
            "type": "example.com/Ready", "status": "True", "reason": "Fine", "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        let problem = Some(("PortConflict".to_owned(), "taken".to_owned()));
        let list = merged(std::slice::from_ref(&other), &problem, Some(3)).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["type"], "example.com/Ready");
        assert_eq!(list[1]["status"], "False");
        assert_eq!(list[1]["observedGeneration"], 3);
        let ours: Condition = serde_json::from_value(list[1].clone()).unwrap();
        assert_eq!(
            merged(&[other.clone(), ours.clone()], &problem, Some(3)),
            None
        );
        let placed = merged(&[other, ours], &None, Some(4)).unwrap();
        assert_eq!(
            (&placed[1]["status"], &placed[1]["reason"]),
            (&json!("True"), &json!("Placed"))
        );
    }
}
