//! The LoadBalancer source's snapshot, kept up to date Service by Service.
//!
//! A change to a Service or to one of its slices rebuilds that Service's part only and puts it
//! in place in the kept snapshot, as long as it cannot move a listen port between Services:
//! the Service keeps exactly the claims it held, or takes claims that conflict with nobody's,
//! and no port it touches was contested. A claim is a listen port on an address (or every
//! address) in a pool; two claims conflict when their pools share an edge and their addresses
//! overlap ([`Claim::conflicts_with`]). Anything else (a port conflict, a Service leaving a
//! contested port, a relist) rebuilds the whole snapshot, oldest Service first, as before.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use edgelb_core::{Claim, DEFAULT_POOL, EdgeNode, ServiceKey, ServiceSpec, Snapshot};
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use super::slices::{ServiceName, Touched};
use crate::convert::Warning;

/// What converting one Service gives: its key and spec when it is served, and its warnings.
pub(crate) type Converted = (Option<(ServiceKey, ServiceSpec)>, Vec<Warning>);

/// What is kept of one Service's last conversion.
#[derive(Debug, Default)]
struct Meta {
    key: Option<ServiceKey>,
    /// The claims its spec asked for (held or lost to an older Service).
    listen: Vec<Claim>,
    warnings: Vec<Warning>,
}

/// The snapshot and, per served Service, what was built for it.
#[derive(Debug, Default)]
pub(crate) struct Parts {
    /// The edges: which pools share an edge.
    edges: Vec<EdgeNode>,
    metas: BTreeMap<ServiceName, Meta>,
    snapshot: Snapshot,
    /// Listen port → the claims held on it, each with the Service and port holding it.
    claimed: BTreeMap<u16, Vec<(Claim, ServiceName, String)>>,
    /// Listen ports more than one port asked for at the last full build.
    contested: BTreeSet<u16>,
    /// The warnings of the last full build's port assignment.
    conflicts: Vec<Warning>,
    /// Full rebuilds so far (for tests).
    full_builds: u64,
    /// Whether a snapshot was returned yet.
    sent: bool,
}

fn name_of(svc: &Service) -> ServiceName {
    (svc.namespace().unwrap_or_default(), svc.name_any())
}

/// The claim of one port of `spec`.
fn claim_of(spec: &ServiceSpec, listen_port: u16) -> Claim {
    Claim {
        pool: spec.pool.clone().unwrap_or_else(|| DEFAULT_POOL.to_owned()),
        address: spec.address,
        port: listen_port,
    }
}

fn claims(converted: &Converted) -> Vec<Claim> {
    converted
        .0
        .as_ref()
        .map(|(_, spec)| {
            spec.ports
                .values()
                .map(|p| claim_of(spec, p.listen_port))
                .collect()
        })
        .unwrap_or_default()
}

impl Parts {
    /// Nothing built yet; `edges` tell which pools share an edge (none known: a pool shares
    /// edges with itself only).
    pub(crate) fn new(edges: Vec<EdgeNode>) -> Self {
        Self {
            edges,
            ..Self::default()
        }
    }

    /// Brings the snapshot up to date with the Services `touched` (all of them for
    /// [`Touched::All`]), reading them from `services` and converting each with `convert`.
    /// Returns the snapshot when it changed (or always, when `always`), and every current
    /// warning.
    pub(crate) fn update(
        &mut self,
        touched: &Touched,
        always: bool,
        services: &Store<Service>,
        mut convert: impl FnMut(&Service) -> Converted,
    ) -> (Option<Snapshot>, Vec<Warning>) {
        let changed = match touched {
            Touched::All => self.rebuild(services, &mut convert),
            Touched::Some(names) => {
                let fresh: Vec<(ServiceName, Option<Converted>)> = names
                    .iter()
                    .map(|(ns, name)| {
                        let svc = services.get(&ObjectRef::new(name).within(ns));
                        ((ns.clone(), name.clone()), svc.map(|s| convert(&s)))
                    })
                    .collect();
                if self.fits(&fresh) {
                    self.patch(fresh)
                } else {
                    self.rebuild(services, &mut convert)
                }
            }
        };
        let warnings = self
            .metas
            .values()
            .flat_map(|m| m.warnings.iter().cloned())
            .chain(self.conflicts.iter().cloned())
            .collect();
        // The first snapshot goes out even when it is empty (a cluster without Services of the
        // class yet): the pipeline waits for it.
        let send = changed || always || !self.sent;
        self.sent |= send;
        (send.then(|| self.snapshot.clone()), warnings)
    }

