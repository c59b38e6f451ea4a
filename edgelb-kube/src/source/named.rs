//! The named-services source: a fixed list of `namespace/name` Services.

use std::collections::BTreeSet;

use edgelb_core::{EndpointSource, ProxyProtocol, ServiceKey, Snapshot};
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde::{Deserialize, Serialize};

use super::slices::Touched;
use super::{Build, SliceView, insert_ports, run, watch};
use crate::convert::{SERVICE_NAME_LABEL, SelectedPort, Warning, build_ports, select_port};
use crate::error::{Error, Result};
use crate::events::EventPublisher;
use crate::placement::{Claims, Placement};
use crate::service_fields::ServiceFields;

/// A Service port, by name or by number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortRef {
    /// The Service port's number (`spec.ports[].port`).
    Number(u16),
    /// The Service port's name (`spec.ports[].name`).
    Name(String),
}

impl std::fmt::Display for PortRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Name(n) => f.write_str(n),
        }
    }
}

/// How one Service port is exposed on the edges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortMapping {
    /// Which Service port.
    pub port: PortRef,
    /// The edge listen port; default: the Service port's number.
    #[serde(default)]
    pub listen_port: Option<u16>,
    /// PROXY protocol for this port; default: the Service's setting.
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocol>,
}

/// One Service of the named-services mode.
///
/// In a config file (YAML):
///
/// ```
/// # use edgelb_kube::NamedService;
/// let yaml = r#"
/// service: kube-system/traefik
/// proxy_protocol: v2          # default v2
/// ports:                      # default: every TCP port, listening on the Service's port
///   - port: websecure
///     listen_port: 443
///   - port: 80
///     proxy_protocol: v1
/// "#;
/// let svc: NamedService = serde_yaml_ng::from_str(yaml)?;
/// assert_eq!(svc.service.to_string(), "kube-system/traefik");
/// assert_eq!(svc.ports.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedService {
    /// `namespace/name`.
    #[serde(with = "service_key")]
    pub service: ServiceKey,
    /// PROXY protocol for ports that do not set their own (default v2).
    #[serde(default)]
    pub proxy_protocol: ProxyProtocol,
    /// The ports to expose; empty means every TCP port of the Service, each listening on the
    /// Service port's number.
    #[serde(default)]
    pub ports: Vec<PortMapping>,
}

impl NamedService {
    /// Every TCP port of `service`, PROXY v2.
    pub fn new(service: ServiceKey) -> Self {
        Self {
            service,
            proxy_protocol: ProxyProtocol::V2,
            ports: Vec::new(),
        }
    }

    /// Adds a port mapping.
    pub fn with_port(
        mut self,
        port: PortRef,
        listen_port: Option<u16>,
        proxy_protocol: Option<ProxyProtocol>,
    ) -> Self {
        self.ports.push(PortMapping {
            port,
            listen_port,
            proxy_protocol,
        });
        self
    }
}

