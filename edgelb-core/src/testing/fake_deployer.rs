//! A deployer that keeps each node's live digest in memory, fails and refuses on demand, and
//! records every call with the time it came (on tokio's clock, so paused-time tests read
//! exact figures).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::deploy::{Applied, DeployError, NodeConfig, NodeOutcome};
use crate::digest::Digest;
use crate::node::EdgeNode;
use crate::traits::Deployer;

/// Whether a node refuses a config, and with what error (as `haproxy -c`, a failed reload or
/// a taken port would): `None` lets the deploy go on.
pub type Refusal = Box<dyn Fn(&NodeConfig) -> Option<DeployError> + Send + Sync>;

/// One call of [`Deployer::deploy`] on a [`FakeDeployer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployCall {
    /// When the call came, counted from the deployer's creation on tokio's clock.
    pub at: Duration,
    /// The nodes of the batch, in batch order.
    pub nodes: Vec<String>,
}

/// A [`Deployer`] for tests that behaves like a fleet of edges without any: a deploy that
/// succeeds makes the config's digest the node's live one (what
/// [`Deployer::live_digest`] then reports), so the pipeline's resync finds nodes in sync
/// and a digest changed with [`FakeDeployer::set_live`] is drift it repairs.
///
/// Failures on demand: [`fail`](FakeDeployer::fail) a node's next deploys (as an unreachable
/// edge), [`refusing`](FakeDeployer::refusing) configs (as an edge whose HAProxy rejects
/// them), [`with_delay`](FakeDeployer::with_delay) for slow or hung edges.
///
/// ```
/// use edgelb_core::testing::FakeDeployer;
/// use edgelb_core::{Deployer, EdgeNode, NodeConfig, RenderedConfig};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let deployer = FakeDeployer::new().fail("edge-1", 1);
/// let node = EdgeNode::new("edge-1");
/// let config = NodeConfig {
///     node: node.clone(),
///     config: RenderedConfig::from_body("global\n".into()),
/// };
/// assert!(deployer.deploy(&[config.clone()]).await[0].result.is_err(), "the first fails");
/// assert!(deployer.deploy(&[config.clone()]).await[0].result.is_ok());
/// assert_eq!(deployer.live_digest(&node).await?, Some(config.config.digest));
/// assert_eq!(deployer.deploys_to("edge-1").len(), 2);
/// # Ok::<(), edgelb_core::DeployError>(())
/// # }).unwrap();
/// ```
pub struct FakeDeployer {
    start: Instant,
    calls: Mutex<Vec<DeployCall>>,
    live: Mutex<HashMap<String, Digest>>,
    failures_left: Mutex<HashMap<String, u32>>,
    delay: Duration,
    node_delay: HashMap<String, Duration>,
    refuse: Option<Refusal>,
}

impl Default for FakeDeployer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for FakeDeployer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDeployer")
            .field("calls", &*lock(&self.calls))
            .field("live", &*lock(&self.live))
            .field("delay", &self.delay)
            .finish_non_exhaustive()
    }
}

