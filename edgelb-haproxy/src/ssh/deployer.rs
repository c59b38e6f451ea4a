//! [`SshDeployer`]: the deploy transaction run on edges over SSH.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use edgelb_core::{
    Applied, DeployError, Deployer, Digest, EdgeNode, HealthProbe, NodeConfig, NodeOutcome,
    SshTarget,
};
use tokio::sync::Semaphore;

use super::credentials::SshCredentials;
use super::host::SshHost;
use super::options::SshOptions;
use crate::deploy::{apply_config, live_digest};
use crate::edge_health;
use crate::edge_host::EdgeHost;
use crate::edge_stats::{self, EdgeStats, StatsSource};
use crate::error::{Error, Result};
use crate::layout::HaproxyLayout;

/// Settings of an [`SshDeployer`]: credentials per node, HAProxy's layout on the edges, and
/// session options.
///
/// ```
/// use edgelb_haproxy::ssh::{SshDeployerConfig, SshDeployer};
/// let config = SshDeployerConfig::default(); // add credentials before deploying
/// let deployer = SshDeployer::new(config)?;
/// # Ok::<(), edgelb_haproxy::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SshDeployerConfig {
    /// Credentials by node name ([`EdgeNode::name`]); the node's `ssh` target gives host,
    /// port and user.
    pub credentials: BTreeMap<String, SshCredentials>,
    /// Credentials for nodes missing from `credentials` (one deploy key and one known_hosts
    /// file for every edge). Host keys are still matched per address and port.
    pub default_credentials: Option<SshCredentials>,
    /// HAProxy's paths and reload method on the edges.
    pub layout: HaproxyLayout,
    /// Per-node exceptions to `layout`, by node name.
    pub node_layouts: BTreeMap<String, HaproxyLayout>,
    /// Timeouts, keepalive, file transfer.
    pub options: SshOptions,
    /// Nodes of one [`Deployer::deploy`] batch deployed at once (default 8). The pipeline
    /// sends one node per batch by default and bounds its own fan-out.
    pub max_concurrency: usize,
}

impl Default for SshDeployerConfig {
    fn default() -> Self {
        Self {
            credentials: BTreeMap::new(),
            default_credentials: None,
            layout: HaproxyLayout::default(),
            node_layouts: BTreeMap::new(),
            options: SshOptions::default(),
            max_concurrency: 8,
        }
    }
}

/// Deploys over SSH with the transaction of [`apply_config`]: upload beside the live file,
/// `haproxy -c`, keep the previous file, swap, reload, confirm through the master CLI, roll
/// back a reload that did not take. One persistent session per edge, kept across deploys.
pub struct SshDeployer {
    config: SshDeployerConfig,
    hosts: Mutex<HashMap<String, (SshTarget, SshHost)>>,
    limit: Arc<Semaphore>,
}

impl std::fmt::Debug for SshDeployer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshDeployer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SshDeployer {
    /// Checks the layouts and builds the deployer; sessions open on first use.
    pub fn new(config: SshDeployerConfig) -> Result<Self> {
        config.layout.validate()?;
        for layout in config.node_layouts.values() {
            layout.validate()?;
        }
        if config.max_concurrency == 0 {
            return Err(Error::InvalidInput {
                what: "max_concurrency",
                value: "0".into(),
                reason: "deploy at least one node at a time".into(),
            });
        }
        let limit = Arc::new(Semaphore::new(config.max_concurrency));
        Ok(Self {
            config,
            hosts: Mutex::new(HashMap::new()),
            limit,
        })
    }

    /// The layout used for `node`.
    pub fn layout_for(&self, node: &str) -> &HaproxyLayout {
        self.config
            .node_layouts
            .get(node)
            .unwrap_or(&self.config.layout)
    }

    /// The host for `node`, reusing its session; a node whose SSH target changed gets a new
    /// one.
    pub fn host(&self, node: &EdgeNode) -> Result<SshHost, DeployError> {
        let step_error = |message: String| DeployError::Step {
            node: node.name.clone(),
            step: "preparing the SSH session".into(),
            message,
        };
        let target = node.ssh.clone().ok_or_else(|| {
            step_error(
                "the node has no `ssh` target (host, port, user); the SSH deployer needs one"
                    .into(),
            )
        })?;
        let mut hosts = self
            .hosts
            .lock()
            .map_err(|_| step_error("internal lock poisoned".into()))?;
        if let Some((known, host)) = hosts.get(&node.name)
            && *known == target
        {
            return Ok(host.clone());
        }
        let credentials = self
            .config
            .credentials
            .get(&node.name)
            .or(self.config.default_credentials.as_ref())
            .ok_or_else(|| {
                step_error(format!(
                    "no SSH credentials are configured for node {}; add them under its name or set default credentials",
                    node.name
                ))
            })?
            .clone();
        let host = SshHost::new(node, credentials, self.config.options.clone())
            .map_err(|e| step_error(e.to_string()))?;
        hosts.insert(node.name.clone(), (target, host.clone()));
        Ok(host)
    }

