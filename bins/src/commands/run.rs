//! `edgelb run`: the controller: source → pipeline → deployer, with health and metrics,
//! Service status and Events (LoadBalancer mode) and leader election, until SIGTERM/Ctrl-C.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use edgelb_core::{CancellationToken, Deployer, Pipeline, PipelineStatus};
use edgelb_haproxy::{HaproxyRenderer, StatsSource};
use edgelb_kube::{DnsEndpointWriter, LeaderElector, StatusWriter};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::KubeContext;
use super::run_edges::{Ended, ResourceEdges};
use crate::config::LoadedConfig;
use crate::error::{Error, Result};
use crate::observe::edge_poller::{self, PollContext, PollSettings};
use crate::observe::metrics::Metrics;
use crate::observe::server::{Observed, serve, track};

/// Runs until a shutdown signal; the deploy in flight then finishes, the Lease is released,
/// and the process exits 0. Losing the Lease stops deploying at once and exits non-zero, so
/// the restarted process waits as a standby.
pub async fn run(loaded: LoadedConfig, http_listen: Option<SocketAddr>) -> Result<()> {
    let config = loaded.config.clone();
    let kube = KubeContext::connect_if_needed(&loaded).await?;
    let renderer = super::renderer(&loaded)?;
    let super::Deployers {
        deployer,
        probe,
        stats,
        local,
    } = super::deployer_and_probe(&loaded)?;
    let seed = SlotSeed {
        renderer: renderer.clone(),
        deployer: deployer.clone(),
    };
    let pipeline_config = config.pipeline.to_pipeline_config(
        config.deployer.batch_size(),
        config.health.to_health_config(),
    );
    let (status, mut edges) = if config.edge_resources.is_some() {
        // The pipelines come and go with the EdgeNodes; their status is forwarded here.
        let (tx, rx) = watch::channel(PipelineStatus::default());
        let resources = ResourceEdges {
            renderer,
            deployer,
            probe,
            status: Arc::new(tx),
            pipeline: pipeline_config,
            edge_stats: None,
        };
        (rx, Edges::Resources(resources))
    } else {
        let mut pipeline =
            Pipeline::new(renderer, deployer, config.edges.clone(), pipeline_config)?;
        if let Some(probe) = probe {
            pipeline = pipeline.with_health_probe(probe);
        }
        (pipeline.status(), Edges::Fixed(pipeline))
    };
    tokio::spawn(report_progress(status.clone()));

    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            crate::shutdown_signal().await;
            shutdown.cancel();
        }
    });

    let election = Election::start(&loaded, kube.as_ref())?;
    let http_stop = CancellationToken::new();
    let metrics = Arc::new(Mutex::new(Metrics::new()));
    let polling = edge_stats(&loaded, stats, &status, &election, &metrics);
    let pollers = match (&mut edges, polling) {
        // With EdgeNode resources, each pipeline starts the pollers of its edges.
        (Edges::Resources(resources), polling) => {
            resources.edge_stats = polling;
            Vec::new()
        }
        (Edges::Fixed(_), Some((context, settings))) => {
            edge_poller::spawn(&context, &config.edges, &settings, &http_stop)
        }
        (Edges::Fixed(_), None) => Vec::new(),
    };
    let http = start_http(
        &loaded,
        http_listen,
        &status,
        election.leader.clone(),
        metrics,
        &http_stop,
    )
    .await?;
    tracing::info!(config = %loaded.path.display(), edges = config.edges.len(), "edgelb running");

    let result = lead(loaded, edges, seed, kube, &election, &shutdown).await;
    if result.is_err()
        && let Some(local) = &local
    {
        // A lost Lease (or any failure) ends this process, not the data plane: the haproxy
        // it started keeps serving its last config, and the next run (or the new leader on
        // this host) deploys to it. Only a deliberate shutdown (SIGTERM, Ctrl-C) stops it.
        local.release_haproxy().await;
    }

    election.stop().await;
    http_stop.cancel();
    if let Some(http) = http {
        let _ = http.await;
    }
    for poller in pollers {
        let _ = poller.await;
    }
    result
}

