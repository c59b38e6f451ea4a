//! A lane: the nodes one worker task keeps in sync on its own (one node, or one
//! [`batch_size`](super::PipelineConfig::batch_size) of them for a deployer that runs a batch
//! as one job). Each lane renders, deploys, retries with backoff and resyncs by itself, so a
//! slow, hung or failing edge delays nothing but its own lane: the source is read and every
//! other edge gets every change whatever one edge does.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::quarantine::{Quarantine, culprits};
use super::status::PipelineStatus;
use super::{PipelineConfig, sleep_until_opt};
use crate::deploy::{Applied, DeployError, NodeConfig, NodeOutcome};
use crate::digest::{Digest, RenderedConfig};
use crate::model::Snapshot;
use crate::node::EdgeNode;
use crate::traits::{Deployer, Renderer};

/// What every lane shares.
pub(super) struct Shared {
    pub renderer: Arc<dyn Renderer>,
    pub deployer: Arc<dyn Deployer>,
    pub config: PipelineConfig,
    pub status: Arc<watch::Sender<PipelineStatus>>,
    /// Bounds the deployer calls in flight across lanes (`max_concurrency`).
    pub permits: Arc<Semaphore>,
}

/// A desired state handed to the lanes.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub generation: u64,
    pub snapshot: Arc<Snapshot>,
    /// When the source delivered it (for the convergence time).
    pub received: Instant,
}

/// One node's bookkeeping inside its lane.
#[derive(Default)]
struct NodeState {
    /// The config it should run, the generation and effective snapshot it comes from.
    desired: Option<(RenderedConfig, u64, Arc<Snapshot>)>,
    /// What last ran there with edgelb's knowledge (the last good config's snapshot).
    last_good: Option<Arc<Snapshot>>,
    quarantine: Quarantine,
    next_retry: Option<Instant>,
    /// A config the node refused with nothing to blame on one service: it is not sent
    /// again unchanged; a config that differs, or the resync, tries again.
    refused: Option<Digest>,
    failures: u32,
}

pub(super) struct Lane {
    nodes: Vec<EdgeNode>,
    shared: Arc<Shared>,
    state: BTreeMap<String, NodeState>,
    target: Option<Target>,
}

impl Lane {
    pub(super) fn new(nodes: Vec<EdgeNode>, shared: Arc<Shared>) -> Self {
        let state = nodes
            .iter()
            .map(|n| (n.name.clone(), NodeState::default()))
            .collect();
        Self {
            nodes,
            shared,
            state,
            target: None,
        }
    }

