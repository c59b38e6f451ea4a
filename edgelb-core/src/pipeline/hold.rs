//! The empty-backend hold: a snapshot that would empty a backend that had endpoints (or drop
//! it entirely) is applied for that backend only once the emptiness has lasted
//! [`PipelineConfig::empty_backend_hold`](super::PipelineConfig::empty_backend_hold). Until
//! then the backend keeps its previous endpoints, so a flapping watch cannot black-hole
//! traffic; every other change goes out at once. Only what runs on some edge is held: a
//! service no edge ever took (refused everywhere) leaves at once.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::model::{ServiceKey, ServiceSpec, Snapshot};
use crate::node::EdgeNode;

/// A backend: service and port name.
pub(crate) type BackendKey = (ServiceKey, String);

/// Tracks since when each backend has been empty in the source.
#[derive(Debug, Default)]
pub(crate) struct EmptyHold {
    empty_since: BTreeMap<BackendKey, Instant>,
}

/// What to apply now.
#[derive(Debug)]
pub(crate) struct Held<'a> {
    /// The snapshot with held backends restored: the incoming snapshot itself (borrowed, not
    /// copied) when nothing is held.
    pub effective: Cow<'a, Snapshot>,
    /// Backends kept at their previous endpoints, with when their hold ends.
    pub held: BTreeMap<BackendKey, Instant>,
}

impl EmptyHold {
    /// Computes what to apply at `now`, given what is applied (`current`), what the source
    /// says (`incoming`), which services run on at least one edge (`live`) and the edges
    /// (`nodes`, for the placement check of what it restores).
    pub(crate) fn apply<'a>(
        &mut self,
        current: Option<&Snapshot>,
        incoming: &'a Snapshot,
        hold: Duration,
        now: Instant,
        live: &BTreeSet<ServiceKey>,
        nodes: &[EdgeNode],
    ) -> Held<'a> {
        let mut effective = Cow::Borrowed(incoming);
        let mut held = BTreeMap::new();
        let mut still_empty = BTreeMap::new();
        if let Some(current) = current.filter(|_| !hold.is_zero()) {
            for (key, name, port) in current.ports() {
                if port.endpoints.is_empty() || !live.contains(key) {
                    continue;
                }
                let now_empty = incoming
                    .services
                    .get(key)
                    .and_then(|s| s.ports.get(name))
                    .is_none_or(|p| p.endpoints.is_empty());
                if !now_empty {
                    continue;
                }
                let backend = (key.clone(), name.to_owned());
                let since = self.empty_since.get(&backend).copied().unwrap_or(now);
                still_empty.insert(backend.clone(), since);
                if now < since + hold {
                    let mut restored = port.clone();
                    if let Some(p) = incoming.services.get(key).and_then(|s| s.ports.get(name)) {
                        // Keep the new listen port and PROXY setting; only the endpoints stay.
                        restored.listen_port = p.listen_port;
                        restored.proxy_protocol = p.proxy_protocol;
                    }
                    effective
                        .to_mut()
                        .services
                        .entry(key.clone())
                        // A vanished service comes back with its settings: its placement,
                        // and its source ranges above all (a held service must not open to
                        // everyone).
                        .or_insert_with(|| without_ports(current.services.get(key)))
                        .ports
                        .insert(name.to_owned(), restored);
                    held.insert(backend, since + hold);
                }
            }
        }
        self.empty_since = still_empty;
        if !held.is_empty() && effective.validate_on(nodes).is_err() {
            // Restoring a dropped backend would clash with a new one (a reused listen port):
            // the source's word wins.
            return Held {
                effective: Cow::Borrowed(incoming),
                held: BTreeMap::new(),
            };
        }
        Held { effective, held }
    }
}

