//! The pipeline: source → debounce → render per node → deploy changed nodes → retry, resync.
//!
//! The source side ([`Pipeline::run`]'s own loop) never waits for an edge: each node (or
//! batch of nodes, see `lane`) is kept in sync by its own task. A node that refuses a config
//! has the services to blame quarantined on it (see `quarantine`) and gets the rest at once.

mod config;
mod hold;
mod lane;
mod prober;
mod quarantine;
mod status;

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use config::PipelineConfig;
pub use status::{NodeStatus, PipelineStatus};

use crate::error::{Error, Result};
use crate::model::{ServiceKey, Snapshot};
use crate::node::EdgeNode;
use crate::traits::{Deployer, EndpointSource, HealthProbe, Renderer};
use lane::Target;

/// Keeps every edge node running the config rendered from the latest snapshot.
///
/// Partial success is the normal case: one dead, slow or hung node never blocks the others
/// (each runs on its own task); it is retried with capped exponential backoff, and a periodic
/// resync compares each node's live digest with the desired one and repairs drift. A node
/// that refuses a config (`haproxy -c`, a failed reload, a taken port) is never sent the same
/// config again in a loop: the services to blame ([`Renderer::blame`]) are quarantined on
/// that node and it gets everything else at once.
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
    status: Arc<watch::Sender<PipelineStatus>>,
    health_probe: Option<Arc<dyn HealthProbe>>,
}

/// The source side of a running pipeline: reads snapshots, debounces, applies the
/// empty-backend hold and hands each new desired state to the lanes, never waiting for one.
struct Run {
    /// Every node, for the placement check of each snapshot.
    nodes: Vec<EdgeNode>,
    config: PipelineConfig,
    status: Arc<watch::Sender<PipelineStatus>>,
    targets: watch::Sender<Option<Target>>,
    /// The desired state, shared with the status and the lanes (one copy, not one each).
    desired: Option<Arc<Snapshot>>,
    hold: hold::EmptyHold,
    /// A source snapshot to evaluate again when a backend's empty hold ends.
    recheck: Option<(Snapshot, Received, Instant)>,
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
            status: Arc::new(status),
            health_probe: None,
        })
    }

    /// Probes every node's health with `probe` (with [`PipelineConfig::health`]'s settings,
    /// unless they turn it off), so [`NodeStatus::health`] says which edges serve.
    pub fn with_health_probe(mut self, probe: Arc<dyn HealthProbe>) -> Self {
        self.health_probe = Some(probe);
        self
    }

    /// A receiver of the status, updated after every change.
    pub fn status(&self) -> watch::Receiver<PipelineStatus> {
        self.status.subscribe()
    }

    /// Runs until `shutdown` is cancelled. A deploy in flight when it is cancelled finishes
    /// first, so no node is left half-way.
    ///
    /// Each node (or each [`PipelineConfig::batch_size`] of nodes) is kept in sync by a task
    /// of its own: a slow, hung or failing edge holds up neither the source nor any other
    /// edge.
    pub async fn run<S: EndpointSource>(
        self,
        source: S,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let (targets, _) = watch::channel(None);
        let shared = Arc::new(lane::Shared {
            renderer: self.renderer,
            deployer: self.deployer,
            config: self.config.clone(),
            status: self.status.clone(),
            permits: Arc::new(Semaphore::new(self.config.max_concurrency.max(1))),
        });
        let mut tasks: Vec<_> = lane::lanes(&self.nodes, self.config.batch_size)
            .into_iter()
            .map(|nodes| {
                let lane = lane::Lane::new(nodes, shared.clone());
                tokio::spawn(lane.run(targets.subscribe(), shutdown.clone()))
            })
            .collect();
        if let Some(probe) = self.health_probe.filter(|_| self.config.health.enabled) {
            tasks.extend(self.nodes.iter().map(|node| {
                let run = prober::run(
                    node.clone(),
                    probe.clone(),
                    shared.clone(),
                    shutdown.clone(),
                );
                tokio::spawn(run)
            }));
        }
        let run = Run {
            nodes: self.nodes,
            config: self.config,
            status: self.status,
            targets,
            desired: None,
            hold: hold::EmptyHold::default(),
            recheck: None,
        };
        run.run(source, shutdown).await;
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a node's deploy or health task ended abnormally");
            }
        }
        tracing::info!("pipeline stopped");
        Ok(())
    }
}