    /// Whether `fresh` can go in place: no listen port changes hands. Two fresh Services on
    /// one port take the full rebuild, which settles who is older.
    fn fits(&self, fresh: &[(ServiceName, Option<Converted>)]) -> bool {
        let mut taken = BTreeSet::new();
        fresh.iter().all(|(name, converted)| {
            let old = self
                .metas
                .get(name)
                .map_or(&[][..], |m| m.listen.as_slice());
            let new = converted.as_ref().map(claims).unwrap_or_default();
            old.iter()
                .all(|c| !self.contested.contains(&c.port) && self.holds(name, c))
                && new.iter().all(|c| {
                    !self.contested.contains(&c.port)
                        && !self.conflicts_elsewhere(name, c)
                        && taken.insert(c.port)
                })
        })
    }

    /// Whether `name` holds `claim`.
    fn holds(&self, name: &ServiceName, claim: &Claim) -> bool {
        self.claimed
            .get(&claim.port)
            .is_some_and(|held| held.iter().any(|(c, n, _)| n == name && c == claim))
    }

    /// The holder of a claim that conflicts with `claim`, of another Service than `except`.
    fn conflicting_holder(
        &self,
        except: Option<&ServiceName>,
        claim: &Claim,
    ) -> Option<(&Claim, &ServiceName, &str)> {
        self.claimed
            .get(&claim.port)?
            .iter()
            .find(|(c, n, _)| Some(n) != except && c.conflicts_with(claim, &self.edges))
            .map(|(c, n, port)| (c, n, port.as_str()))
    }

    fn conflicts_elsewhere(&self, name: &ServiceName, claim: &Claim) -> bool {
        self.conflicting_holder(Some(name), claim).is_some()
    }

    /// Records that `name`'s port `port_name` holds `claim`.
    fn take(&mut self, claim: Claim, name: &ServiceName, port_name: &str) {
        self.claimed.entry(claim.port).or_default().push((
            claim,
            name.clone(),
            port_name.to_owned(),
        ));
    }

    /// Puts `fresh` in place (see [`Parts::fits`]); returns whether the snapshot changed.
    fn patch(&mut self, fresh: Vec<(ServiceName, Option<Converted>)>) -> bool {
        let mut changed = false;
        for (name, converted) in fresh {
            let old = self.metas.remove(&name).unwrap_or_default();
            for claim in &old.listen {
                if let Some(held) = self.claimed.get_mut(&claim.port) {
                    held.retain(|(_, n, _)| *n != name);
                    if held.is_empty() {
                        self.claimed.remove(&claim.port);
                    }
                }
            }
            let old_spec = old
                .key
                .as_ref()
                .and_then(|k| self.snapshot.services.remove(k));
            let Some((spec, warnings)) = converted else {
                changed |= old_spec.is_some();
                continue;
            };
            let mut meta = Meta {
                key: None,
                listen: Vec::new(),
                warnings,
            };
            if let Some((key, spec)) = spec {
                for (port_name, port) in &spec.ports {
                    let claim = claim_of(&spec, port.listen_port);
                    meta.listen.push(claim.clone());
                    self.take(claim, &name, port_name);
                }
                meta.key = Some(key.clone());
                changed |= old_spec.as_ref() != Some(&spec).filter(|s| !s.ports.is_empty());
                if !spec.ports.is_empty() {
                    self.snapshot.services.insert(key, spec);
                }
            } else {
                changed |= old_spec.is_some();
            }
            self.metas.insert(name, meta);
        }
        changed
    }

