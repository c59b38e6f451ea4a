//! The LoadBalancer-class source: every `type: LoadBalancer` Service of our class.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use edgelb_core::{EdgeNode, EndpointSource, ProxyProtocol, ServiceKey, ServiceSpec, Snapshot};
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde::{Deserialize, Serialize};

use super::lb_parts::Parts;
use super::slices::{ServiceName, SliceIndex, Touched};
use super::{Build, SliceView, lock, run, service_key, watch, watch_slices};
use crate::convert::{SelectedPort, Warning, build_ports, select_port};
use crate::error::{Error, Result};
use crate::events::EventPublisher;
use crate::placement::{POOL_ANNOTATION, placement_of, pool_has_edges};
use crate::service_fields::ServiceFields;

/// The `spec.loadBalancerClass` edgelb implements unless configured otherwise.
pub const DEFAULT_LOAD_BALANCER_CLASS: &str = "edgelb.io/haproxy";

/// The per-Service annotation that picks the PROXY protocol: `v2` (default), `v1` or `none`.
pub const PROXY_PROTOCOL_ANNOTATION: &str = "edgelb.io/proxy-protocol";

/// Settings of the LoadBalancer-class mode.
///
/// ```
/// # use edgelb_kube::LoadBalancerConfig;
/// let cfg: LoadBalancerConfig = serde_yaml_ng::from_str("class: example.com/edge")?;
/// assert_eq!(cfg.class, "example.com/edge");
/// assert_eq!(LoadBalancerConfig::default().class, "edgelb.io/haproxy");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadBalancerConfig {
    /// The `spec.loadBalancerClass` to implement (default `edgelb.io/haproxy`).
    pub class: String,
    /// PROXY protocol for Services without the `edgelb.io/proxy-protocol` annotation
    /// (default v2).
    pub default_proxy_protocol: ProxyProtocol,
}

impl Default for LoadBalancerConfig {
    fn default() -> Self {
        Self {
            class: DEFAULT_LOAD_BALANCER_CLASS.to_owned(),
            default_proxy_protocol: ProxyProtocol::V2,
        }
    }
}

/// Serves every Service with `spec.type: LoadBalancer` and `spec.loadBalancerClass` equal to
/// the configured class.
///
/// Each TCP port of such a Service is exposed on the edges on the Service's own port number;
/// UDP and SCTP ports are skipped with a Warning Event (HAProxy community edition has no UDP).
/// The annotation `edgelb.io/proxy-protocol: v2|v1|none` picks the PROXY protocol; a Service
/// with any other value is skipped with a Warning Event until it is fixed. When two Services
/// claim the same port, the older Service keeps it. A Service that leaves the class (or is
/// deleted) leaves the snapshot.
///
/// Watches all Services and all EndpointSlices cluster-wide (RBAC: get/list/watch on both).
/// Services outside the class are not kept; of every slice only what edgelb reads is kept
/// (addresses, ports, conditions), indexed by Service, so a Service that joins the class is
/// served at once without a relist. Work follows the change, not the cluster: an update that
/// changes nothing edgelb reads (a status write, managedFields, a new resourceVersion) and any
/// change to a slice of a Service outside the class costs no rebuild; a change that matters
/// rebuilds that Service's part of the snapshot only, unless it moves a listen port between
/// Services (then the whole snapshot is rebuilt, oldest Service first).
pub struct LoadBalancerSource {
    client: Client,
    config: LoadBalancerConfig,
    /// The edges, for placement: which pools share edges, which pools have none.
    edges: Vec<EdgeNode>,
    events: Option<EventPublisher>,
    builds: Arc<AtomicU64>,
}

impl LoadBalancerSource {
    /// A source for `config.class`; fails on an empty class.
    pub fn new(client: Client, config: LoadBalancerConfig) -> Result<Self> {
        if config.class.is_empty() {
            return Err(Error::config(
                "load balancer class",
                "it is empty; use a domain-prefixed name such as edgelb.io/haproxy",
            ));
        }
        Ok(Self {
            client,
            config,
            edges: Vec::new(),
            events: None,
            builds: Arc::default(),
        })
    }

    /// A counter of snapshot rebuilds (one per batch of changes that can change the
    /// snapshot), for metrics and tests.
    pub fn builds(&self) -> Arc<AtomicU64> {
        self.builds.clone()
    }

    /// The edges Services are placed on (see [`POOL_ANNOTATION`](crate::POOL_ANNOTATION)):
    /// two Services may share a listen port when their pools share no edge, and a Service of
    /// a pool without edges is reported. Without them every pool is taken to share edges with
    /// itself only.
    pub fn with_edges(mut self, edges: Vec<EdgeNode>) -> Self {
        self.edges = edges;
        self
    }

    /// Records Warning Events on the Services for skipped ports and bad annotations.
    pub fn with_events(mut self, events: EventPublisher) -> Self {
        self.events = Some(events);
        self
    }
}

