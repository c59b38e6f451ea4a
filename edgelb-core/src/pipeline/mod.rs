//! The pipeline: source → debounce → render per node → deploy changed nodes → retry, resync.

mod config;
mod hold;
mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub use config::PipelineConfig;
pub use status::{NodeStatus, PipelineStatus};

use crate::deploy::{DeployError, NodeConfig, NodeOutcome};
use crate::digest::RenderedConfig;
use crate::error::{Error, Result};
use crate::model::Snapshot;
use crate::node::EdgeNode;
use crate::traits::{Deployer, EndpointSource, Renderer};

/// Keeps every edge node running the config rendered from the latest snapshot.
///
/// Partial success is the normal case: one dead node never blocks the others; it is retried
/// with capped exponential backoff, and a periodic resync compares each node's live digest
/// with the desired one and repairs drift.
///
/// ```
/// use std::sync::Arc;
/// use edgelb_core::testing::{MockDeployer, MockRenderer};
/// use edgelb_core::*;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let mut renderer = MockRenderer::new();
/// renderer.expect_render().returning(|_, node| Ok(RenderedConfig::from_body(node.name.clone())));
/// let mut deployer = MockDeployer::new();
/// deployer.expect_deploy().times(1).returning(|batch| {
///     batch.iter().map(|c| NodeOutcome::ok(c.node.name.clone(), Applied::Reloaded)).collect()
/// });
///
/// let pipeline = Pipeline::new(
///     Arc::new(renderer),
///     Arc::new(deployer),
///     vec![EdgeNode::new("edge-1")],
///     PipelineConfig::default(),
/// )?;
/// let mut status = pipeline.status();
/// let stop = CancellationToken::new();
/// let run = tokio::spawn(pipeline.run(StaticSource::new(Snapshot::default()), stop.clone()));
/// status.wait_for(|s| s.nodes_in_sync() == 1).await.unwrap();
/// stop.cancel();
/// run.await.unwrap()?;
/// # Ok::<(), edgelb_core::Error>(())
/// # }).unwrap();
/// ```
pub struct Pipeline {
    renderer: Arc<dyn Renderer>,
    deployer: Arc<dyn Deployer>,
    nodes: Vec<EdgeNode>,
    config: PipelineConfig,
    status: watch::Sender<PipelineStatus>,
}

/// Per-node bookkeeping beyond what is published.
#[derive(Default)]
struct NodeState {
    desired: Option<RenderedConfig>,
    desired_generation: u64,
    next_retry: Option<Instant>,
}

struct Run {
    pipeline: Pipeline,
    desired: Option<Snapshot>,
    state: BTreeMap<String, NodeState>,
    hold: hold::EmptyHold,
    /// A source snapshot to evaluate again when a backend's empty hold ends.
    recheck: Option<(Snapshot, Received, Instant)>,
    /// When the source delivered the current generation's snapshot.
    received: Option<(u64, Received)>,
}

/// When the source delivered a snapshot: wall clock for status, monotonic for latency.
#[derive(Debug, Clone, Copy)]
struct Received {
    wall: SystemTime,
    at: Instant,
}

impl Received {
    fn now() -> Self {
        Self {
            wall: SystemTime::now(),
            at: Instant::now(),
        }
    }
}

impl Pipeline {
    /// Builds a pipeline for `nodes`; fails on an invalid node or a duplicate node name.
    pub fn new(
        renderer: Arc<dyn Renderer>,
        deployer: Arc<dyn Deployer>,
        nodes: Vec<EdgeNode>,
        config: PipelineConfig,
    ) -> Result<Self> {
        let mut seen = BTreeSet::new();
        for node in &nodes {
            node.validate()?;
            if !seen.insert(node.name.clone()) {
                return Err(Error::InvalidName {
                    kind: "node name",
                    value: node.name.clone(),
                    reason: "two nodes have this name; node names must be unique".into(),
                });
            }
        }
        let initial = PipelineStatus {
            nodes: nodes
                .iter()
                .map(|n| (n.name.clone(), NodeStatus::default()))
                .collect(),
            ..PipelineStatus::default()
        };
        let (status, _) = watch::channel(initial);
        Ok(Self {
            renderer,
            deployer,
            nodes,
            config,
            status,
        })
    }