    /// Rebuilds everything from `services`, oldest Service first: on a listen port conflict
    /// the Service that was there first keeps the port. Returns whether the snapshot changed.
    fn rebuild(
        &mut self,
        services: &Store<Service>,
        convert: &mut impl FnMut(&Service) -> Converted,
    ) -> bool {
        self.full_builds += 1;
        let mut services: Vec<Arc<Service>> = services.state();
        services.sort_by(|a, b| {
            let order = |s: &Service| {
                (
                    s.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    s.namespace(),
                    s.name_any(),
                )
            };
            order(a).cmp(&order(b))
        });
        let mut snapshot = Snapshot::default();
        self.metas.clear();
        self.claimed.clear();
        self.contested.clear();
        self.conflicts.clear();
        for svc in &services {
            let name = name_of(svc);
            let converted = convert(svc);
            let listen = claims(&converted);
            let (spec, warnings) = converted;
            let key = spec.as_ref().map(|(k, _)| k.clone());
            if let Some((key, mut spec)) = spec {
                let mut lost = Vec::new();
                for (port_name, port) in &spec.ports {
                    let claim = claim_of(&spec, port.listen_port);
                    if let Some((held, prev, prev_port)) = self.conflicting_holder(None, &claim) {
                        self.conflicts.push(Warning::about(
                            svc,
                            "PortConflict",
                            format!(
                                "edge listen port {} of port {port_name:?} ({claim}) is already taken by {}/{}:{prev_port} ({held}) on the edges both are placed on; the older Service keeps it, and this port is not served until the conflict is resolved (another port, address or pool)",
                                port.listen_port, prev.0, prev.1
                            ),
                        ));
                        lost.push((port_name.clone(), port.listen_port));
                        continue;
                    }
                    self.take(claim, &name, port_name);
                }
                for (port_name, listen_port) in lost {
                    self.contested.insert(listen_port);
                    spec.ports.remove(&port_name);
                }
                if !spec.ports.is_empty() {
                    snapshot.services.insert(key, spec);
                }
            }
            self.metas.insert(
                name,
                Meta {
                    key,
                    listen,
                    warnings,
                },
            );
        }
        let changed = snapshot != self.snapshot;
        self.snapshot = snapshot;
        changed
    }