/// Whether `svc` belongs to `class`.
pub(crate) fn in_class(svc: &Service, class: &str) -> bool {
    svc.spec.as_ref().is_some_and(|s| {
        s.type_.as_deref() == Some("LoadBalancer")
            && s.load_balancer_class.as_deref() == Some(class)
    })
}

/// The one place a served Service becomes a [`ServiceSpec`]: its key, its TCP ports with a
/// usable number (each on the edge's port of the same number), PROXY protocol from the
/// annotation, its placement (pool and address; a pool none of `edges` is in is warned
/// about), and the endpoints from `slices`; the caller adds the fields of `ServiceFields`. `None` when the whole Service is skipped;
/// what was skipped and why goes to `warnings`. Listen port conflicts between Services are
/// settled later (see `lb_parts`).
pub(crate) fn service_spec(
    config: &LoadBalancerConfig,
    edges: &[EdgeNode],
    svc: &Service,
    slices: &[&SliceView],
    warnings: &mut Vec<Warning>,
) -> Option<(ServiceKey, ServiceSpec)> {
    let key = service_key(svc, warnings)?;
    let proxy = match svc.annotations().get(PROXY_PROTOCOL_ANNOTATION) {
        None => config.default_proxy_protocol,
        Some(value) => match value.parse::<ProxyProtocol>() {
            Ok(p) => p,
            Err(e) => {
                warnings.push(Warning::about(
                    svc,
                    "InvalidAnnotation",
                    format!(
                        "annotation {PROXY_PROTOCOL_ANNOTATION}: {e}; the Service is not served until it is fixed"
                    ),
                ));
                return None;
            }
        },
    };
    let placement = placement_of(svc, warnings)?;
    let pool = placement.pool_name();
    if !pool_has_edges(edges, pool) {
        warnings.push(Warning::about(
            svc,
            "NoEdgesInPool",
            format!(
                "pool {pool} has no edges: the Service is served nowhere until an edge joins the pool (or the annotation {POOL_ANNOTATION} names a pool with edges)"
            ),
        ));
    }
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or(&[]);
    let selected: Vec<SelectedPort> = ports
        .iter()
        .filter_map(|p| select_port(svc, p, None, proxy, warnings))
        .collect();
    // Port names are checked by inserting them into a snapshot of this Service alone.
    let mut own = Snapshot::default();
    for (name, spec) in build_ports(svc, &selected, slices, warnings) {
        if let Err(e) = own.insert_port(key.clone(), &name, spec) {
            warnings.push(Warning::about(
                svc,
                "InvalidName",
                format!("port skipped: {e}"),
            ));
        }
    }
    let mut spec = own.services.remove(&key).unwrap_or_default();
    spec.pool = placement.pool;
    spec.address = placement.address;
    Some((key, spec))
}

impl EndpointSource for LoadBalancerSource {
    fn snapshots(self) -> BoxStream<'static, edgelb_core::Result<Snapshot>> {
        let class = self.config.class.clone();
        let (svc_store, svc_stream) = watch(
            Api::<Service>::all(self.client.clone()),
            watcher::Config::default(),
            0,
            "Services (all namespaces)".to_owned(),
            move |svc: &Service| in_class(svc, &class),
            |svc: &Service| {
                let mut touched = Touched::default();
                touched.add((svc.namespace().unwrap_or_default(), svc.name_any()));
                Some(touched)
            },
        );
        // A slice matters only while its Service is in the class (in the Service store).
        let served = svc_store.clone();
        let slices = Arc::new(Mutex::new(SliceIndex::default()));
        let slice_stream = watch_slices(
            Api::<EndpointSlice>::all(self.client.clone()),
            1,
            "EndpointSlices (all namespaces)".to_owned(),
            slices.clone(),
            move |(ns, name): &ServiceName| served.get(&ObjectRef::new(name).within(ns)).is_some(),
        );
        let config = self.config.clone();
        let edges = self.edges;
        let mut parts = Parts::new(edges.clone());
        let mut fields = ServiceFields::default();
        let build: Build = Box::new(move |touched, always| {
            let index = lock(&slices);
            let out = parts.update(touched, always, &svc_store, |svc| {
                let mut warnings = Vec::new();
                let own = index.of(&(svc.namespace().unwrap_or_default(), svc.name_any()));
                let mut spec = service_spec(&config, &edges, svc, &own, &mut warnings);
                if let Some((key, spec)) = &mut spec {
                    fields.fill(spec, svc, key, &mut warnings);
                }
                (spec, warnings)
            });
            fields.forget_gone(touched, &svc_store);
            out
        });
        run(
            format!("kubernetes LoadBalancer class {}", self.config.class),
            vec![
                ("Services (all namespaces)".to_owned(), svc_stream),
                ("EndpointSlices (all namespaces)".to_owned(), slice_stream),
            ],
            build,
            self.events,
            self.builds,
        )
    }
}

#[cfg(test)]
mod placement_tests;
