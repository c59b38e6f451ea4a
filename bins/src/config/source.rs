use std::path::{Path, PathBuf};
use std::time::Duration;

use edgelb_core::source::{ServiceEntry, SnapshotDocument};
use edgelb_core::{EdgeNode, EndpointSource, FileSource, Snapshot, StaticSource};
use edgelb_kube::{
    EventPublisher, LoadBalancerConfig, LoadBalancerSource, NamedService, NamedServicesSource,
    validate_named_services,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Deserialize;

use crate::error::{Error, Result};

/// `source:` — where the desired state comes from. Exactly one key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SourceConfig {
    /// `file: endpoints.yaml` — a YAML endpoints file, re-read when it changes.
    File(PathBuf),
    /// `services: [...]` — a fixed list, in the endpoints file's format.
    Services(Vec<ServiceEntry>),
    /// `kubernetes: {...}` — Services and their EndpointSlices from the cluster.
    Kubernetes(KubernetesSource),
}

/// `source.kubernetes` — exactly one of `load_balancer` and `services`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSource {
    /// Every `type: LoadBalancer` Service of this `loadBalancerClass`
    /// (`{class: edgelb.io/haproxy, default_proxy_protocol: v2}`).
    pub load_balancer: Option<LoadBalancerConfig>,
    /// Named Services: `[{service: kube-system/traefik, ports: [{port: websecure, listen_port: 443}]}]`.
    pub services: Option<Vec<NamedService>>,
    /// How the LoadBalancer mode writes Service status (`{qps: 1000, burst: 100, max_in_flight: 16}`).
    #[serde(default)]
    pub status: StatusSettings,
}

/// `source.kubernetes.status` — the pace of status writes in LoadBalancer mode.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusSettings {
    /// Status patches per second on average, all Services together (default 1000).
    pub qps: u32,
    /// Patches that may go out at once before `qps` paces them (default 100).
    pub burst: u32,
    /// Patches in flight at once (default 16).
    pub max_in_flight: usize,
}

impl Default for StatusSettings {
    fn default() -> Self {
        let defaults = edgelb_kube::StatusConfig::default();
        Self {
            qps: defaults.qps,
            burst: defaults.burst,
            max_in_flight: defaults.max_in_flight,
        }
    }
}

impl StatusSettings {
    fn validate(&self) -> std::result::Result<(), String> {
        if self.qps == 0 || self.burst == 0 || self.max_in_flight == 0 {
            return Err(
                "kubernetes.status: qps, burst and max_in_flight must be at least 1".into(),
            );
        }
        if self.max_in_flight > 256 {
            return Err(
                "kubernetes.status.max_in_flight: at most 256 (each patch holds a seat of the API server's priority level)"
                    .into(),
            );
        }
        Ok(())
    }

    /// The status writer's settings.
    pub fn to_config(&self) -> edgelb_kube::StatusConfig {
        edgelb_kube::StatusConfig {
            qps: self.qps,
            burst: self.burst,
            max_in_flight: self.max_in_flight,
            ..edgelb_kube::StatusConfig::default()
        }
    }
}

/// A source built from the config, boxed so the kind is chosen at run time.
pub type BoxedSource = BoxStream<'static, edgelb_core::Result<Snapshot>>;