    /// How many full rebuilds there were.
    #[cfg(test)]
    pub(crate) fn full_builds(&self) -> u64 {
        self.full_builds
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use edgelb_core::{Endpoint, ProxyProtocol};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::runtime::reflector::{self, store::Writer};
    use kube::runtime::watcher;
    use serde_json::json;

    use super::*;
    use crate::source::LoadBalancerConfig;
    use crate::source::lb::service_spec;
    use crate::source::slices::SliceIndex;

    const CLASS: &str = "edgelb.io/haproxy";

    fn service(name: &str, port: u16, created: &str) -> Service {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
                         "creationTimestamp": created},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": CLASS,
                     "ports": [{"name": "http", "port": port, "targetPort": 8080}]},
        }))
        .unwrap()
    }

    fn slice(svc: &str, ips: &[&str]) -> EndpointSlice {
        let endpoints: Vec<_> = ips.iter().map(|ip| json!({"addresses": [ip]})).collect();
        serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{svc}-1"), "namespace": "shop",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": 8080}],
        }))
        .unwrap()
    }

    struct World {
        store: Store<Service>,
        writer: Writer<Service>,
        slices: SliceIndex,
        parts: Parts,
    }

    impl World {
        fn new() -> Self {
            let (store, writer) = reflector::store();
            Self {
                store,
                writer,
                slices: SliceIndex::default(),
                parts: Parts::default(),
            }
        }

        fn put(&mut self, svc: Service) {
            self.writer.apply_watcher_event(&watcher::Event::Apply(svc));
        }

        fn update(&mut self, touched: Touched) -> (Option<Snapshot>, Vec<Warning>) {
            let config = LoadBalancerConfig::default();
            let slices = &self.slices;
            self.parts.update(&touched, false, &self.store, |svc| {
                let mut warnings = Vec::new();
                let own = slices.of(&name_of(svc));
                (
                    service_spec(&config, &[], svc, &own, &mut warnings),
                    warnings,
                )
            })
        }
    }

    fn only(names: &[&str]) -> Touched {
        Touched::Some(
            names
                .iter()
                .map(|n| ("shop".to_owned(), (*n).to_owned()))
                .collect::<BTreeSet<_>>(),
        )
    }

    fn key(name: &str) -> ServiceKey {
        ServiceKey::new("shop", name).unwrap()
    }

    #[test]
    fn the_first_snapshot_goes_out_even_when_nothing_is_served() {
        let mut w = World::new();
        let (first, warnings) = w.update(Touched::All);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            first,
            Some(Snapshot::default()),
            "the pipeline waits for it"
        );
        let (again, _) = w.update(Touched::All);
        assert_eq!(again, None, "nothing changed since");
    }

    #[test]
    fn an_endpoint_change_rebuilds_only_its_service() {
        let mut w = World::new();
        w.put(service("web", 80, "2026-01-01T00:00:00Z"));
        w.put(service("api", 81, "2026-01-01T00:00:01Z"));
        w.slices
            .apply(watcher::Event::Apply(slice("web", &["10.0.0.1"])));
        let (first, warnings) = w.update(Touched::All);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(first.unwrap().services.len(), 2);
        assert_eq!(w.parts.full_builds(), 1);

        let touched = w.slices.apply(watcher::Event::Apply(slice(
            "web",
            &["10.0.0.1", "10.0.0.2"],
        )));
        let (snap, _) = w.update(touched);
        let snap = snap.expect("the snapshot changed");
        let web = &snap.services[&key("web")].ports["http"];
        assert_eq!(
            web.endpoints().collect::<Vec<_>>(),
            vec![
                Endpoint::ready("10.0.0.1".parse().unwrap(), 8080),
                Endpoint::ready("10.0.0.2".parse().unwrap(), 8080)
            ]
        );
        assert_eq!(web.proxy_protocol, ProxyProtocol::V2);
        assert!(snap.services.contains_key(&key("api")));
        assert_eq!(w.parts.full_builds(), 1, "patched in place");

        // The same content again: nothing to send.
        let (same, _) = w.update(only(&["web"]));
        assert!(same.is_none());
        // A new Service on a free port goes in place too.
        w.put(service("new", 82, "2026-01-02T00:00:00Z"));
        let (snap, _) = w.update(only(&["new"]));
        assert!(snap.unwrap().services.contains_key(&key("new")));
        assert_eq!(w.parts.full_builds(), 1);
    }

    #[test]
    fn listen_ports_changing_hands_rebuild_all_oldest_first() {
        let mut w = World::new();
        w.put(service("old", 80, "2026-01-01T00:00:00Z"));
        w.update(Touched::All);
        // A younger Service wants port 80: it does not get it, and says so.
        w.put(service("young", 80, "2026-01-03T00:00:00Z"));
        let (snap, warnings) = w.update(only(&["young"]));
        assert_eq!(w.parts.full_builds(), 2);
        assert!(snap.is_none(), "young has no other port: nothing changed");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].reason, "PortConflict");
        assert!(
            warnings[0].message.contains("shop/old:http"),
            "{warnings:?}"
        );
        assert_eq!(warnings[0].object, "Service shop/young");

        // The older one leaves: the younger gets the port (a full rebuild).
        w.writer
            .apply_watcher_event(&watcher::Event::Delete(service(
                "old",
                80,
                "2026-01-01T00:00:00Z",
            )));
        let (snap, warnings) = w.update(only(&["old"]));
        let snap = snap.unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            snap.services.keys().collect::<Vec<_>>(),
            vec![&key("young")]
        );
        assert_eq!(w.parts.full_builds(), 3);

        // Moving to a free port in place; then the freed port is free for anyone.
        w.put(service("young", 8080, "2026-01-03T00:00:00Z"));
        let (snap, _) = w.update(only(&["young"]));
        assert_eq!(
            snap.unwrap().services[&key("young")].ports["http"].listen_port,
            8080
        );
        w.put(service("other", 80, "2026-01-04T00:00:00Z"));
        let (snap, _) = w.update(only(&["other"]));
        assert_eq!(snap.unwrap().services.len(), 2);
        assert_eq!(w.parts.full_builds(), 3, "no port changed hands");
        assert_eq!(
            w.parts.snapshot.validate().map_err(|e| e.to_string()),
            Ok(())
        );
    }
}