/// What the stats pollers (one per edge, `edge_stats:`) need, when they are on and the
/// deployer holds sessions.
fn edge_stats(
    loaded: &LoadedConfig,
    source: Option<Arc<dyn StatsSource>>,
    status: &watch::Receiver<PipelineStatus>,
    election: &Election,
    metrics: &Arc<Mutex<Metrics>>,
) -> Option<(PollContext, PollSettings)> {
    let config = &loaded.config;
    let source = source.filter(|_| config.edge_stats.enabled)?;
    let store = metrics
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .traffic_store();
    let context = PollContext {
        source,
        status: status.clone(),
        leader: election.leader.clone(),
        store,
    };
    let settings = PollSettings {
        interval: config.edge_stats.interval,
        timeout: config.edge_stats.timeout,
        stats_socket: config.haproxy.stats_socket.clone(),
    };
    Some((context, settings))
}

/// The edges: a fixed list (`edges:`), or EdgeNode resources (`edge_resources:`).
enum Edges {
    Fixed(Pipeline),
    Resources(ResourceEdges),
}

/// What the leader seeds the renderer's server slots with before its first deploy.
struct SlotSeed {
    renderer: Arc<HaproxyRenderer>,
    deployer: Arc<dyn Deployer>,
}

/// Waits for leadership, seeds the server slots from the edges (which another leader may have
/// changed meanwhile), then runs the pipeline until shutdown or lost leadership.
async fn lead(
    loaded: LoadedConfig,
    edges: Edges,
    seed: SlotSeed,
    kube: Option<KubeContext>,
    election: &Election,
    shutdown: &CancellationToken,
) -> Result<()> {
    let config = loaded.config;
    let term = tokio::select! {
        term = election.acquired() => term,
        () = shutdown.cancelled() => return Ok(()),
    };
    let Some(term) = term else {
        return Err(Error::Setup(
            "leader election stopped before this replica led".into(),
        ));
    };
    let pipeline = match edges {
        Edges::Fixed(pipeline) => pipeline,
        Edges::Resources(resources) => {
            let kube = kube
                .as_ref()
                .ok_or_else(|| Error::Setup("edge_resources needs a cluster connection".into()))?;
            return match resources.lead(&config, kube, &term, shutdown).await? {
                Ended::Signalled => Ok(()),
                Ended::LostLease => Err(lost_lease()),
            };
        }
    };
    // Stops when leadership ends or on shutdown; either way the deploy in flight finishes.
    let stop = term.child_token();
    tokio::select! {
        _ = seed.renderer.seed_slots_from_edges(
            seed.deployer.as_ref(),
            &config.edges,
            edgelb_haproxy::SLOT_SEED_TIMEOUT,
        ) => {}
        () = stop.cancelled() => {}
        () = shutdown.cancelled() => return Ok(()),
    }
    let writer = match (&kube, config.source.is_load_balancer()) {
        (Some(k), true) => {
            let writer = StatusWriter::new(k.client.clone(), config.edges.clone())
                .with_config(config.source.status_config())
                .with_events(k.events.clone());
            Some(tokio::spawn(writer.run(pipeline.status(), stop.clone())))
        }
        _ => None,
    };
    let dns = match (&kube, &config.dns_endpoint) {
        (Some(k), Some(dns)) => {
            let writer =
                DnsEndpointWriter::new(k.client.clone(), config.edges.clone(), dns.to_config())?;
            Some(tokio::spawn(writer.run(pipeline.status(), stop.clone())))
        }
        _ => None,
    };
    let writers: Vec<_> = writer.into_iter().chain(dns).collect();
    let source = config.source.into_source(
        kube.as_ref().map(KubeContext::parts),
        config.limits.endpoints_file_bytes,
        &config.edges,
    )?;
    let mut run = tokio::spawn(pipeline.run(source, stop.clone()));
    // Biased: losing the lease cancels `stop` too, so the pipeline may have finished by the
    // time this is polled; the lost lease (or the signal) must still win over a pipeline
    // that merely stopped, or a lost lease would exit 0 without saying so.
    let signalled = tokio::select! {
        biased;
        () = shutdown.cancelled() => true,
        () = term.cancelled() => false,
        done = &mut run => { stop.cancel(); finish_writers(writers).await; return flatten(done); }
    };
    if signalled {
        tracing::info!("shutting down; letting the deploy in flight finish");
    } else {
        tracing::error!("lost the leader lease; stopped deploying");
    }
    stop.cancel();
    let result = flatten(run.await);
    finish_writers(writers).await;
    result?;
    if signalled { Ok(()) } else { Err(lost_lease()) }
}

fn lost_lease() -> Error {
    Error::Setup(
        "lost the leader lease; exiting so that the restarted process waits as a standby".into(),
    )
}