impl Run {
    async fn run<S: EndpointSource>(mut self, source: S, shutdown: CancellationToken) {
        let cfg = self.config.clone();
        let mut snapshots = source.snapshots();
        let mut source_done = false;
        let mut pending: Option<(Snapshot, Received)> = None;
        let mut pending_since = Instant::now();
        let mut apply_at = Instant::now();

        loop {
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
                        self.status.send_modify(|s| s.source_error = Some(e.to_string()));
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
                        self.apply_snapshot(snapshot, received);
                    }
                }
                () = sleep_until_opt(recheck_at), if recheck_at.is_some() => {
                    if let Some((snapshot, received, _)) = self.recheck.take() {
                        self.apply_snapshot(snapshot, received);
                    }
                }
            }
        }
    }

    fn apply_snapshot(&mut self, incoming: Snapshot, received: Received) {
        if let Err(e) = incoming.validate_on(&self.nodes) {
            tracing::error!(error = %e, "snapshot rejected; keeping the last good state");
            self.status
                .send_modify(|s| s.source_error = Some(e.to_string()));
            return;
        }
        let hold = self.config.empty_backend_hold;
        // Only what runs somewhere is worth holding: a service no edge ever took (refused
        // everywhere, say) leaves at once.
        let live_anywhere: BTreeSet<ServiceKey> = {
            let status = self.status.borrow();
            status
                .nodes
                .values()
                .filter_map(|n| n.live_snapshot.as_ref())
                .flat_map(|s| s.services.keys().cloned())
                .collect()
        };
        let held = self.hold.apply(
            self.desired.as_deref(),
            &incoming,
            hold,
            Instant::now(),
            &live_anywhere,
            &self.nodes,
        );
        let held_names: Vec<String> = held.held.keys().map(|(k, p)| format!("{k}:{p}")).collect();
        let held_until = held.held.values().min().copied();
        // Restoring held backends makes a new snapshot; otherwise the incoming one is used
        // as it is, without a copy.
        let restored = match held.effective {
            Cow::Owned(restored) => Some(restored),
            Cow::Borrowed(_) => None,
        };
        let snapshot = if let Some(until) = held_until {
            tracing::warn!(
                backends = ?held_names,
                hold = ?hold,
                "the source empties backends that have endpoints; they keep their endpoints until that has lasted the hold time"
            );
            let snapshot = restored.unwrap_or_else(|| incoming.clone());
            self.recheck = Some((incoming, received, until));
            snapshot
        } else {
            restored.unwrap_or(incoming)
        };
        self.status.send_if_modified(|s| {
            let changed = s.held_backends != held_names;
            s.held_backends = held_names;
            changed
        });
        if self.desired.as_deref() == Some(&snapshot) {
            tracing::debug!("snapshot equals the current desired state; dropped");
            // A good snapshot after an error says the source has recovered.
            self.status
                .send_if_modified(|s| s.source_error.take().is_some());
            return;
        }
        let shared = Arc::new(snapshot);
        self.desired = Some(shared.clone());
        let mut generation = 0;
        self.status.send_modify(|s| {
            s.generation += 1;
            generation = s.generation;
            s.snapshot = Some(shared.clone());
            s.snapshot_received_at = Some(received.wall);
            if s.source_error.take().is_some() {
                tracing::info!("endpoint source usable again");
            }
        });
        tracing::info!(
            generation,
            services = shared.services.len(),
            endpoints = shared.endpoint_count(),
            "new desired state"
        );
        self.targets.send_replace(Some(Target {
            generation,
            snapshot: shared,
            received: received.at,
        }));
    }
}

pub(super) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod placement_tests;
#[cfg(test)]
mod tests;
