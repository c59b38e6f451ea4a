//! EndpointSlices reduced to what edgelb reads, indexed by the Service they belong to.
//!
//! The LoadBalancer source watches every slice of the cluster (a Service may join the class at
//! any time, and its slices must then be at hand without a relist), but keeps of each only its
//! name, address type, ports and the first address and state of each usable endpoint: no
//! metadata, no topology, no target references. A change to a slice touches only the Service
//! its `kubernetes.io/service-name` label names.

use std::collections::{BTreeSet, HashMap};

use edgelb_core::EndpointState;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::runtime::watcher;

use crate::convert::{SERVICE_NAME_LABEL, SliceEndpoints, endpoint_state};

/// `(namespace, name)` of a Service.
pub(crate) type ServiceName = (String, String);

/// One port of a slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlicePort {
    /// The Service port's name (`""` when unnamed).
    pub name: String,
    /// `TCP` unless the slice says otherwise.
    pub protocol: String,
    /// The endpoints' port number, as the slice gives it.
    pub port: Option<i32>,
}

/// One endpoint that may take traffic: its first address (the API says addresses are
/// fungible) and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointView {
    /// The address as the slice spells it (checked when the snapshot is built).
    pub address: String,
    /// Ready or draining.
    pub state: EndpointState,
}

/// What edgelb reads of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SliceView {
    /// The slice's name (for messages, and the order warnings come out in).
    pub name: String,
    /// `IPv4`, `IPv6` or `FQDN`.
    pub address_type: String,
    /// Its ports.
    pub ports: Vec<SlicePort>,
    /// Its endpoints that are ready or draining; the others contribute nothing.
    pub endpoints: Vec<EndpointView>,
}

impl SliceView {
    /// The parts of `slice` edgelb reads.
    pub(crate) fn of(slice: &EndpointSlice) -> Self {
        Self {
            name: slice.name_any(),
            address_type: slice.address_type.clone(),
            ports: slice
                .ports
                .iter()
                .flatten()
                .map(|p| SlicePort {
                    name: p.name.clone().unwrap_or_default(),
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                    port: p.port,
                })
                .collect(),
            endpoints: slice
                .endpoints
                .as_endpoints()
                .iter()
                .filter_map(|e| {
                    Some(EndpointView {
                        state: endpoint_state(e.conditions.as_ref())?,
                        address: e.addresses.first()?.clone(),
                    })
                })
                .collect(),
        }
    }
}

/// Which Services a batch of slice events changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Touched {
    /// Possibly any (a (re)list completed).
    All,
    /// These.
    Some(BTreeSet<ServiceName>),
}

impl Default for Touched {
    fn default() -> Self {
        Self::Some(BTreeSet::new())
    }
}

impl Touched {
    /// Adds `other`'s Services.
    pub(crate) fn merge(&mut self, other: Touched) {
        match (&mut *self, other) {
            (Self::All, _) => {}
            (_, Self::All) => *self = Self::All,
            (Self::Some(mine), Self::Some(theirs)) => mine.extend(theirs),
        }
    }

    /// Adds one Service.
    pub(crate) fn add(&mut self, service: ServiceName) {
        if let Self::Some(set) = self {
            set.insert(service);
        }
    }

    /// Whether nothing was touched.
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, Self::Some(set) if set.is_empty())
    }
}

/// Slices by Service: `(namespace, Service)` → its slices in name order. A Service has a
/// handful of slices; a `Vec` costs what they hold, a `BTreeMap` node room for eleven.
type ByService = HashMap<ServiceName, Vec<SliceView>>;

/// `(namespace, slice name)` → the Service the slice was filed under.
type Owners = HashMap<(String, String), String>;

/// Every slice that names a Service, as [`SliceView`]s, indexed by that Service.
#[derive(Debug, Default)]
pub(crate) struct SliceIndex {
    by_service: ByService,
    owner: Owners,
    /// Filled during a (re)list, swapped in when it completes; until then the previous state
    /// stays in use.
    listing: Option<(ByService, Owners)>,
}

impl SliceIndex {
    /// The slices of `service`, in name order.
    pub(crate) fn of(&self, service: &ServiceName) -> Vec<&SliceView> {
        self.by_service
            .get(service)
            .map(|v| v.iter().collect())
            .unwrap_or_default()
    }