    /// Runs until `shutdown` (a deploy in flight finishes first) or the targets close.
    pub(super) async fn run(
        mut self,
        mut targets: watch::Receiver<Option<Target>>,
        shutdown: CancellationToken,
    ) {
        let every = self.shared.config.resync_interval;
        let mut resync = tokio::time::interval_at(Instant::now() + every, every);
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let retry_at = self.state.values().filter_map(|s| s.next_retry).min();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                changed = targets.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let target = targets.borrow_and_update().clone();
                    if let Some(target) = target {
                        self.on_target(target).await;
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
                    self.deploy(due).await;
                }
                _ = resync.tick() => self.resync().await,
            }
        }
    }

    /// A new desired state: render every node of the lane and deploy where it changes what
    /// the node runs.
    async fn on_target(&mut self, target: Target) {
        self.target = Some(target);
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        let mut to_deploy = Vec::new();
        for name in names {
            if let Some(state) = self.state.get_mut(&name) {
                let lifted = match &self.target {
                    Some(t) => state.quarantine.release_changed(&t.snapshot),
                    None => Vec::new(),
                };
                if !lifted.is_empty() {
                    tracing::info!(node = %name, services = ?lifted.iter().map(ToString::to_string).collect::<Vec<_>>(), "quarantined services changed; trying them again");
                }
                state.next_retry = None;
            }
            if self.render(&name) {
                to_deploy.push(name);
            }
        }
        self.deploy(to_deploy).await;
    }

    /// Renders the current target for `name` (less its quarantine); `true` when the result
    /// is not what the node runs and was not refused by it already, so it needs a deploy.
    fn render(&mut self, name: &str) -> bool {
        let (Some(target), Some(node), Some(state)) = (
            self.target.as_ref(),
            self.nodes.iter().find(|n| n.name == name),
            self.state.get_mut(name),
        ) else {
            return false;
        };
        // Only the services placed on this node (their pool is one of its pools).
        // Nothing left out: the target itself, shared rather than copied per node.
        let effective = match target.snapshot.placed_on(node) {
            Cow::Borrowed(_) if state.quarantine.is_empty() => target.snapshot.clone(),
            placed => Arc::new(
                state
                    .quarantine
                    .apply(&placed, state.last_good.as_deref(), node),
            ),
        };
        let quarantined = state.quarantine.reasons();
        let generation = target.generation;
        match self.shared.renderer.render(&effective, node) {
            Ok(config) => {
                let digest = config.digest;
                state.desired = Some((config, generation, effective.clone()));
                let mut up_to_date = false;
                self.shared.status.send_modify(|s| {
                    if let Some(ns) = s.nodes.get_mut(name) {
                        ns.desired_digest = Some(digest);
                        ns.quarantined = quarantined;
                        up_to_date = ns.live_digest == Some(digest);
                        if up_to_date {
                            ns.live_generation = Some(generation);
                            ns.live_snapshot = Some(effective.clone());
                        }
                    }
                });
                if up_to_date {
                    state.last_good = Some(effective);
                    state.refused = None;
                    tracing::debug!(node = name, digest = %digest.short(), "node already runs this config");
                    return false;
                }
                if state.refused == Some(digest) {
                    tracing::debug!(node = name, digest = %digest.short(), "the node refused this very config; not sent again");
                    return false;
                }
                state.refused = None;
                true
            }
            Err(e) => {
                tracing::error!(node = name, error = %e, "render failed; the node keeps its current config");
                state.desired = None;
                let err = DeployError::Render {
                    node: name.to_owned(),
                    message: e.to_string(),
                };
                self.shared.status.send_modify(|s| {
                    if let Some(ns) = s.nodes.get_mut(name) {
                        ns.desired_digest = None;
                        ns.last_error = Some(err);
                    }
                });
                false
            }
        }
    }

    /// Deploys the current desired config to `names`; a node that refuses it has the services
    /// to blame quarantined and gets the rest at once (each round quarantines at least one
    /// more service, so this ends).
    async fn deploy(&mut self, mut names: Vec<String>) {
        while !names.is_empty() {
            // The configs are lent to the deployer, not copied (several MiB each at a few
            // thousand Services); each goes back to its node's desired state once settled.
            let batch: Vec<NodeConfig> = self
                .nodes
                .iter()
                .filter(|n| names.contains(&n.name))
                .filter_map(|n| {
                    let (config, _, _) = self.state.get_mut(&n.name)?.desired.as_mut()?;
                    Some(NodeConfig {
                        node: n.clone(),
                        config: RenderedConfig {
                            text: std::mem::take(&mut config.text),
                            digest: config.digest,
                        },
                    })
                })
                .collect();
            if batch.is_empty() {
                return;
            }
            let attempt = SystemTime::now();
            let mut reported: BTreeMap<String, NodeOutcome> = self
                .call_deployer(&batch, attempt)
                .await
                .into_iter()
                .map(|o| (o.node.clone(), o))
                .collect();
            names = Vec::new();
            for c in batch {
                let name = &c.node.name;
                let outcome = reported.remove(name).unwrap_or_else(|| {
                    NodeOutcome::failed(DeployError::Step {
                        node: name.clone(),
                        step: "deploy".into(),
                        message: "the deployer returned no outcome for this node".into(),
                    })
                });
                if self.settle(&c.node, &c.config, attempt, outcome.result) {
                    names.push(name.clone());
                }
                self.give_back(c);
            }
        }
    }

    /// Puts a config lent to the deployer back into its node's desired state, unless a new
    /// render (a quarantine while settling) replaced that meanwhile.
    fn give_back(&mut self, lent: NodeConfig) {
        if let Some((desired, _, _)) = self
            .state
            .get_mut(&lent.node.name)
            .and_then(|s| s.desired.as_mut())
            && desired.digest == lent.config.digest
            && desired.text.is_empty()
        {
            desired.text = lent.config.text;
        }
    }

    /// One deployer call under the concurrency bound; a call that runs longer than
    /// `slow_deploy_after` is reported (log, status) while the other lanes go on.
    async fn call_deployer(&self, batch: &[NodeConfig], attempt: SystemTime) -> Vec<NodeOutcome> {
        let names: Vec<&str> = batch.iter().map(|c| c.node.name.as_str()).collect();
        let _permit = self.shared.permits.acquire().await;
        self.set_deploying(&names, Some(attempt));
        let call = self.shared.deployer.deploy(batch);
        tokio::pin!(call);
        let slow = self.shared.config.slow_deploy_after;
        let outcomes = tokio::select! {
            outcomes = &mut call => outcomes,
            () = tokio::time::sleep(slow) => {
                tracing::warn!(nodes = ?names, after = ?slow, "deploy still running; the other edges are not held up (the deployer's own timeouts end it)");
                call.await
            }
        };
        self.set_deploying(&names, None);
        outcomes
    }

    fn set_deploying(&self, names: &[&str], since: Option<SystemTime>) {
        self.shared.status.send_modify(|s| {
            for name in names {
                if let Some(ns) = s.nodes.get_mut(*name) {
                    ns.deploying_since = since;
                }
            }
        });
    }

    /// Records `result` for `node`; `true` when a quarantine changed its config and it must
    /// be deployed again at once.
    fn settle(
        &mut self,
        node: &EdgeNode,
        config: &RenderedConfig,
        attempt: SystemTime,
        result: Result<Applied, DeployError>,
    ) -> bool {
        let name = node.name.as_str();
        let Some(state) = self.state.get_mut(name) else {
            return false;
        };
        // Not the config itself: the caller holds it (and it is several MiB).
        let Some((generation, rendered_from)) = state
            .desired
            .as_ref()
            .map(|(_, generation, from)| (*generation, from.clone()))
        else {
            return false;
        };
        if let Err(e) = &result
            && e.is_config_fault()
        {
            let blamed = culprits(
                &*self.shared.renderer,
                &rendered_from,
                state.last_good.as_deref(),
                node,
                config,
                e,
            );
            let fresh: BTreeSet<_> = blamed
                .into_iter()
                .filter(|k| !state.quarantine.contains(k))
                .collect();
            if !fresh.is_empty() {
                let target = self.target.as_ref().map(|t| t.snapshot.clone());
                for key in &fresh {
                    tracing::warn!(node = name, service = %key, error = %e, "service quarantined on this node: it keeps its last good config there (or is left out), the other services go out now");
                    if let Some(snapshot) = &target {
                        state.quarantine.add(key.clone(), snapshot, e.to_string());
                    }
                }
                state.refused = Some(config.digest);
                self.count_attempt(name, attempt, e.kind());
                return self.render(name);
            }
        }
        let received = self
            .target
            .as_ref()
            .filter(|t| t.generation == generation)
            .map(|t| t.received);
        let failures = match &result {
            Ok(_) => 0,
            Err(_) => state.failures + 1,
        };
        match &result {
            Ok(applied) => {
                if state.failures > 0 {
                    tracing::info!(node = name, digest = %config.digest.short(), %applied, failures = state.failures, "node back in sync after failures");
                } else {
                    tracing::info!(node = name, digest = %config.digest.short(), %applied, "node is live");
                }
                state.next_retry = None;
                state.refused = None;
                state.last_good = Some(rendered_from.clone());
            }
            Err(e) if e.is_config_fault() => {
                // Nothing to blame on one service: the same config would fail again.
                state.next_retry = None;
                state.refused = Some(config.digest);
                tracing::warn!(node = name, error = %e, failures, "the node refused the config and keeps its previous one; it is tried again when the input changes or at the next resync");
            }
            Err(e) => {
                let delay = self.shared.config.backoff(failures);
                state.next_retry = Some(Instant::now() + delay);
                tracing::warn!(node = name, error = %e, failures, retry_in = ?delay, "deploy failed");
            }
        }
        state.failures = failures;
        let digest = config.digest;
        self.shared.status.send_modify(|s| {
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
                    if ns.live_generation != Some(generation) {
                        ns.last_convergence = received.map(|r| Instant::now() - r);
                    }
                    ns.live_digest = Some(digest);
                    ns.live_generation = Some(generation);
                    ns.live_snapshot = Some(rendered_from);
                    ns.last_outcome = Some(applied);
                    ns.last_error = None;
                    ns.last_success = Some(SystemTime::now());
                    ns.consecutive_failures = 0;
                }
                Err(e) => {
                    ns.last_error = Some(e);
                    ns.consecutive_failures = failures;
                }
            }
        });
        false
    }

    /// Counts a deploy attempt whose refusal was settled by a quarantine: not a failure of
    /// the node, which gets the rest of the config at once.
    fn count_attempt(&self, name: &str, attempt: SystemTime, label: &str) {
        self.shared.status.send_modify(|s| {
            if let Some(ns) = s.nodes.get_mut(name) {
                ns.last_attempt = Some(attempt);
                ns.deploys += 1;
                *ns.results.entry(label.to_owned()).or_default() += 1;
            }
        });
    }

    /// Tries quarantined services again and compares every node's live digest with the
    /// desired one, redeploying where they differ.
    async fn resync(&mut self) {
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        let mut to_deploy = BTreeSet::new();
        for name in &names {
            let Some(state) = self.state.get_mut(name) else {
                continue;
            };
            let released = state.quarantine.release_all();
            let was_refused = state.refused.take().is_some();
            if released > 0 {
                tracing::info!(node = %name, services = released, "resync: trying quarantined services again");
            }
            if (released > 0 || was_refused) && self.render(name) {
                to_deploy.insert(name.clone());
            }
        }
        let checks: Vec<(EdgeNode, Digest)> = self
            .nodes
            .iter()
            .filter(|n| !to_deploy.contains(&n.name))
            .filter_map(|n| {
                let st = self.state.get(&n.name)?;
                if st.next_retry.is_some() {
                    return None; // a retry is already scheduled
                }
                Some((n.clone(), st.desired.as_ref()?.0.digest))
            })
            .collect();
        let shared = self.shared.clone();
        let reads = checks.into_iter().map(|(node, desired)| {
            let shared = shared.clone();
            async move {
                let _permit = shared.permits.acquire().await;
                let live = shared.deployer.live_digest(&node).await;
                (node.name, desired, live)
            }
        });
        for (name, desired, live) in futures::future::join_all(reads).await {
            match live {
                Ok(live) => {
                    self.shared.status.send_modify(|s| {
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
                        to_deploy.insert(name);
                    }
                }
                Err(e) => {
                    let config = self
                        .state
                        .get(&name)
                        .and_then(|s| s.desired.as_ref())
                        .map(|(c, _, _)| c.clone());
                    let lane_node = self.nodes.iter().find(|n| n.name == name).cloned();
                    if let (Some(config), Some(node)) = (config, lane_node) {
                        self.settle(&node, &config, SystemTime::now(), Err(e));
                    }
                }
            }
        }
        self.deploy(to_deploy.into_iter().collect()).await;
    }
}

/// Splits `nodes` into lanes of `batch_size` (at least 1).
pub(super) fn lanes(nodes: &[EdgeNode], batch_size: usize) -> Vec<Vec<EdgeNode>> {
    nodes
        .chunks(batch_size.max(1))
        .map(<[EdgeNode]>::to_vec)
        .collect()
}
