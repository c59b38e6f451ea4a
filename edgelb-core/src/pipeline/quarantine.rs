//! Per-node quarantine: when a node refuses a config (`haproxy -c`, a failed reload, a listen
//! port another process holds), the services to blame are set aside *on that node*: it gets
//! the rest of the desired state at once, with each quarantined service as it last ran there
//! (or without it when it never did). A quarantined service is tried again when its own input
//! changes or at the next resync, never in a loop, so a bad Service cannot keep pausing the
//! listeners of every other Service with failing reloads.

use std::collections::{BTreeMap, BTreeSet};

use crate::deploy::DeployError;
use crate::digest::RenderedConfig;
use crate::model::{ServiceKey, ServiceSpec, Snapshot};
use crate::node::EdgeNode;
use crate::traits::Renderer;

/// One node's quarantined services.
#[derive(Debug, Default)]
pub(super) struct Quarantine {
    entries: BTreeMap<ServiceKey, Entry>,
}

#[derive(Debug)]
struct Entry {
    /// The service's input when it was quarantined (`None`: it was not in the snapshot).
    input: Option<ServiceSpec>,
    reason: String,
}

impl Quarantine {
    /// Whether no service is quarantined.
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `key` is quarantined.
    pub(super) fn contains(&self, key: &ServiceKey) -> bool {
        self.entries.contains_key(key)
    }

    /// Sets `key` aside, remembering its input in `snapshot` so a change to it lifts the
    /// quarantine.
    pub(super) fn add(&mut self, key: ServiceKey, snapshot: &Snapshot, reason: String) {
        let input = snapshot.services.get(&key).cloned();
        self.entries.insert(key, Entry { input, reason });
    }

    /// Lifts the quarantine of every service whose input in `snapshot` differs from when it
    /// was set aside (changed, or gone); returns them.
    pub(super) fn release_changed(&mut self, snapshot: &Snapshot) -> Vec<ServiceKey> {
        let changed: Vec<ServiceKey> = self
            .entries
            .iter()
            .filter(|(key, e)| snapshot.services.get(*key) != e.input.as_ref())
            .map(|(key, _)| key.clone())
            .collect();
        for key in &changed {
            self.entries.remove(key);
        }
        changed
    }

    /// Lifts every quarantine (a resync tries them all again); returns how many there were.
    pub(super) fn release_all(&mut self) -> usize {
        std::mem::take(&mut self.entries).len()
    }

    /// The quarantined services and why, for the status.
    pub(super) fn reasons(&self) -> BTreeMap<ServiceKey, String> {
        self.entries
            .iter()
            .map(|(k, e)| (k.clone(), e.reason.clone()))
            .collect()
    }

    /// What the node should run: `desired` with each quarantined service as it is in
    /// `last_good` (what last ran on the node), or left out when it is not there. When the
    /// old version no longer fits beside the new state (its listen port now belongs to
    /// another service), it is left out as well.
    pub(super) fn apply(
        &self,
        desired: &Snapshot,
        last_good: Option<&Snapshot>,
        node: &EdgeNode,
    ) -> Snapshot {
        if self.entries.is_empty() {
            return desired.clone();
        }
        let mut out = desired.clone();
        for key in self.entries.keys() {
            out.services.remove(key);
        }
        for key in self.entries.keys() {
            let Some(old) = last_good.and_then(|g| g.services.get(key)) else {
                continue;
            };
            let mut with_old = out.clone();
            with_old.services.insert(key.clone(), old.clone());
            if with_old.validate_on(std::slice::from_ref(node)).is_ok() {
                out = with_old;
            }
        }
        out
    }
}

/// The services a node's refusal (`error`, a [config fault](DeployError::is_config_fault)) of
/// `config`, rendered from `rendered_from`, is to be blamed on: the renderer's word when it
/// can tell; otherwise the services that differ from `last_good` (what last ran on the node),
/// as long as that singles out some services and not all of them. Only services of
/// `rendered_from` are returned.
pub(super) fn culprits(
    renderer: &dyn Renderer,
    rendered_from: &Snapshot,
    last_good: Option<&Snapshot>,
    node: &EdgeNode,
    config: &RenderedConfig,
    error: &DeployError,
) -> BTreeSet<ServiceKey> {
    let named = renderer.blame(rendered_from, node, config, error);
    let blamed = named.unwrap_or_else(|| changed_since(rendered_from, last_good));
    blamed
        .into_iter()
        .filter(|k| rendered_from.services.contains_key(k))
        .collect()
}