/// A service's settings without its ports.
fn without_ports(spec: Option<&ServiceSpec>) -> ServiceSpec {
    let mut spec = spec.cloned().unwrap_or_default();
    spec.ports.clear();
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Endpoint, PortSpec, ProxyProtocol};

    fn live() -> BTreeSet<ServiceKey> {
        [ServiceKey::new("ns", "web").unwrap()].into()
    }

    fn snap(endpoints: &[u8]) -> Snapshot {
        let mut port = PortSpec::new(443, ProxyProtocol::V2);
        for i in endpoints {
            port.add_endpoint(Endpoint::ready([10, 0, 0, *i].into(), 8443));
        }
        let mut s = Snapshot::default();
        s.insert_port(ServiceKey::new("ns", "web").unwrap(), "https", port)
            .unwrap();
        s
    }

    /// What [`EmptyHold::apply`] gives, owned (the tests pass temporaries).
    struct Out {
        effective: Snapshot,
        held: BTreeMap<BackendKey, Instant>,
    }

    fn owned(
        h: &mut EmptyHold,
        current: Option<&Snapshot>,
        incoming: &Snapshot,
        hold: Duration,
        now: Instant,
        live: &BTreeSet<ServiceKey>,
        nodes: &[EdgeNode],
    ) -> Out {
        let out = h.apply(current, incoming, hold, now, live, nodes);
        Out {
            effective: out.effective.into_owned(),
            held: out.held,
        }
    }

    /// Nothing held: the incoming snapshot is used as it is, not copied.
    #[test]
    fn nothing_held_borrows_the_incoming_snapshot() {
        let mut h = EmptyHold::default();
        let incoming = snap(&[1]);
        let out = h.apply(
            Some(&snap(&[1, 2])),
            &incoming,
            Duration::from_secs(10),
            Instant::now(),
            &live(),
            &[],
        );
        assert!(matches!(out.effective, Cow::Borrowed(s) if std::ptr::eq(s, &incoming)));
        assert!(out.held.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn emptiness_is_held_until_it_lasts() {
        let hold = Duration::from_secs(10);
        let mut h = EmptyHold::default();
        let t0 = Instant::now();
        let out = owned(
            &mut h,
            Some(&snap(&[1, 2])),
            &snap(&[]),
            hold,
            t0,
            &live(),
            &[],
        );
        assert_eq!(out.effective, snap(&[1, 2]));
        assert_eq!(out.held.values().next(), Some(&(t0 + hold)));

        let out = owned(
            &mut h,
            Some(&snap(&[1, 2])),
            &snap(&[]),
            hold,
            t0 + Duration::from_secs(5),
            &live(),
            &[],
        );
        assert_eq!(out.effective, snap(&[1, 2]), "still held, clock not reset");

        let out = owned(
            &mut h,
            Some(&snap(&[1, 2])),
            &snap(&[]),
            hold,
            t0 + hold,
            &live(),
            &[],
        );
        assert_eq!(out.effective, snap(&[]));
        assert!(out.held.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_service_keeps_its_placement_while_held() {
        let mut h = EmptyHold::default();
        let mut current = snap(&[1]);
        for spec in current.services.values_mut() {
            spec.pool = Some("public".into());
            spec.address = Some("192.0.2.1".parse().unwrap());
        }
        let out = owned(
            &mut h,
            Some(&current),
            &Snapshot::default(),
            Duration::from_secs(5),
            Instant::now(),
            &live(),
            &[],
        );
        assert_eq!(out.effective, current);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refill_resets_and_other_changes_pass() {
        let hold = Duration::from_secs(10);
        let mut h = EmptyHold::default();
        let t0 = Instant::now();
        owned(
            &mut h,
            Some(&snap(&[1])),
            &snap(&[]),
            hold,
            t0,
            &live(),
            &[],
        );
        let out = owned(
            &mut h,
            Some(&snap(&[1])),
            &snap(&[3]),
            hold,
            t0 + Duration::from_secs(1),
            &live(),
            &[],
        );
        assert_eq!(out.effective, snap(&[3]));
        let out = owned(
            &mut h,
            Some(&snap(&[3])),
            &snap(&[]),
            hold,
            t0 + Duration::from_secs(2),
            &live(),
            &[],
        );
        assert_eq!(
            out.held.values().next(),
            Some(&(t0 + Duration::from_secs(12)))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_vanished_service_is_held_too_and_zero_hold_disables() {
        let mut h = EmptyHold::default();
        let out = owned(
            &mut h,
            Some(&snap(&[1])),
            &Snapshot::default(),
            Duration::from_secs(5),
            Instant::now(),
            &live(),
            &[],
        );
        assert_eq!(out.effective, snap(&[1]));
        let out = owned(
            &mut h,
            Some(&snap(&[1])),
            &Snapshot::default(),
            Duration::ZERO,
            Instant::now(),
            &live(),
            &[],
        );
        assert_eq!(out.effective, Snapshot::default());
    }

    #[tokio::test(start_paused = true)]
    async fn a_vanished_service_is_held_with_its_source_ranges_and_affinity() {
        let mut guarded = snap(&[1]);
        let key = ServiceKey::new("ns", "web").unwrap();
        let spec = guarded.services.get_mut(&key).unwrap();
        spec.source_ranges = Some(vec!["10.0.0.0/8".parse().unwrap()]);
        spec.session_affinity = Some(crate::SessionAffinity::default());
        let mut h = EmptyHold::default();
        let out = owned(
            &mut h,
            Some(&guarded),
            &Snapshot::default(),
            Duration::from_secs(5),
            Instant::now(),
            &live(),
            &[],
        );
        assert_eq!(out.effective, guarded);
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_no_edge_runs_is_not_held() {
        let mut h = EmptyHold::default();
        let out = owned(
            &mut h,
            Some(&snap(&[1])),
            &Snapshot::default(),
            Duration::from_secs(5),
            Instant::now(),
            &BTreeSet::new(),
            &[],
        );
        assert_eq!(out.effective, Snapshot::default());
        assert!(out.held.is_empty());
    }
}
