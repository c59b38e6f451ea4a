//! `edgelb run` with `edge_resources:`: the edges are EdgeNode resources (pools from
//! EdgePools), watched while this replica leads.
//!
//! The pipeline deploys to a fixed set of edges, so a change of that set (an EdgeNode added,
//! removed or edited, a pool's selector changed) restarts it: after `restart_debounce` of
//! quiet, the running pipeline is stopped the way a shutdown stops it (the deploys in flight
//! finish) and a new one starts with the new set. The edges keep serving meanwhile (HAProxy
//! runs on); the new pipeline finds the unchanged edges' live digests equal to the desired
//! ones and leaves them alone. The cost of a restart: the source lists its Services and
//! EndpointSlices again, and each edge's status (health, counters) starts over, so an edge
//! reads "not in sync" until the new pipeline has checked it; the edges' stats pollers start
//! over with it.

use std::collections::BTreeMap;
use std::sync::Arc;

use edgelb_core::{
    CancellationToken, Deployer, EdgeNode, HealthProbe, NodeStatus, Pipeline, PipelineConfig,
    PipelineStatus,
};
use edgelb_haproxy::HaproxyRenderer;
use edgelb_kube::crd::{EdgeResourceSource, NodeCheck, NodeSet, NodeStatusWriter};
use edgelb_kube::{DnsEndpointWriter, StatusWriter};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::KubeContext;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::observe::edge_poller::{self, PollContext, PollSettings};

/// What a replica needs to run pipelines on the EdgeNode resources.
pub struct ResourceEdges {
    /// Shared by every pipeline, so the server slots survive a restart.
    pub renderer: Arc<HaproxyRenderer>,
    /// The deployer.
    pub deployer: Arc<dyn Deployer>,
    /// The health probe, if the deployer probes.
    pub probe: Option<Arc<dyn HealthProbe>>,
    /// Where every pipeline's status is forwarded (what /metrics and /readyz read).
    pub status: Arc<watch::Sender<PipelineStatus>>,
    /// The pipeline's settings.
    pub pipeline: PipelineConfig,
    /// The edges' stats pollers, started with each pipeline for its edges.
    pub edge_stats: Option<(PollContext, PollSettings)>,
}

/// How one leadership term ended.
pub enum Ended {
    /// Shutdown signal.
    Signalled,
    /// The Lease was lost.
    LostLease,
}

/// The check each EdgeNode passes besides its own validation: what the renderer accepts.
pub fn node_check(config: &Config) -> NodeCheck {
    let haproxy = config.haproxy.clone();
    Arc::new(move |node: &EdgeNode| haproxy.validate_node(node).map_err(|e| e.to_string()))
}

/// One running pipeline and the writers that follow it.
struct Running {
    nodes: Vec<EdgeNode>,
    stop: CancellationToken,
    pipeline: JoinHandle<edgelb_core::Result<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops the pipeline (the deploys in flight finish) and its writers.
    async fn stop(self) -> Result<()> {
        self.stop.cancel();
        let result = match self.pipeline.await {
            Ok(result) => result.map_err(Error::from),
            Err(e) => Err(Error::Setup(format!("the pipeline task failed: {e}"))),
        };
        for task in self.tasks {
            let _ = task.await;
        }
        result
    }
}