/// Waits for the status and DNSEndpoint writers (cancelled with the pipeline).
async fn finish_writers(writers: Vec<JoinHandle<edgelb_kube::Result<()>>>) {
    for writer in writers {
        if let Ok(Err(e)) = writer.await {
            tracing::warn!(error = %e, "a status or DNSEndpoint writer stopped with an error");
        }
    }
}

/// Leader election, or a replica that always leads.
struct Election {
    leader: watch::Receiver<bool>,
    elector: Option<(
        edgelb_kube::Leadership,
        CancellationToken,
        JoinHandle<edgelb_kube::Result<()>>,
    )>,
    /// Held so the always-leader channel stays open.
    _always: Option<watch::Sender<bool>>,
}

impl Election {
    fn start(loaded: &LoadedConfig, kube: Option<&KubeContext>) -> Result<Self> {
        let (settings, kube) = match (&loaded.config.leader_election, kube) {
            (Some(settings), Some(kube)) => (settings, kube),
            _ => {
                let (tx, rx) = watch::channel(true);
                return Ok(Self {
                    leader: rx,
                    elector: None,
                    _always: Some(tx),
                });
            }
        };
        let config = settings.to_config().map_err(|e| Error::Config {
            path: loaded.path.clone(),
            message: e,
        })?;
        tracing::info!(lease = %config.lease_name, namespace = %config.namespace, identity = %config.identity, "leader election on");
        let elector = LeaderElector::new(kube.client.clone(), config)?;
        let leadership = elector.leadership();
        let stop = CancellationToken::new();
        let task = tokio::spawn(elector.run(stop.clone()));
        Ok(Self {
            leader: leadership.receiver(),
            elector: Some((leadership, stop, task)),
            _always: None,
        })
    }

    /// A token cancelled when leadership ends; `None` if election stopped first.
    async fn acquired(&self) -> Option<CancellationToken> {
        match &self.elector {
            Some((leadership, ..)) => leadership.clone().acquired().await,
            None => Some(CancellationToken::new()),
        }
    }

    /// Releases the Lease (after the pipeline has stopped).
    async fn stop(self) {
        if let Some((leadership, stop, task)) = self.elector {
            // The elector releases the Lease only if it still holds it.
            let leading = leadership.is_leader();
            stop.cancel();
            match task.await {
                Ok(Err(e)) => tracing::warn!(error = %e, "releasing the leader lease failed"),
                Err(e) => tracing::warn!(error = %e, "the leader election task failed"),
                Ok(Ok(())) if leading => tracing::info!("leader lease released"),
                Ok(Ok(())) => tracing::info!("leader election stopped"),
            }
        }
    }
}

async fn start_http(
    loaded: &LoadedConfig,
    listen_override: Option<SocketAddr>,
    status: &watch::Receiver<PipelineStatus>,
    leader: watch::Receiver<bool>,
    metrics: Arc<Mutex<Metrics>>,
    stop: &CancellationToken,
) -> Result<Option<JoinHandle<std::io::Result<()>>>> {
    let observed = Observed {
        status: status.clone(),
        leader,
        metrics,
        ready_quorum: loaded.config.http.ready_quorum,
    };
    tokio::spawn(track(observed.clone()));
    let Some(listen) = listen_override.or(loaded.config.http.listen) else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Io {
            context: format!(
                "listening on {listen} for /healthz, /readyz and /metrics (http.listen)"
            ),
            source: e,
        })?;
    Ok(Some(tokio::spawn(serve(listener, observed, stop.clone()))))
}

fn flatten(joined: Result<edgelb_core::Result<()>, tokio::task::JoinError>) -> Result<()> {
    match joined {
        Ok(result) => Ok(result?),
        Err(e) => Err(Error::Setup(format!("the pipeline task failed: {e}"))),
    }
}

/// Logs one line whenever the number of edges in sync changes.
async fn report_progress(mut status: watch::Receiver<PipelineStatus>) {
    let mut last = (0, 0);
    while status.changed().await.is_ok() {
        let (generation, in_sync, total) = {
            let s = status.borrow();
            (s.generation, s.nodes_in_sync(), s.nodes.len())
        };
        if (generation, in_sync) != last && generation > 0 {
            last = (generation, in_sync);
            tracing::info!(generation, "{in_sync}/{total} edges run the current config");
        }
    }
}