/// A lock that a panicking test thread cannot make unusable: the data stays readable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeDeployer {
    /// A deployer whose nodes run nothing yet; its clock ([`DeployCall::at`]) starts now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            calls: Mutex::default(),
            live: Mutex::default(),
            failures_left: Mutex::default(),
            delay: Duration::ZERO,
            node_delay: HashMap::new(),
            refuse: None,
        }
    }

    /// Makes the next `times` deploys to `node` fail with [`DeployError::Connect`], as an
    /// unreachable edge: the pipeline retries them with backoff.
    pub fn fail(self, node: &str, times: u32) -> Self {
        self.fail_next(node, times);
        self
    }

    /// [`fail`](Self::fail), on a deployer already in use.
    pub fn fail_next(&self, node: &str, times: u32) {
        lock(&self.failures_left).insert(node.to_owned(), times);
    }

    /// Makes every deploy call take `delay` before it answers.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Makes deploy calls that include `node` take `delay` (overriding
    /// [`with_delay`](Self::with_delay)): a slow or, with a long delay, hung edge.
    pub fn with_node_delay(mut self, node: &str, delay: Duration) -> Self {
        self.node_delay.insert(node.to_owned(), delay);
        self
    }

    /// Lets `refusal` refuse configs: a config it returns an error for is not deployed and
    /// the error is the node's outcome (return e.g. [`DeployError::ConfigRejected`] to have
    /// the pipeline quarantine the Service to blame).
    pub fn refusing(
        mut self,
        refusal: impl Fn(&NodeConfig) -> Option<DeployError> + Send + Sync + 'static,
    ) -> Self {
        self.refuse = Some(Box::new(refusal));
        self
    }

    /// Every deploy call so far, in order.
    pub fn calls(&self) -> Vec<DeployCall> {
        lock(&self.calls).clone()
    }

    /// When each deploy call that included `node` came.
    pub fn deploys_to(&self, node: &str) -> Vec<Duration> {
        lock(&self.calls)
            .iter()
            .filter(|call| call.nodes.iter().any(|n| n == node))
            .map(|call| call.at)
            .collect()
    }

    /// The digest `node` runs, `None` before its first successful deploy.
    pub fn live(&self, node: &str) -> Option<Digest> {
        lock(&self.live).get(node).copied()
    }

    /// Sets what `node` runs, as someone editing its config by hand (`Some` other digest) or
    /// rebuilding the edge (`None`) would: drift the pipeline's resync repairs.
    pub fn set_live(&self, node: &str, digest: Option<Digest>) {
        let mut live = lock(&self.live);
        match digest {
            Some(digest) => live.insert(node.to_owned(), digest),
            None => live.remove(node),
        };
    }

    /// One node's outcome, updating what it runs.
    fn deploy_one(&self, config: &NodeConfig) -> NodeOutcome {
        let name = config.node.name.clone();
        if let Some(refused) = self.refuse.as_ref().and_then(|refuse| refuse(config)) {
            return NodeOutcome::failed(refused);
        }
        if let Some(left) = lock(&self.failures_left).get_mut(&name)
            && *left > 0
        {
            *left -= 1;
            return NodeOutcome::failed(DeployError::Connect {
                node: name,
                message: "connection refused (FakeDeployer::fail)".into(),
            });
        }
        let previous = lock(&self.live).insert(name.clone(), config.config.digest);
        let applied = if previous == Some(config.config.digest) {
            Applied::Unchanged
        } else {
            Applied::Reloaded
        };
        NodeOutcome::ok(name, applied)
    }
}

#[async_trait]
impl Deployer for FakeDeployer {
    async fn deploy(&self, batch: &[NodeConfig]) -> Vec<NodeOutcome> {
        let at = Instant::now().saturating_duration_since(self.start);
        let nodes = batch.iter().map(|c| c.node.name.clone()).collect();
        lock(&self.calls).push(DeployCall { at, nodes });
        let delay = batch
            .iter()
            .filter_map(|c| self.node_delay.get(&c.node.name))
            .max()
            .copied()
            .unwrap_or(self.delay);
        tokio::time::sleep(delay).await;
        batch.iter().map(|c| self.deploy_one(c)).collect()
    }

    async fn live_digest(&self, node: &EdgeNode) -> Result<Option<Digest>, DeployError> {
        Ok(self.live(&node.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::RenderedConfig;

    fn config(node: &str, body: &str) -> NodeConfig {
        NodeConfig {
            node: EdgeNode::new(node),
            config: RenderedConfig::from_body(body.to_owned()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn nodes_run_what_was_deployed_until_drift_or_a_refusal() {
        let deployer = FakeDeployer::new()
            .with_delay(Duration::from_secs(1))
            .refusing(|c| {
                c.config.text.contains("bad").then(|| DeployError::Step {
                    node: c.node.name.clone(),
                    step: "haproxy -c".into(),
                    message: "bad".into(),
                })
            });
        let good = config("a", "good\n");
        let outcomes = deployer.deploy(&[good.clone(), config("b", "bad\n")]).await;
        assert_eq!(outcomes[0].result, Ok(Applied::Reloaded));
        assert!(outcomes[1].result.is_err());
        assert_eq!(deployer.live("a"), Some(good.config.digest));
        assert_eq!(deployer.live("b"), None, "a refused config is not live");

        let again = deployer.deploy(std::slice::from_ref(&good)).await;
        assert_eq!(again[0].result, Ok(Applied::Unchanged));
        deployer.set_live("a", None);
        assert_eq!(deployer.live_digest(&good.node).await, Ok(None));
        assert_eq!(
            deployer.calls(),
            vec![
                DeployCall {
                    at: Duration::ZERO,
                    nodes: vec!["a".into(), "b".into()]
                },
                DeployCall {
                    at: Duration::from_secs(1),
                    nodes: vec!["a".into()]
                },
            ]
        );
    }
}