    /// A receiver of the status, updated after every change.
    pub fn status(&self) -> watch::Receiver<PipelineStatus> {
        self.status.subscribe()
    }

    /// Runs until `shutdown` is cancelled. A deploy in flight when it is cancelled finishes
    /// first, so no node is left half-way.
    pub async fn run<S: EndpointSource>(
        self,
        source: S,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let state = self
            .nodes
            .iter()
            .map(|n| (n.name.clone(), NodeState::default()))
            .collect();
        Run {
            pipeline: self,
            desired: None,
            state,
            hold: hold::EmptyHold::default(),
            recheck: None,
            received: None,
        }
        .run(source, shutdown)
        .await
    }
}

impl Run {
    async fn run<S: EndpointSource>(
        mut self,
        source: S,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let cfg = self.pipeline.config.clone();
        let mut snapshots = source.snapshots();
        let mut source_done = false;
        let mut pending: Option<(Snapshot, Received)> = None;
        let mut pending_since = Instant::now();
        let mut apply_at = Instant::now();
        let mut resync =
            tokio::time::interval_at(Instant::now() + cfg.resync_interval, cfg.resync_interval);
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);

        loop {
            let retry_at = self.state.values().filter_map(|s| s.next_retry).min();
            let recheck_at = self.recheck.as_ref().map(|(_, _, at)| *at);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                item = snapshots.next(), if !source_done => match item {
                    None => {
                        tracing::debug!("endpoint source finished; keeping the last snapshot");
                        source_done = true;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "endpoint source error; keeping the last good snapshot");
                        self.pipeline.status.send_modify(|s| s.source_error = Some(e.to_string()));
                    }
                    Some(Ok(snapshot)) => {
                        let now = Instant::now();
                        if pending.is_none() {
                            pending_since = now;
                        }
                        pending = Some((snapshot, Received::now()));
                        self.recheck = None; // the new snapshot is evaluated afresh
                        apply_at = (now + cfg.debounce).min(pending_since + cfg.max_debounce);
                    }
                },
                () = tokio::time::sleep_until(apply_at), if pending.is_some() => {
                    if let Some((snapshot, received)) = pending.take() {
                        self.apply_snapshot(snapshot, received).await;
                    }
                }
                () = sleep_until_opt(recheck_at), if recheck_at.is_some() => {
                    if let Some((snapshot, received, _)) = self.recheck.take() {
                        self.apply_snapshot(snapshot, received).await;
                    }
                }
                () = sleep_until_opt(retry_at), if retry_at.is_some() => {
                    let now = Instant::now();
                    let due: Vec<String> = self
                        .state
                        .iter()
                        .filter(|(_, s)| s.next_retry.is_some_and(|t| t <= now))
                        .map(|(n, _)| n.clone())
                        .collect();
                    tracing::info!(nodes = ?due, "retrying failed nodes");
                    self.deploy_nodes(due).await;
                }
                _ = resync.tick() => self.resync().await,
            }
        }
        tracing::info!("pipeline stopped");
        Ok(())
    }

    async fn apply_snapshot(&mut self, incoming: Snapshot, received: Received) {
        if let Err(e) = incoming.validate() {
            tracing::error!(error = %e, "snapshot rejected; keeping the last good state");
            self.pipeline
                .status
                .send_modify(|s| s.source_error = Some(e.to_string()));
            return;
        }
        let hold = self.pipeline.config.empty_backend_hold;
        let held = self
            .hold
            .apply(self.desired.as_ref(), &incoming, hold, Instant::now());
        let held_names: Vec<String> = held.held.keys().map(|(k, p)| format!("{k}:{p}")).collect();
        if let Some(until) = held.held.values().min().copied() {
            tracing::warn!(
                backends = ?held_names,
                hold = ?hold,
                "the source empties backends that have endpoints; they keep their endpoints until that has lasted the hold time"
            );
            self.recheck = Some((incoming, received, until));
        }
        self.pipeline.status.send_if_modified(|s| {
            let changed = s.held_backends != held_names;
            s.held_backends = held_names;
            changed
        });
        let snapshot = held.effective;
        if self.desired.as_ref() == Some(&snapshot) {
            tracing::debug!("snapshot equals the current desired state; dropped");
            // A good snapshot after an error says the source has recovered.
            self.pipeline
                .status
                .send_if_modified(|s| s.source_error.take().is_some());
            return;
        }
        let shared = Arc::new(snapshot.clone());
        self.desired = Some(snapshot);
        let mut generation = 0;
        self.pipeline.status.send_modify(|s| {
            s.generation += 1;
            generation = s.generation;
            s.snapshot = Some(shared.clone());
            s.snapshot_received_at = Some(received.wall);
            s.source_error = None;
        });
        self.received = Some((generation, received));
        tracing::info!(
            generation,
            services = shared.services.len(),
            endpoints = shared.endpoint_count(),
            "new desired state"
        );

        let mut to_deploy = Vec::new();
        for node in &self.pipeline.nodes {
            let rendered = self.pipeline.renderer.render(&shared, node);
            let state = self.state.entry(node.name.clone()).or_default();
            match rendered {
                Ok(config) => {
                    let digest = config.digest;
                    state.desired = Some(config);
                    state.desired_generation = generation;
                    state.next_retry = None;
                    let mut up_to_date = false;
                    self.pipeline.status.send_modify(|s| {
                        if let Some(ns) = s.nodes.get_mut(&node.name) {
                            ns.desired_digest = Some(digest);
                            up_to_date = ns.live_digest == Some(digest);
                            if up_to_date {
                                ns.live_generation = Some(generation);
                            }
                        }
                    });
                    if up_to_date {
                        tracing::debug!(node = %node.name, digest = %digest.short(), "node already runs this config");
                    } else {
                        to_deploy.push(node.name.clone());
                    }
                }
                Err(e) => {
                    tracing::error!(node = %node.name, error = %e, "render failed; the node keeps its current config");
                    state.desired = None;
                    let err = DeployError::Render {
                        node: node.name.clone(),
                        message: e.to_string(),
                    };
                    self.pipeline.status.send_modify(|s| {
                        if let Some(ns) = s.nodes.get_mut(&node.name) {
                            ns.desired_digest = None;
                            ns.last_error = Some(err);
                        }
                    });
                }
            }
        }
        self.deploy_nodes(to_deploy).await;
    }

    /// Deploys the current desired config to `names`, fanning out with the concurrency bound.
    async fn deploy_nodes(&mut self, names: Vec<String>) {
        let batch: Vec<(NodeConfig, u64)> = self
            .pipeline
            .nodes
            .iter()
            .filter(|n| names.contains(&n.name))
            .filter_map(|n| {
                let st = self.state.get(&n.name)?;
                let config = st.desired.clone()?;
                Some((
                    NodeConfig {
                        node: n.clone(),
                        config,
                    },
                    st.desired_generation,
                ))
            })
            .collect();
        if batch.is_empty() {
            return;
        }
        let attempt = SystemTime::now();
        let generations: BTreeMap<String, (u64, crate::Digest)> = batch
            .iter()
            .map(|(c, g)| (c.node.name.clone(), (*g, c.config.digest)))
            .collect();
        let configs: Vec<NodeConfig> = batch.into_iter().map(|(c, _)| c).collect();
        let deployer = self.pipeline.deployer.clone();
        let chunk = self.pipeline.config.batch_size.max(1);
        let calls = configs.chunks(chunk).map(|c| {
            let chunk = c.to_vec();
            let deployer = deployer.clone();
            async move { deployer.deploy(&chunk).await }
        });
        let outcomes = bounded(calls.collect(), self.pipeline.config.max_concurrency).await;

        let mut reported: BTreeMap<String, NodeOutcome> = outcomes
            .into_iter()
            .flatten()
            .map(|o| (o.node.clone(), o))
            .collect();
        for (name, (generation, digest)) in generations {
            let outcome = reported.remove(&name).unwrap_or_else(|| {
                NodeOutcome::failed(DeployError::Step {
                    node: name.clone(),
                    step: "deploy".into(),
                    message: "the deployer returned no outcome for this node".into(),
                })
            });
            self.record(&name, generation, digest, attempt, outcome.result);
        }
    }

    fn record(
        &mut self,
        name: &str,
        generation: u64,
        digest: crate::Digest,
        attempt: SystemTime,
        result: std::result::Result<crate::Applied, DeployError>,
    ) {
        let Some(state) = self.state.get_mut(name) else {
            return;
        };
        let failures = match &result {
            Ok(_) => 0,
            Err(_) => {
                let status = self.pipeline.status.borrow();
                status.nodes.get(name).map_or(0, |n| n.consecutive_failures) + 1
            }
        };
        match &result {
            Ok(applied) => {
                state.next_retry = None;
                tracing::info!(node = name, digest = %digest.short(), %applied, "node is live");
            }
            Err(e) => {
                let delay = self.pipeline.config.backoff(failures);
                state.next_retry = Some(Instant::now() + delay);
                tracing::warn!(node = name, error = %e, failures, retry_in = ?delay, "deploy failed");
            }
        }
        self.pipeline.status.send_modify(|s| {
            let received = self
                .received
                .filter(|(g, _)| *g == generation)
                .map(|(_, r)| r.at);
            let Some(ns) = s.nodes.get_mut(name) else {
                return;
            };
            ns.last_attempt = Some(attempt);
            ns.deploys += 1;
            let label = match &result {
                Ok(applied) => applied.to_string(),
                Err(e) => e.kind().to_owned(),
            };
            *ns.results.entry(label).or_default() += 1;
            match result {
                Ok(applied) => {
                    let now = SystemTime::now();
                    if ns.live_generation != Some(generation) {
                        ns.last_convergence = received.map(|r| Instant::now() - r);
                    }
                    ns.live_digest = Some(digest);
                    ns.live_generation = Some(generation);
                    ns.last_outcome = Some(applied);
                    ns.last_error = None;
                    ns.last_success = Some(now);
                    ns.consecutive_failures = 0;
                }
                Err(e) => {
                    ns.last_error = Some(e);
                    ns.consecutive_failures = failures;
                }
            }
        });
    }

    /// Compares every node's live digest with the desired one and redeploys where they differ.
    async fn resync(&mut self) {
        let checks: Vec<(EdgeNode, crate::Digest)> = self
            .pipeline
            .nodes
            .iter()
            .filter_map(|n| {
                let st = self.state.get(&n.name)?;
                if st.next_retry.is_some() {
                    return None; // a retry is already scheduled
                }
                Some((n.clone(), st.desired.as_ref()?.digest))
            })
            .collect();
        if checks.is_empty() {
            return;
        }
        let deployer = self.pipeline.deployer.clone();
        let calls = checks.into_iter().map(|(node, desired)| {
            let deployer = deployer.clone();
            async move {
                let live = deployer.live_digest(&node).await;
                (node.name, desired, live)
            }
        });
        let results = bounded(calls.collect(), self.pipeline.config.max_concurrency).await;

        let mut drifted = Vec::new();
        for (name, desired, live) in results {
            match live {
                Ok(live) => {
                    self.pipeline.status.send_modify(|s| {
                        if let Some(ns) = s.nodes.get_mut(&name) {
                            ns.live_digest = live;
                            if live != Some(desired) {
                                ns.live_generation = None;
                            }
                        }
                    });
                    if live != Some(desired) {
                        tracing::warn!(
                            node = %name,
                            live = %live.map(|d| d.short()).unwrap_or_else(|| "none".into()),
                            desired = %desired.short(),
                            "drift detected; redeploying"
                        );
                        drifted.push(name);
                    }
                }
                Err(e) => {
                    let generation = self.state.get(&name).map_or(0, |s| s.desired_generation);
                    self.record(&name, generation, desired, SystemTime::now(), Err(e));
                }
            }
        }
        self.deploy_nodes(drifted).await;
    }
}

/// Runs `futures` with at most `limit` in flight; outputs in completion order.
async fn bounded<F: std::future::Future>(futures: Vec<F>, limit: usize) -> Vec<F::Output> {
    let mut waiting = futures.into_iter();
    let mut running = futures::stream::FuturesUnordered::new();
    running.extend(waiting.by_ref().take(limit.max(1)));
    let mut out = Vec::new();
    while let Some(done) = running.next().await {
        out.push(done);
        running.extend(waiting.next());
    }
    out
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