/// The services of `now` that differ from `before`, when that is a strict, non-empty part
/// of them (with nothing to compare with, or when everything changed, nothing can be
/// singled out).
fn changed_since(now: &Snapshot, before: Option<&Snapshot>) -> BTreeSet<ServiceKey> {
    let Some(before) = before else {
        return BTreeSet::new();
    };
    let changed: BTreeSet<ServiceKey> = now
        .services
        .iter()
        .filter(|(k, spec)| before.services.get(*k) != Some(*spec))
        .map(|(k, _)| k.clone())
        .collect();
    if changed.len() == now.services.len() {
        return BTreeSet::new();
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Endpoint, PortSpec, ProxyProtocol};

    fn key(name: &str) -> ServiceKey {
        ServiceKey::new("ns", name).unwrap()
    }

    fn snap(services: &[(&str, u16, u8)]) -> Snapshot {
        let mut s = Snapshot::default();
        for (name, listen, last_octet) in services {
            s.insert_port(
                key(name),
                "p",
                PortSpec::new(*listen, ProxyProtocol::V2)
                    .with_endpoint(Endpoint::ready([10, 0, 0, *last_octet].into(), 80)),
            )
            .unwrap();
        }
        s
    }

    #[test]
    fn a_new_service_is_left_out_and_a_changed_one_keeps_its_last_good_version() {
        let last_good = snap(&[("a", 80, 1), ("b", 81, 1)]);
        let desired = snap(&[("a", 80, 2), ("b", 81, 2), ("c", 22, 1)]);
        let mut q = Quarantine::default();
        q.add(key("b"), &desired, "reload failed".into());
        q.add(key("c"), &desired, "port 22 taken".into());
        let out = q.apply(&desired, Some(&last_good), &EdgeNode::new("e1"));
        assert_eq!(out.services[&key("a")], desired.services[&key("a")]);
        assert_eq!(out.services[&key("b")], last_good.services[&key("b")]);
        assert!(!out.services.contains_key(&key("c")));
    }

    #[test]
    fn an_old_version_whose_port_is_taken_by_now_is_left_out() {
        let last_good = snap(&[("b", 80, 1)]);
        let desired = snap(&[("a", 80, 1), ("b", 81, 1)]);
        let mut q = Quarantine::default();
        q.add(key("b"), &desired, "x".into());
        let out = q.apply(&desired, Some(&last_good), &EdgeNode::new("e1"));
        assert!(!out.services.contains_key(&key("b")), "{out:?}");
        assert!(out.validate().is_ok());
    }

    #[test]
    fn a_change_to_its_input_or_its_removal_lifts_the_quarantine() {
        let desired = snap(&[("a", 80, 1), ("c", 22, 1)]);
        let mut q = Quarantine::default();
        q.add(key("c"), &desired, "taken".into());
        assert!(q.release_changed(&desired).is_empty(), "same input: stays");
        assert!(
            q.release_changed(&snap(&[("a", 80, 9), ("c", 22, 1)]))
                .is_empty()
        );
        assert_eq!(
            q.release_changed(&snap(&[("a", 80, 1), ("c", 2222, 1)])),
            vec![key("c")]
        );
        assert!(q.reasons().is_empty());
        q.add(key("c"), &desired, "taken".into());
        assert_eq!(q.release_changed(&snap(&[("a", 80, 1)])), vec![key("c")]);
        q.add(key("c"), &desired, "taken".into());
        assert_eq!(q.release_all(), 1);
        assert!(q.reasons().is_empty());
    }

    #[test]
    fn without_the_renderers_word_only_a_strict_part_that_changed_is_blamed() {
        let before = snap(&[("a", 80, 1), ("b", 81, 1)]);
        let now = snap(&[("a", 80, 1), ("b", 81, 2), ("c", 82, 1)]);
        assert_eq!(
            changed_since(&now, Some(&before)),
            [key("b"), key("c")].into()
        );
        assert!(changed_since(&now, None).is_empty(), "a first deploy");
        let all_new = snap(&[("a", 80, 5), ("b", 81, 5)]);
        assert!(changed_since(&all_new, Some(&before)).is_empty());
    }
}