    /// Opens the sessions of `nodes` now, concurrently (they otherwise open on first use).
    pub async fn connect_all(&self, nodes: &[EdgeNode]) -> Vec<(String, Result<(), DeployError>)> {
        let calls = nodes.iter().map(|node| async move {
            let result = match self.host(node) {
                Ok(host) => host.connect().await,
                Err(e) => Err(e),
            };
            (node.name.clone(), result)
        });
        futures::future::join_all(calls).await
    }

    /// Closes every open session.
    pub async fn disconnect_all(&self) {
        let hosts: Vec<SshHost> = match self.hosts.lock() {
            Ok(hosts) => hosts.values().map(|(_, h)| h.clone()).collect(),
            Err(_) => return,
        };
        futures::future::join_all(hosts.iter().map(SshHost::disconnect)).await;
    }

    async fn deploy_one(&self, cfg: &NodeConfig) -> Result<Applied, DeployError> {
        let _permit = self.limit.acquire().await.map_err(|_| DeployError::Step {
            node: cfg.node.name.clone(),
            step: "deploying".into(),
            message: "the deployer is shutting down".into(),
        })?;
        let host = self.host(&cfg.node)?;
        let started = tokio::time::Instant::now();
        let result = apply_config(&host, self.layout_for(&cfg.node.name), &cfg.config).await;
        let ms = started.elapsed().as_millis() as u64;
        // The pipeline logs the outcome once, with its context; this adds the timing.
        match &result {
            Ok(applied) => tracing::debug!(
                node = %cfg.node.name,
                digest = %cfg.config.digest.short(),
                %applied,
                ms,
                "deployed over SSH"
            ),
            Err(e) => {
                tracing::debug!(node = %cfg.node.name, kind = e.kind(), ms, "SSH deploy failed")
            }
        }
        result
    }
}

#[async_trait]
impl Deployer for SshDeployer {
    async fn deploy(&self, batch: &[NodeConfig]) -> Vec<NodeOutcome> {
        let calls = batch.iter().map(|cfg| async move {
            match self.deploy_one(cfg).await {
                Ok(applied) => NodeOutcome::ok(cfg.node.name.clone(), applied),
                Err(e) => NodeOutcome::failed(e),
            }
        });
        futures::future::join_all(calls).await
    }

    async fn live_digest(&self, node: &EdgeNode) -> Result<Option<Digest>, DeployError> {
        let host = self.host(node)?;
        live_digest(&host, self.layout_for(&node.name)).await
    }

    async fn live_config(&self, node: &EdgeNode) -> Result<Option<String>, DeployError> {
        let host = self.host(node)?;
        let bytes = host
            .read_file(&self.layout_for(&node.name).config_path)
            .await?;
        Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }
}

/// Over the same session as the deploys: `show proc`, then a connection to each listen
/// port made by the edge's sshd (see `edge_health.rs`).
#[async_trait]
impl HealthProbe for SshDeployer {
    async fn probe_health(&self, node: &EdgeNode, listen_ports: &[u16]) -> Result<(), DeployError> {
        let host = self.host(node)?;
        edge_health::probe(&host, self.layout_for(&node.name), listen_ports).await
    }
}

/// `show stat` and `show info` over the same session as the deploys (see
/// [`crate::edge_stats`]).
#[async_trait]
impl StatsSource for SshDeployer {
    async fn edge_stats(
        &self,
        node: &EdgeNode,
        stats_socket: &str,
    ) -> Result<EdgeStats, DeployError> {
        let host = self.host(node)?;
        edge_stats::read(&host, stats_socket).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgelb_core::RenderedConfig;

    #[tokio::test]
    async fn nodes_without_target_or_credentials_fail_with_a_clear_outcome() {
        let deployer = SshDeployer::new(SshDeployerConfig::default()).unwrap();
        let config = RenderedConfig::from_body("global\n".into());
        let batch = vec![
            NodeConfig {
                node: EdgeNode::new("no-target"),
                config: config.clone(),
            },
            NodeConfig {
                node: EdgeNode::new("no-creds").with_ssh(SshTarget::new("127.0.0.1")),
                config,
            },
        ];
        let outcomes = deployer.deploy(&batch).await;
        assert_eq!(outcomes.len(), 2);
        let err = |i: usize| outcomes[i].result.clone().unwrap_err().to_string();
        assert!(err(0).contains("no `ssh` target"), "{}", err(0));
        assert!(err(1).contains("no SSH credentials"), "{}", err(1));
        assert_eq!(outcomes[1].node, "no-creds");
    }

    #[test]
    fn invalid_layouts_and_zero_concurrency_are_refused() {
        let mut config = SshDeployerConfig::default();
        config.layout.config_path = "/etc/haproxy/$(id)".into();
        assert!(SshDeployer::new(config).is_err());
        let config = SshDeployerConfig {
            max_concurrency: 0,
            ..SshDeployerConfig::default()
        };
        assert!(SshDeployer::new(config).is_err());
    }
}
