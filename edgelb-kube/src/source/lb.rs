//! The LoadBalancer-class source: every `type: LoadBalancer` Service of our class.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use edgelb_core::{EdgeNode, EndpointSource, ProxyProtocol, Snapshot};
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde::{Deserialize, Serialize};

use super::{Build, insert_ports, run, service_key, watch};
use crate::convert::{
    SERVICE_NAME_LABEL, SelectedPort, Warning, build_ports, listen_port_of, port_protocol,
    snapshot_port_name,
};
use crate::error::{Error, Result};
use crate::events::EventPublisher;
use crate::placement::{Claims, POOL_ANNOTATION, placement_of};
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
/// Work follows the change, not the cluster: an update that changes nothing edgelb reads (a
/// status write, managedFields, a new resourceVersion) and any change to a slice of a Service
/// outside the class is stored without rebuilding the snapshot. A change that matters rebuilds
/// the whole snapshot (tens of milliseconds at 5,000 Services).
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

fn build(
    config: &LoadBalancerConfig,
    edges: &[EdgeNode],
    services: Vec<Arc<Service>>,
    slices: Vec<Arc<EndpointSlice>>,
    fields: &mut ServiceFields,
) -> (Snapshot, Vec<Warning>) {
    let mut snapshot = Snapshot::default();
    let mut warnings = Vec::new();
    let mut claimed = Claims::new(edges);

    let mut by_service: HashMap<(String, String), Vec<&EndpointSlice>> = HashMap::new();
    for slice in &slices {
        if let Some(svc_name) = slice.labels().get(SERVICE_NAME_LABEL) {
            by_service
                .entry((slice.namespace().unwrap_or_default(), svc_name.clone()))
                .or_default()
                .push(slice);
        }
    }

    // Oldest first: on a port conflict the Service that was there first keeps the port.
    let mut services: Vec<Arc<Service>> = services
        .into_iter()
        .filter(|s| in_class(s, &config.class))
        .collect();
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

    for svc in &services {
        let Some(key) = service_key(svc, &mut warnings) else {
            continue;
        };
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
                    continue;
                }
            },
        };
        let Some(placement) = placement_of(svc, &mut warnings) else {
            continue;
        };
        if !claimed.pool_has_edges(placement.pool_name()) {
            warnings.push(Warning::about(
                svc,
                "NoEdgesInPool",
                format!(
                    "pool {} has no edges: the Service is served nowhere until an edge joins the pool (or the annotation {POOL_ANNOTATION} names a pool with edges)",
                    placement.pool_name()
                ),
            ));
        }
        let ports = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_deref())
            .unwrap_or(&[]);
        let mut selected = Vec::new();
        for p in ports {
            let name = snapshot_port_name(p);
            if port_protocol(p) != "TCP" {
                warnings.push(Warning::about(
                    svc,
                    "UnsupportedProtocol",
                    format!(
                        "port {name} ({}/{}) is not served: HAProxy community edition forwards TCP only",
                        p.port,
                        port_protocol(p)
                    ),
                ));
                continue;
            }
            let Some(listen_port) = listen_port_of(p) else {
                warnings.push(Warning::about(
                    svc,
                    "InvalidPort",
                    format!(
                        "port {name} has number {}, which is no TCP port; skipped",
                        p.port
                    ),
                ));
                continue;
            };
            selected.push(SelectedPort {
                snapshot_name: name,
                slice_port_name: p.name.clone().unwrap_or_default(),
                listen_port,
                proxy_protocol: proxy,
            });
        }
        let slices = by_service
            .get(&(key.namespace.clone(), key.name.clone()))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let built = build_ports(svc, &selected, slices, &mut warnings);
        insert_ports(
            &mut snapshot,
            &mut claimed,
            svc,
            &key,
            &placement,
            built,
            &mut warnings,
        );
        fields.apply(&mut snapshot, svc, &key, &mut warnings);
    }
    fields.finish_build();
    (snapshot, warnings)
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
            |_: &Service| true,
        );
        // A slice matters only while its Service is in the class (in the Service store).
        let served = svc_store.clone();
        let matters = move |slice: &EndpointSlice| {
            slice.labels().get(SERVICE_NAME_LABEL).is_some_and(|name| {
                served
                    .get(
                        &ObjectRef::new(name)
                            .within(slice.namespace().as_deref().unwrap_or_default()),
                    )
                    .is_some()
            })
        };
        let (slice_store, slice_stream) = watch(
            Api::<EndpointSlice>::all(self.client.clone()),
            watcher::Config::default().labels(SERVICE_NAME_LABEL),
            1,
            "EndpointSlices (all namespaces)".to_owned(),
            |_: &EndpointSlice| true,
            matters,
        );
        let config = self.config.clone();
        let mut fields = ServiceFields::default();
        let edges = self.edges;
        let build: Build = Box::new(move || {
            build(
                &config,
                &edges,
                svc_store.state(),
                slice_store.state(),
                &mut fields,
            )
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