impl SourceConfig {
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        if let Self::File(path) = self {
            *path = base.join(&*path);
        }
    }

    /// Checks offline everything the source would refuse when `run` starts it.
    pub(super) fn validate(&self) -> std::result::Result<(), String> {
        match self {
            Self::Kubernetes(k) => k.status.validate().and(match (&k.load_balancer, &k.services) {
                (Some(lb), None) if lb.class.is_empty() => Err(
                    "kubernetes.load_balancer.class: it is empty; use a domain-prefixed name such as edgelb.io/haproxy".into(),
                ),
                (Some(_), None) => Ok(()),
                (None, Some(services)) if !services.is_empty() => {
                    validate_named_services(services)
                        .map_err(|e| format!("kubernetes.services: {e}"))
                }
                (None, Some(_)) => Err("kubernetes.services: list at least one Service".into()),
                _ => Err("kubernetes: give exactly one of load_balancer and services".into()),
            }),
            Self::Services(services) => SnapshotDocument {
                services: services.clone(),
            }
            .into_snapshot("services")
            .map(drop)
            .map_err(|e| e.to_string()),
            Self::File(_) => Ok(()),
        }
    }

    /// Whether this source needs a Kubernetes client.
    pub fn is_kubernetes(&self) -> bool {
        matches!(self, Self::Kubernetes(_))
    }

    /// The status writer's settings (`source.kubernetes.status`, defaults otherwise).
    pub fn status_config(&self) -> edgelb_kube::StatusConfig {
        match self {
            Self::Kubernetes(k) => k.status.to_config(),
            _ => edgelb_kube::StatusConfig::default(),
        }
    }

    /// Whether this is the LoadBalancer-class source (whose Services get status written).
    pub fn is_load_balancer(&self) -> bool {
        matches!(
            self,
            Self::Kubernetes(KubernetesSource {
                load_balancer: Some(_),
                ..
            })
        )
    }

    /// The source to run the pipeline on. `kube` is required for the Kubernetes source;
    /// `max_file_bytes` caps an endpoints file.
    pub fn into_source(
        self,
        kube: Option<(&edgelb_kube::Client, &EventPublisher)>,
        max_file_bytes: u64,
        edges: &[EdgeNode],
    ) -> Result<BoxedSource> {
        Ok(match self {
            Self::File(path) => FileSource::new(path)
                .with_max_bytes(max_file_bytes)
                .snapshots(),
            Self::Services(services) => {
                StaticSource::new(SnapshotDocument { services }.into_snapshot("source.services")?)
                    .snapshots()
            }
            Self::Kubernetes(k) => {
                let (client, events) = kube.ok_or_else(|| {
                    Error::Setup("the kubernetes source needs a cluster connection".into())
                })?;
                match (k.load_balancer, k.services) {
                    (Some(lb), _) => LoadBalancerSource::new(client.clone(), lb)?
                        .with_edges(edges.to_vec())
                        .with_events(events.clone())
                        .snapshots(),
                    (None, Some(services)) => NamedServicesSource::new(client.clone(), services)?
                        .with_events(events.clone())
                        .snapshots(),
                    (None, None) => {
                        return Err(Error::Setup("source.kubernetes: nothing to watch".into()));
                    }
                }
            }
        })
    }

    /// Reads the current desired state once (for `render`, `check` and `plan`); from a
    /// cluster, the first full snapshot, waiting at most `timeout`.
    pub async fn load_once(
        &self,
        kube: Option<(&edgelb_kube::Client, &EventPublisher)>,
        timeout: Duration,
        max_file_bytes: u64,
        edges: &[EdgeNode],
    ) -> Result<Snapshot> {
        match self {
            Self::File(path) => Ok(FileSource::new(path)
                .with_max_bytes(max_file_bytes)
                .load()
                .await?),
            Self::Services(services) => Ok(SnapshotDocument {
                services: services.clone(),
            }
            .into_snapshot("source.services")?),
            Self::Kubernetes(_) => {
                let mut stream = self.clone().into_source(kube, max_file_bytes, edges)?;
                let first = tokio::time::timeout(timeout, async {
                    loop {
                        match stream.next().await {
                            Some(Ok(snapshot)) => return Ok(snapshot),
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "waiting for the cluster's endpoints")
                            }
                            None => {
                                return Err(Error::Setup(
                                    "the kubernetes source ended before its first snapshot".into(),
                                ));
                            }
                        }
                    }
                })
                .await;
                first.unwrap_or_else(|_| {
                    Err(Error::Setup(format!(
                        "no snapshot from the cluster within {timeout:?}; check the connection and RBAC"
                    )))
                })
            }
        }
    }
}