impl ResourceEdges {
    /// Watches the EdgeNodes and runs a pipeline on them until `term` ends or `shutdown`.
    pub async fn lead(
        self,
        config: &Config,
        kube: &KubeContext,
        term: &CancellationToken,
        shutdown: &CancellationToken,
    ) -> Result<Ended> {
        let Some(settings) = &config.edge_resources else {
            return Err(Error::Setup("edge_resources is not set".into()));
        };
        let namespace = settings.namespace();
        let (nodes_tx, mut nodes) = watch::channel(None);
        let watch_stop = term.child_token();
        // The watcher and the status writer stop however this returns.
        let _stop_watching = watch_stop.clone().drop_guard();
        let source = EdgeResourceSource::new(kube.client.clone(), &namespace)
            .with_events(kube.events.clone())
            .with_check(node_check(config));
        let watcher = tokio::spawn(source.run(nodes_tx, watch_stop.clone()));
        let status_writer = tokio::spawn({
            let writer = NodeStatusWriter::new(kube.client.clone(), &namespace);
            let run = writer.run(nodes.clone(), self.status.subscribe(), watch_stop.clone());
            async move {
                if let Err(e) = run.await {
                    tracing::warn!(error = %e, "the EdgeNode status writer stopped");
                }
            }
        });
        tracing::info!(%namespace, "reading the edges from EdgeNode and EdgePool resources");

        let mut running: Option<Running> = None;
        let mut seeded = false;
        let ended = loop {
            if shutdown.is_cancelled() {
                break Ended::Signalled;
            }
            if term.is_cancelled() {
                break Ended::LostLease;
            }
            // The node set to run now, once it has settled.
            let wanted = current_nodes(&nodes);
            let restart = match (&running, &wanted) {
                (Some(r), Some(w)) => r.nodes != *w,
                (None, Some(w)) => !w.is_empty(),
                (Some(_), None) => false,
                (None, None) => false,
            };
            if restart && let Some(wanted) = wanted {
                if let Some(r) = running.take() {
                    tracing::info!(
                        from = ?r.nodes.iter().map(|n| &n.name).collect::<Vec<_>>(),
                        to = ?wanted.iter().map(|n| &n.name).collect::<Vec<_>>(),
                        "the edges changed; restarting the pipeline (the deploys in flight finish first)"
                    );
                    r.stop().await?;
                }
                if wanted.is_empty() {
                    tracing::warn!(%namespace, "no usable EdgeNode; nothing is deployed until one is");
                } else {
                    if !seeded {
                        seeded = true;
                        tokio::select! {
                            _ = self.renderer.seed_slots_from_edges(
                                self.deployer.as_ref(),
                                &wanted,
                                edgelb_haproxy::SLOT_SEED_TIMEOUT,
                            ) => {}
                            () = term.cancelled() => break Ended::LostLease,
                            () = shutdown.cancelled() => break Ended::Signalled,
                        }
                    }
                    running = Some(self.start(config, kube, wanted, term)?);
                }
            }
            let pipeline_done = async {
                match &mut running {
                    Some(r) => (&mut r.pipeline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break Ended::Signalled,
                () = term.cancelled() => break Ended::LostLease,
                done = pipeline_done => {
                    match done {
                        Ok(Ok(())) => return Err(Error::Setup("the pipeline stopped on its own".into())),
                        Ok(Err(e)) => return Err(e.into()),
                        Err(e) => return Err(Error::Setup(format!("the pipeline task failed: {e}"))),
                    }
                }
                changed = nodes.changed() => {
                    if changed.is_err() {
                        return Err(Error::Setup("the EdgeNode watcher stopped".into()));
                    }
                    // Debounce: wait for a quiet spell before acting on the new set (not
                    // for the first one: nothing runs yet).
                    while running.is_some() {
                        tokio::select! {
                            () = tokio::time::sleep(settings.restart_debounce) => break,
                            changed = nodes.changed() => if changed.is_err() { break },
                            () = shutdown.cancelled() => break,
                            () = term.cancelled() => break,
                        }
                    }
                }
            }
        };
        match ended {
            Ended::Signalled => {
                tracing::info!("shutting down; letting the deploy in flight finish")
            }
            Ended::LostLease => tracing::error!("lost the leader lease; stopped deploying"),
        }
        let result = match running {
            Some(r) => r.stop().await,
            None => Ok(()),
        };
        watch_stop.cancel();
        let _ = watcher.await;
        let _ = status_writer.await;
        result.map(|()| ended)
    }

    /// Starts a pipeline on `nodes`, with its Service status and DNSEndpoint writers.
    fn start(
        &self,
        config: &Config,
        kube: &KubeContext,
        nodes: Vec<EdgeNode>,
        term: &CancellationToken,
    ) -> Result<Running> {
        let mut pipeline = Pipeline::new(
            self.renderer.clone(),
            self.deployer.clone(),
            nodes.clone(),
            self.pipeline.clone(),
        )?;
        if let Some(probe) = &self.probe {
            pipeline = pipeline.with_health_probe(probe.clone());
        }
        let stop = term.child_token();
        // What the pipelines before counted, so the counters behind /metrics never go back.
        let counted: BTreeMap<String, NodeStatus> = self.status.borrow().nodes.clone();
        let mut tasks = vec![tokio::spawn(forward(
            pipeline.status(),
            self.status.clone(),
            counted,
            stop.clone(),
        ))];
        if config.source.is_load_balancer() {
            let writer = StatusWriter::new(kube.client.clone(), nodes.clone())
                .with_events(kube.events.clone());
            tasks.push(spawn_logged(writer.run(pipeline.status(), stop.clone())));
        }
        if let Some(dns) = &config.dns_endpoint {
            let writer =
                DnsEndpointWriter::new(kube.client.clone(), nodes.clone(), dns.to_config())?;
            tasks.push(spawn_logged(writer.run(pipeline.status(), stop.clone())));
        }
        if let Some((context, settings)) = &self.edge_stats {
            tasks.extend(edge_poller::spawn(context, &nodes, settings, &stop));
        }
        let source = config
            .source
            .clone()
            // The source knows the edges, so a Service's pool is checked against them.
            .into_source(
                Some(kube.parts()),
                config.limits.endpoints_file_bytes,
                &nodes,
            )?;
        tracing::info!(
            edges = ?nodes.iter().map(|n| &n.name).collect::<Vec<_>>(),
            "pipeline started on the EdgeNode resources"
        );
        let pipeline = tokio::spawn(pipeline.run(source, stop.clone()));
        Ok(Running {
            nodes,
            stop,
            pipeline,
            tasks,
        })
    }
}

/// The valid nodes of the current set; `None` before the first list.
fn current_nodes(nodes: &watch::Receiver<Option<NodeSet>>) -> Option<Vec<EdgeNode>> {
    nodes.borrow().as_ref().map(|set| set.nodes.clone())
}

fn spawn_logged(
    run: impl Future<Output = edgelb_kube::Result<()>> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = run.await {
            tracing::warn!(error = %e, "a status or DNSEndpoint writer stopped with an error");
        }
    })
}

