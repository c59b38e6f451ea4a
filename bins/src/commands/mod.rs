//! One module per subcommand.

pub mod check;
pub mod crd;
pub mod credentials;
pub mod demo_backend;
pub mod plan;
mod plan_hold;
pub mod render;
pub mod run;
pub mod run_edges;

use std::sync::Arc;
use std::time::Duration;

use edgelb_ansible::AnsibleDeployer;
use edgelb_core::{Deployer, EdgeNode, HealthProbe, RenderedConfig, Renderer, Snapshot};
use edgelb_haproxy::{HaproxyRenderer, LocalDeployer, StatsSource};
use edgelb_kube::{EventConfig, EventPublisher};

use crate::config::{DeployerConfig, LoadedConfig};
use crate::error::Result;

/// The renderer the config asks for.
pub fn renderer(loaded: &LoadedConfig) -> Result<Arc<HaproxyRenderer>> {
    Ok(Arc::new(HaproxyRenderer::new(
        loaded.config.haproxy.clone(),
    )?))
}

/// The deployer the config asks for.
pub fn deployer(loaded: &LoadedConfig) -> Result<Arc<dyn Deployer>> {
    deployer_and_probe(loaded).map(|d| d.deployer)
}

/// The deployer, and the same object in the other roles it can play.
pub struct Deployers {
    /// The deployer.
    pub deployer: Arc<dyn Deployer>,
    /// The edges' health probe, where the deployer can probe (the native SSH and local
    /// deployers; the Ansible one cannot).
    pub probe: Option<Arc<dyn HealthProbe>>,
    /// The edges' stats source, where the deployer holds sessions to the edges (the native
    /// SSH and local deployers).
    pub stats: Option<Arc<dyn StatsSource>>,
    /// The local deployer, which may own a haproxy it started.
    pub local: Option<Arc<LocalDeployer>>,
}

/// The deployer the config asks for, with its other roles (see [`Deployers`]).
pub fn deployer_and_probe(loaded: &LoadedConfig) -> Result<Deployers> {
    let config = &loaded.config;
    Ok(match &config.deployer {
        DeployerConfig::Local(local) => {
            let local = Arc::new(
                LocalDeployer::new(config.edges[0].name.clone(), local.layout())?
                    .start_if_missing(local.start_haproxy),
            );
            Deployers {
                deployer: local.clone(),
                probe: Some(local.clone()),
                stats: Some(local.clone()),
                local: Some(local),
            }
        }
        DeployerConfig::Ssh(ssh) => {
            let ssh = Arc::new(ssh.deployer()?);
            Deployers {
                deployer: ssh.clone(),
                probe: Some(ssh.clone()),
                stats: Some(ssh),
                local: None,
            }
        }
        DeployerConfig::Ansible(ansible) => Deployers {
            deployer: Arc::new(AnsibleDeployer::new((**ansible).clone())?),
            probe: None,
            stats: None,
            local: None,
        },
    })
}

/// A cluster connection and the Events publisher, when the config needs a cluster.
#[derive(Clone)]
pub struct KubeContext {
    /// The client.
    pub client: edgelb_kube::Client,
    /// Rate-limited Events, shared by the source and the status writer.
    pub events: EventPublisher,
}

impl KubeContext {
    /// Connects when the source or leader election needs the cluster.
    pub async fn connect_if_needed(loaded: &LoadedConfig) -> Result<Option<Self>> {
        let config = &loaded.config;
        if !config.source.is_kubernetes()
            && config.leader_election.is_none()
            && config.edge_resources.is_none()
        {
            return Ok(None);
        }
        let client = edgelb_kube::connect().await?;
        let instance = std::env::var("POD_NAME").unwrap_or_else(|_| "edgelb".into());
        let events = EventPublisher::new(
            client.clone(),
            EventConfig {
                instance,
                ..EventConfig::default()
            },
        );
        Ok(Some(Self { client, events }))
    }

    /// The pair the source constructors take.
    pub fn parts(&self) -> (&edgelb_kube::Client, &EventPublisher) {
        (&self.client, &self.events)
    }
}

/// The current desired state, read once (for `render`, `check` and `plan`).
pub async fn snapshot_once(loaded: &LoadedConfig) -> Result<Snapshot> {
    let kube = KubeContext::connect_if_needed(loaded).await?;
    loaded
        .config
        .source
        .load_once(
            kube.as_ref().map(KubeContext::parts),
            Duration::from_secs(30),
            loaded.config.limits.endpoints_file_bytes,
            &loaded.config.edges,
        )
        .await
}

/// The desired state for `render` and `check`, which touch no cluster object: a Kubernetes
/// source that cannot reach a cluster (a manifest checked before it is applied) gives an empty
/// state, with the reason. Every other failure is an error.
pub async fn snapshot_or_offline(loaded: &LoadedConfig) -> Result<(Snapshot, Option<String>)> {
    match snapshot_once(loaded).await {
        Ok(snapshot) => Ok((snapshot, None)),
        Err(crate::error::Error::Kube(e)) if loaded.config.source.is_kubernetes() => {
            Ok((Snapshot::default(), Some(e.to_string())))
        }
        Err(e) => Err(e),
    }
}

/// Renders `snapshot` for every edge, in config order.
pub fn render_all(
    renderer: &dyn Renderer,
    snapshot: &Snapshot,
    edges: &[EdgeNode],
) -> Vec<(String, edgelb_core::Result<RenderedConfig>)> {
    edges
        .iter()
        .map(|node| (node.name.clone(), renderer.render(snapshot, node)))
        .collect()
}

/// For `render`, `check` and `plan` with `edge_resources:`: the edges are read once from
/// the EdgeNode and EdgePool resources (waiting at most 30 s) and put in `edges`, so these
/// commands see what `run` would deploy to.
pub async fn with_resource_edges(mut loaded: LoadedConfig) -> Result<LoadedConfig> {
    let Some(settings) = loaded.config.edge_resources.clone() else {
        return Ok(loaded);
    };
    let kube = KubeContext::connect_if_needed(&loaded)
        .await?
        .ok_or_else(|| {
            crate::error::Error::Setup("edge_resources needs a cluster connection".into())
        })?;
    let namespace = settings.namespace();
    let (tx, mut rx) = tokio::sync::watch::channel(None);
    let stop = edgelb_core::CancellationToken::new();
    let source = edgelb_kube::crd::EdgeResourceSource::new(kube.client.clone(), &namespace)
        .with_check(run_edges::node_check(&loaded.config));
    let task = tokio::spawn(source.run(tx, stop.clone()));
    let listed = tokio::time::timeout(Duration::from_secs(30), rx.wait_for(Option::is_some)).await;
    let set = match listed {
        Ok(Ok(set)) => set.clone(),
        _ => None,
    };
    stop.cancel();
    let _ = task.await;
    let set = set.ok_or_else(|| {
        crate::error::Error::Setup(format!(
            "could not list the EdgeNodes and EdgePools in namespace {namespace} within 30s; check the connection, that the CRDs are installed (edgelb crd | kubectl apply -f -) and RBAC"
        ))
    })?;
    for (name, reason) in &set.invalid {
        tracing::warn!(edge = %name, %reason, "EdgeNode left out");
    }
    if set.nodes.is_empty() {
        return Err(crate::error::Error::Setup(format!(
            "no usable EdgeNode in namespace {namespace}; create one (README, \"Edges as Kubernetes resources\")"
        )));
    }
    loaded.config.edges = set.nodes;
    Ok(loaded)
}