mod service_key {
    use edgelb_core::ServiceKey;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(key: &ServiceKey, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(key)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ServiceKey, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Checks a named-services list as [`NamedServicesSource::new`] does, without a cluster (for
/// `edgelb check`): not empty, each Service once, every listen port 1-65535, every port name
/// a valid name.
pub fn validate_named_services(services: &[NamedService]) -> Result<()> {
    if services.is_empty() {
        return Err(Error::config(
            "named services",
            "the list is empty; name at least one Service as namespace/name",
        ));
    }
    let mut seen = BTreeSet::new();
    for svc in services {
        if !seen.insert(&svc.service) {
            return Err(Error::config(
                "named services",
                format!(
                    "{} is listed twice; list each Service once with all its ports",
                    svc.service
                ),
            ));
        }
        if svc.ports.iter().any(|p| p.listen_port == Some(0)) {
            return Err(Error::config(
                "named services",
                format!("{} maps a port to listen port 0; use 1-65535", svc.service),
            ));
        }
        for port in &svc.ports {
            if let PortRef::Name(name) = &port.port {
                edgelb_core::names::validate_name("port name", name).map_err(|e| {
                    Error::config("named services", format!("{}: {e}", svc.service))
                })?;
            }
        }
    }
    Ok(())
}

/// Watches a fixed list of Services and their EndpointSlices.
///
/// For each Service it watches the Service itself (ports, names) and the EndpointSlices
/// labelled `kubernetes.io/service-name=<name>` in its namespace. The first snapshot comes
/// once every one of these watches has listed; each change after that sends a new full
/// snapshot. A Service that does not exist (yet) is left out with a warning.
///
/// ```no_run
/// use edgelb_core::{EndpointSource, ServiceKey};
/// use edgelb_kube::{NamedService, NamedServicesSource};
/// use futures::StreamExt;
/// # async fn demo(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let source = NamedServicesSource::new(
///     client,
///     vec![NamedService::new("kube-system/traefik".parse::<ServiceKey>()?)],
/// )?;
/// let mut snapshots = source.snapshots();
/// let first = snapshots.next().await.expect("endless stream")?;
/// println!("{} endpoints", first.endpoint_count());
/// # Ok(()) }
/// ```
pub struct NamedServicesSource {
    client: Client,
    services: Vec<NamedService>,
    events: Option<EventPublisher>,
}

impl NamedServicesSource {
    /// A source for `services`; fails when the list is empty, names a Service twice or maps a
    /// port to listen port 0.
    pub fn new(client: Client, services: Vec<NamedService>) -> Result<Self> {
        validate_named_services(&services)?;
        Ok(Self {
            client,
            services,
            events: None,
        })
    }

    /// Records Warning Events on the Services for skipped ports and slices.
    pub fn with_events(mut self, events: EventPublisher) -> Self {
        self.events = Some(events);
        self
    }
}

/// The ports of `svc` that `cfg` selects.
fn select_ports(
    svc: &Service,
    cfg: &NamedService,
    warnings: &mut Vec<Warning>,
) -> Vec<SelectedPort> {
    let svc_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or(&[]);
    let mut out = Vec::new();
    let mut select = |p: &k8s_openapi::api::core::v1::ServicePort,
                      listen: Option<u16>,
                      proxy: ProxyProtocol,
                      warnings: &mut Vec<Warning>| {
        out.extend(select_port(svc, p, listen, proxy, warnings));
    };
    if cfg.ports.is_empty() {
        for p in svc_ports {
            select(p, None, cfg.proxy_protocol, warnings);
        }
    } else {
        for mapping in &cfg.ports {
            let found = svc_ports.iter().find(|p| match &mapping.port {
                PortRef::Number(n) => p.port == i32::from(*n),
                PortRef::Name(n) => p.name.as_deref() == Some(n.as_str()),
            });
            match found {
                Some(p) => select(
                    p,
                    mapping.listen_port,
                    mapping.proxy_protocol.unwrap_or(cfg.proxy_protocol),
                    warnings,
                ),
                None => warnings.push(Warning::about(
                    svc,
                    "PortNotFound",
                    format!(
                        "edgelb is configured to expose port {} but the Service has no such port (by name or number); check edgelb's config",
                        mapping.port
                    ),
                )),
            }
        }
    }
    out
}

impl EndpointSource for NamedServicesSource {
    fn snapshots(self) -> BoxStream<'static, edgelb_core::Result<Snapshot>> {
        let mut watches = Vec::new();
        let mut stores = Vec::new();
        for cfg in &self.services {
            let ns = cfg.service.namespace.as_str();
            let name = cfg.service.name.clone();
            let svc_what = format!("Service {}", cfg.service);
            let (svc_store, svc_stream) = watch(
                Api::<Service>::namespaced(self.client.clone(), ns),
                watcher::Config::default().fields(&format!("metadata.name={name}")),
                watches.len(),
                svc_what.clone(),
                |_: &Service| true,
                |_: &Service| Some(Touched::All),
            );
            watches.push((svc_what, svc_stream));
            let slices_what = format!("EndpointSlices of Service {}", cfg.service);
            let (slice_store, slice_stream) = watch(
                Api::<EndpointSlice>::namespaced(self.client.clone(), ns),
                watcher::Config::default().labels(&format!("{SERVICE_NAME_LABEL}={name}")),
                watches.len(),
                slices_what.clone(),
                |_: &EndpointSlice| true,
                |_: &EndpointSlice| Some(Touched::All),
            );
            watches.push((slices_what, slice_stream));
            stores.push((cfg.clone(), svc_store, slice_store));
        }
        // A handful of Services: every change rebuilds them all.
        let mut fields = ServiceFields::default();
        let mut last: Option<Snapshot> = None;
        let build: Build = Box::new(move |_, always| {
            let mut snapshot = Snapshot::default();
            let mut warnings = Vec::new();
            let mut claimed = Claims::new(&[]);
            for (cfg, svc_store, slice_store) in &stores {
                let key = &cfg.service;
                let Some(svc) = svc_store
                    .state()
                    .into_iter()
                    .find(|s| s.name_any() == key.name)
                else {
                    warnings.push(Warning {
                        object: format!("Service {key}"),
                        regarding: None,
                        reason: "ServiceNotFound",
                        message: format!(
                            "Service {key} does not exist; it is left out until it is created"
                        ),
                    });
                    continue;
                };
                let selected = select_ports(&svc, cfg, &mut warnings);
                let slices: Vec<SliceView> = slice_store
                    .state()
                    .iter()
                    .filter(|s| s.labels().get(SERVICE_NAME_LABEL) == Some(&key.name))
                    .map(|s| SliceView::of(s))
                    .collect();
                let slices: Vec<&SliceView> = slices.iter().collect();
                let ports = build_ports(&svc, &selected, &slices, &mut warnings);
                insert_ports(
                    &mut snapshot,
                    &mut claimed,
                    &svc,
                    key,
                    &Placement::default(),
                    ports,
                    &mut warnings,
                );
                fields.apply(&mut snapshot, &svc, key, &mut warnings);
            }
            fields.finish_build();
            let changed = last.as_ref() != Some(&snapshot);
            let out = (changed || always).then(|| snapshot.clone());
            last = Some(snapshot);
            (out, warnings)
        });
        let names: Vec<String> = self
            .services
            .iter()
            .map(|s| s.service.to_string())
            .collect();
        run(
            format!("kubernetes services {}", names.join(", ")),
            watches,
            build,
            self.events,
            std::sync::Arc::default(),
        )
    }
}