/// Copies one pipeline's status into the long-lived channel until `stop`, each edge's
/// counters (deploys, results, health transitions) added to what earlier pipelines counted.
async fn forward(
    mut from: watch::Receiver<PipelineStatus>,
    to: Arc<watch::Sender<PipelineStatus>>,
    counted: BTreeMap<String, NodeStatus>,
    stop: CancellationToken,
) {
    loop {
        let current = with_counts(from.borrow_and_update().clone(), &counted);
        to.send_replace(current);
        tokio::select! {
            () = stop.cancelled() => break,
            changed = from.changed() => if changed.is_err() { break },
        }
    }
    // The last word of a stopping pipeline (its deploys in flight finished).
    let last = with_counts(from.borrow().clone(), &counted);
    to.send_replace(last);
}

/// `status` with the counters of `before` added, per edge.
fn with_counts(
    mut status: PipelineStatus,
    before: &BTreeMap<String, NodeStatus>,
) -> PipelineStatus {
    for (name, node) in &mut status.nodes {
        if let Some(old) = before.get(name) {
            node.deploys += old.deploys;
            node.health_transitions += old.health_transitions;
            for (result, count) in &old.results {
                *node.results.entry(result.clone()).or_default() += count;
            }
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_carry_over_a_restart() {
        let mut old = NodeStatus {
            deploys: 5,
            health_transitions: 2,
            ..NodeStatus::default()
        };
        old.results.insert("connect".into(), 5);
        let before: BTreeMap<String, NodeStatus> = [("edge-1".to_owned(), old)].into();
        let mut now = NodeStatus {
            deploys: 1,
            ..NodeStatus::default()
        };
        now.results.insert("reloaded".into(), 1);
        let mut status = PipelineStatus::default();
        status.nodes.insert("edge-1".into(), now);
        status.nodes.insert("edge-2".into(), NodeStatus::default());
        let merged = with_counts(status, &before);
        let edge = &merged.nodes["edge-1"];
        assert_eq!((edge.deploys, edge.health_transitions), (6, 2));
        assert_eq!(edge.results["connect"], 5);
        assert_eq!(edge.results["reloaded"], 1);
        assert_eq!(merged.nodes["edge-2"].deploys, 0);
    }
}
