//! A deployer over simulated edges, through edgelb's real deploy transaction.

use std::sync::Arc;

use async_trait::async_trait;
use edgelb_core::{DeployError, Deployer, Digest, EdgeNode, NodeConfig, NodeOutcome};

use super::{SimEdge, SimEdges};
use crate::HaproxyLayout;
use crate::deploy::{apply_config, live_digest};

/// A [`Deployer`] whose edges are [`SimEdge`]s: each deploy runs the same transaction as the
/// SSH and local deployers (runtime update or validate → swap → reload → confirm → roll
/// back), so a test sees what those deployers would do: a change of endpoints only goes
/// through the runtime API, servers changed by hand are drift the next resync puts back, a
/// rejecting edge fails with [`DeployError::ConfigRejected`] and keeps its live config.
///
/// ```
/// use std::sync::Arc;
/// use edgelb_core::{Applied, Deployer, EdgeNode, NodeConfig, RenderedConfig};
/// use edgelb_haproxy::sim_edge::{SimDeployer, SimEdge};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// let deployer = SimDeployer::new()
///     .with_edge(SimEdge::new().named("edge-1"))
///     .with_edge(SimEdge::new().named("edge-2").rejecting_configs());
/// let config = RenderedConfig::from_body("global\n    master-worker\n".into());
/// let batch: Vec<NodeConfig> = ["edge-1", "edge-2"]
///     .map(|n| NodeConfig { node: EdgeNode::new(n), config: config.clone() })
///     .into();
/// let outcomes = deployer.deploy(&batch).await;
/// assert_eq!(outcomes[0].result, Ok(Applied::Reloaded));
/// assert!(outcomes[1].result.is_err(), "haproxy -c rejected it");
/// let edge = deployer.edge("edge-1").ok_or("no edge-1")?;
/// assert_eq!(edge.live_config(), Some(config.text));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })
/// # .map_err(|e| e.to_string())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct SimDeployer {
    edges: SimEdges,
    layout: HaproxyLayout,
}

impl SimDeployer {
    /// A deployer with no edges yet: a deploy to a node it has no edge for fails as an
    /// unreachable edge would.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `edge` under its name (see [`SimEdge::named`]), replacing any edge of that name.
    pub fn with_edge(mut self, edge: SimEdge) -> Self {
        self.edges.insert(edge.name.clone(), Arc::new(edge));
        self
    }

    /// The edge named `name`, to inspect it or change it by hand while the pipeline runs.
    pub fn edge(&self, name: &str) -> Option<Arc<SimEdge>> {
        self.edges.get(name).cloned()
    }

    fn find(&self, node: &EdgeNode) -> Result<&SimEdge, DeployError> {
        self.edges
            .get(&node.name)
            .map(Arc::as_ref)
            .ok_or_else(|| DeployError::Connect {
                node: node.name.clone(),
                message: "no simulated edge of that name".into(),
            })
    }
}

#[async_trait]
impl Deployer for SimDeployer {
    async fn deploy(&self, batch: &[NodeConfig]) -> Vec<NodeOutcome> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for cfg in batch {
            let applied = match self.find(&cfg.node) {
                Ok(edge) => apply_config(edge, &self.layout, &cfg.config).await,
                Err(e) => Err(e),
            };
            outcomes.push(match applied {
                Ok(applied) => NodeOutcome::ok(cfg.node.name.clone(), applied),
                Err(e) => NodeOutcome::failed(e),
            });
        }
        outcomes
    }

    async fn live_digest(&self, node: &EdgeNode) -> Result<Option<Digest>, DeployError> {
        live_digest(self.find(node)?, &self.layout).await
    }

    async fn live_config(&self, node: &EdgeNode) -> Result<Option<String>, DeployError> {
        Ok(self.find(node)?.live_config())
    }
}