    /// How many slices are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.owner.len()
    }

    /// Takes one watch event; returns the Services whose slices changed.
    pub(crate) fn apply(&mut self, event: watcher::Event<EndpointSlice>) -> Touched {
        match event {
            watcher::Event::Init => {
                self.listing = Some(Default::default());
                Touched::default()
            }
            watcher::Event::InitApply(slice) => {
                if let (Some((svc, id)), Some((by_service, owner))) =
                    (names(&slice), self.listing.as_mut())
                {
                    file(by_service, owner, svc, id, SliceView::of(&slice));
                }
                Touched::default()
            }
            watcher::Event::InitDone => {
                if let Some((by_service, owner)) = self.listing.take() {
                    self.by_service = by_service;
                    self.owner = owner;
                }
                Touched::All
            }
            watcher::Event::Apply(slice) => {
                let mut touched = Touched::default();
                let Some((svc, id)) = names(&slice) else {
                    return touched;
                };
                let view = SliceView::of(&slice);
                let ns = id.0.clone();
                if self.owner.get(&id) == Some(&svc.1)
                    && self
                        .by_service
                        .get(&svc)
                        .and_then(|v| v.iter().find(|s| s.name == id.1))
                        .is_some_and(|old| *old == view)
                {
                    return touched; // nothing edgelb reads changed
                }
                if let Some(old) = self.remove(&id) {
                    touched.add((ns, old));
                }
                touched.add(svc.clone());
                file(&mut self.by_service, &mut self.owner, svc, id, view);
                touched
            }
            watcher::Event::Delete(slice) => {
                let mut touched = Touched::default();
                let id = (slice.namespace().unwrap_or_default(), slice.name_any());
                if let Some(svc) = self.remove(&id) {
                    touched.add((id.0, svc));
                }
                touched
            }
        }
    }

    /// Removes slice `id`; returns the Service it was filed under.
    fn remove(&mut self, id: &(String, String)) -> Option<String> {
        let svc = self.owner.remove(id)?;
        let key = (id.0.clone(), svc);
        if let Some(slices) = self.by_service.get_mut(&key) {
            slices.retain(|s| s.name != id.1);
            if slices.is_empty() {
                self.by_service.remove(&key);
            }
        }
        Some(key.1)
    }
}

/// The slice's Service and its own `(namespace, name)`; `None` without the Service label.
fn names(slice: &EndpointSlice) -> Option<(ServiceName, (String, String))> {
    let ns = slice.namespace().unwrap_or_default();
    let svc = slice.labels().get(SERVICE_NAME_LABEL)?.clone();
    Some(((ns.clone(), svc), (ns, slice.name_any())))
}

fn file(
    by_service: &mut ByService,
    owner: &mut Owners,
    svc: ServiceName,
    id: (String, String),
    view: SliceView,
) {
    owner.insert(id, svc.1.clone());
    let slices = by_service.entry(svc).or_default();
    match slices.binary_search_by(|s| s.name.cmp(&view.name)) {
        Ok(at) => slices[at] = view,
        Err(at) => slices.insert(at, view),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(name: &str, svc: &str, ips: &[&str]) -> EndpointSlice {
        let endpoints: Vec<serde_json::Value> = ips
            .iter()
            .map(|ip| serde_json::json!({"addresses": [ip], "conditions": {"ready": true},
                                         "nodeName": "node-1", "targetRef": {"kind": "Pod", "name": "p"}}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "shop", "resourceVersion": "7",
                         "labels": {SERVICE_NAME_LABEL: svc}},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": 8080}],
        }))
        .unwrap()
    }

    fn web() -> ServiceName {
        ("shop".into(), "web".into())
    }

    fn only(names: &[(&str, &str)]) -> Touched {
        Touched::Some(
            names
                .iter()
                .map(|(ns, n)| ((*ns).to_owned(), (*n).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn a_relist_swaps_in_whole_and_touches_all() {
        let mut index = SliceIndex::default();
        assert_eq!(index.apply(watcher::Event::Init), Touched::default());
        index.apply(watcher::Event::InitApply(slice(
            "web-a",
            "web",
            &["10.0.0.1"],
        )));
        // Not visible before the list completes.
        assert!(index.of(&web()).is_empty());
        assert_eq!(index.apply(watcher::Event::InitDone), Touched::All);
        let views = index.of(&web());
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].endpoints[0].address, "10.0.0.1");
        assert_eq!(views[0].ports[0].protocol, "TCP");
    }

    #[test]
    fn changes_touch_only_their_service_and_no_ops_touch_none() {
        let mut index = SliceIndex::default();
        let touched = index.apply(watcher::Event::Apply(slice("web-a", "web", &["10.0.0.1"])));
        assert_eq!(touched, only(&[("shop", "web")]));
        // Same content, another resourceVersion and node: nothing edgelb reads changed.
        let mut again = slice("web-a", "web", &["10.0.0.1"]);
        again.metadata.resource_version = Some("8".into());
        assert!(index.apply(watcher::Event::Apply(again)).is_empty());
        // The slice moves to another Service: both are touched.
        let moved = index.apply(watcher::Event::Apply(slice("web-a", "api", &["10.0.0.1"])));
        assert_eq!(moved, only(&[("shop", "api"), ("shop", "web")]));
        assert!(index.of(&web()).is_empty());
        let gone = index.apply(watcher::Event::Delete(slice("web-a", "api", &[])));
        assert_eq!(gone, only(&[("shop", "api")]));
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn endpoints_that_take_no_traffic_are_not_kept() {
        let s: EndpointSlice = serde_json::from_value(serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-a", "namespace": "shop", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false, "serving": false, "terminating": true}},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": [], "conditions": {"ready": true}},
            ],
        }))
        .unwrap();
        let view = SliceView::of(&s);
        let kept: Vec<_> = view
            .endpoints
            .iter()
            .map(|e| (e.address.as_str(), e.state))
            .collect();
        assert_eq!(
            kept,
            [
                ("10.0.0.1", EndpointState::Ready),
                ("10.0.0.3", EndpointState::Draining)
            ]
        );
        assert!(view.ports.is_empty());
    }
}
