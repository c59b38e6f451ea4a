//! The three seams of the pipeline: where snapshots come from, how a node's config is
//! rendered, and how it reaches the node.

use std::collections::BTreeSet;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::deploy::{DeployError, NodeConfig, NodeOutcome};
use crate::digest::{Digest, RenderedConfig};
use crate::error::Result;
use crate::model::{ServiceKey, Snapshot};
use crate::node::EdgeNode;

/// Produces full snapshots of the desired state.
pub trait EndpointSource: Send + 'static {
    /// A stream of full snapshots. The first is sent only once the source has its complete
    /// initial state (a Kubernetes source waits for its initial lists). An `Err` item reports
    /// a problem the source is recovering from; the pipeline keeps the last good snapshot.
    fn snapshots(self) -> BoxStream<'static, Result<Snapshot>>;
}

/// Turns a snapshot into one node's config.
///
/// What the pipeline relies on:
///
/// * **Repeatable**: rendering a snapshot for a node again gives byte-identical output as
///   long as the renderer saw only that same desired state in between (renders for other
///   nodes, or of the same state less quarantined services). The pipeline renders again on
///   retries, resyncs and quarantine changes, and decides from the digest whether a node
///   needs a deploy: output that changed on repeat would redeploy for nothing.
/// * **Not necessarily pure**: the output may depend on what the renderer rendered before.
///   `edgelb-haproxy`'s renderer keeps each endpoint in the server slot it had, so a
///   snapshot reached through another history, or rendered by a fresh renderer, can give
///   other bytes; such a renderer should be able to carry on from what the edges run
///   (`HaproxyRenderer::seed_slots_from_edges`), or a restarted controller redeploys every
///   edge once.
/// * **Quick, no I/O**: it is called on the pipeline's tasks, for each node of every new
///   desired state. An error fails that node only: it keeps its current config.
#[cfg_attr(any(test, feature = "testing"), mockall::automock)]
pub trait Renderer: Send + Sync {
    /// Renders `snapshot` for `node`.
    fn render(&self, snapshot: &Snapshot, node: &EdgeNode) -> Result<RenderedConfig>;

    /// Which services of `snapshot` a node's refusal of `config` (rendered from `snapshot`
    /// for `node`) is to be blamed on, from what the error says (a config line, a section
    /// name, a taken port). The pipeline then renders that node again without them and
    /// deploys the rest, so one bad Service never holds back the others.
    ///
    /// `Some(empty)`: the fault is in no service (a global setting, the template);
    /// `None`: cannot tell, the pipeline falls back to the services that changed since the
    /// node's last good config. Called only for [`DeployError::is_config_fault`] errors. The
    /// default cannot tell.
    fn blame(
        &self,
        snapshot: &Snapshot,
        node: &EdgeNode,
        config: &RenderedConfig,
        error: &DeployError,
    ) -> Option<BTreeSet<ServiceKey>> {
        let _ = (snapshot, node, config, error);
        None
    }
}

/// Puts configs live on nodes.
#[cfg_attr(any(test, feature = "testing"), mockall::automock)]
#[async_trait]
pub trait Deployer: Send + Sync {
    /// Deploys a batch (one config per node) and returns exactly one outcome per node, in any
    /// order. One node's failure must not stop the others. The pipeline sends batches of
    /// [`PipelineConfig::batch_size`](crate::PipelineConfig::batch_size) nodes (1 by default:
    /// it fans out itself); a deployer that runs a batch as one job (Ansible) wants more.
    async fn deploy(&self, batch: &[NodeConfig]) -> Vec<NodeOutcome>;

    /// The digest of the config live on `node`, `None` when it has none from edgelb.
    async fn live_digest(&self, node: &EdgeNode) -> Result<Option<Digest>, DeployError>;

    /// The whole config file live on `node` (`None` when there is none), for `edgelb plan`'s
    /// diffs. Deployers that cannot read it keep this default, which says so.
    async fn live_config(&self, node: &EdgeNode) -> Result<Option<String>, DeployError> {
        Err(DeployError::Step {
            node: node.name.clone(),
            step: "reading the live config".into(),
            message: "this deployer cannot read live configs".into(),
        })
    }
}

/// Tells whether an edge serves (see [`HealthConfig`](crate::HealthConfig)). The deployers
/// that hold a session to their edges implement it; give it to the pipeline with
/// [`Pipeline::with_health_probe`](crate::Pipeline::with_health_probe).
#[cfg_attr(any(test, feature = "testing"), mockall::automock)]
#[async_trait]
pub trait HealthProbe: Send + Sync {
    /// Probes whether `node` serves: its session, HAProxy's processes, and a connection to
    /// each of `listen_ports` made on the node itself (no probe traffic crosses the link).
    /// The pipeline bounds each probe with
    /// [`HealthConfig::timeout`](crate::HealthConfig::timeout).
    async fn probe_health(&self, node: &EdgeNode, listen_ports: &[u16]) -> Result<(), DeployError>;
}

/// A stream of snapshots is a source too: `source.snapshots()` boxes any source, so a program
/// can pick one at run time.
impl EndpointSource for BoxStream<'static, Result<Snapshot>> {
    fn snapshots(self) -> BoxStream<'static, Result<Snapshot>> {
        self
    }
}
