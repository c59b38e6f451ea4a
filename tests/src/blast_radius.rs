//! The blast radius of a failure, measured on the testbed with the real pipeline and the
//! native SSH deployer: what a bad Service does to the other Services' traffic, and what a
//! cut or lossy edge does to the other edges' changes. Shared by the `failure_isolation`
//! tests (which assert on the figures) and the `blast_radius` bench (which prints them).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgelb_core::{
    CancellationToken, ChannelSource, Endpoint, Pipeline, PipelineConfig, PipelineStatus, PortSpec,
    ProxyProtocol, ServiceKey, Snapshot, SnapshotSender,
};
use edgelb_haproxy::SshDeployer;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::testbed::scenario::{LISTEN_PORT, fast_pipeline, renderer, web_snapshot};
use crate::testbed::{Probe, Testbed};

/// The real pipeline over a testbed's edges with the SSH deployer.
pub struct Running {
    /// Feeds snapshots.
    pub tx: SnapshotSender,
    /// The pipeline's status.
    pub status: watch::Receiver<PipelineStatus>,
    stop: CancellationToken,
    run: tokio::task::JoinHandle<edgelb_core::Result<()>>,
}

impl Running {
    /// Starts it.
    pub fn start(tb: &Testbed, config: PipelineConfig) -> Self {
        let deployer = SshDeployer::new(tb.deployer_config()).expect("deployer config is valid");
        let pipeline = Pipeline::new(Arc::new(renderer()), Arc::new(deployer), tb.nodes(), config)
            .expect("pipeline config is valid");
        Self::run(pipeline)
    }

    /// Starts it with `deployer` as the edges' health probe too.
    pub fn start_with_probe(
        tb: &Testbed,
        config: PipelineConfig,
        deployer: Arc<SshDeployer>,
    ) -> Self {
        let pipeline = Pipeline::new(Arc::new(renderer()), deployer.clone(), tb.nodes(), config)
            .expect("pipeline config is valid")
            .with_health_probe(deployer);
        Self::run(pipeline)
    }

    fn run(pipeline: Pipeline) -> Self {
        let status = pipeline.status();
        let (source, tx) = ChannelSource::new();
        let stop = CancellationToken::new();
        let run = tokio::spawn(pipeline.run(source, stop.clone()));
        Self {
            tx,
            status,
            stop,
            run,
        }
    }

    /// Waits until `cond` holds, or panics after `timeout` with the status.
    pub async fn wait(
        &mut self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&PipelineStatus) -> bool,
    ) -> PipelineStatus {
        let reached = match tokio::time::timeout(timeout, self.status.wait_for(|s| cond(s))).await {
            Ok(Ok(s)) => Some(s.clone()),
            _ => None,
        };
        reached.unwrap_or_else(|| {
            panic!(
                "timed out after {timeout:?} waiting for {what}; status: {:#?}",
                *self.status.borrow()
            )
        })
    }

    /// Stops it (the deploys in flight finish first).
    pub async fn finish(self) {
        self.stop.cancel();
        self.run
            .await
            .expect("pipeline task")
            .expect("pipeline ran");
    }
}

/// The key of the Service on a taken port.
pub fn sshlike_key() -> ServiceKey {
    ServiceKey::new("default", "sshlike").expect("valid key")
}

/// `snapshot` plus `default/sshlike` port `ssh` listening on `listen` (PROXY v2).
pub fn with_sshlike(mut snapshot: Snapshot, listen: u16, tb: &Testbed) -> Snapshot {
    let b = tb.cluster.backends[1].addr;
    snapshot
        .insert_port(
            sshlike_key(),
            "ssh",
            PortSpec::new(listen, ProxyProtocol::V2)
                .with_endpoint(Endpoint::ready(b.ip(), b.port())),
        )
        .expect("valid port");
    snapshot
}

/// What [`taken_port`] saw.
#[derive(Debug)]
pub struct TakenPort {
    /// Connections made through the edges to the web port, and how many failed.
    pub connections: usize,
    /// The failed ones, per edge.
    pub failed: Vec<Vec<Probe>>,
    /// Failed reloads per edge during the run (HAProxy's master counts them).
    pub failed_reloads: Vec<u32>,
    /// Per edge, how long after it was sent the web Service's endpoint change answered there
    /// (`None`: never, within the phase).
    pub web_change_live: Vec<Option<Duration>>,
    /// The pipeline's status once every edge settled with the bad Service in the desired
    /// state.
    pub status_with_bad: PipelineStatus,
    /// The pipeline's status once every edge settled after the bad Service left.
    pub status_at_end: PipelineStatus,
}

/// Web on [`LISTEN_PORT`] through the testbed's 2 edges under a bounded load loop for `secs`;
/// a Service on port 22 (sshd's, on every edge) joins; a third of the way in, web's endpoint
/// moves from b1 to b2; two thirds in, the bad Service leaves. `config` is the pipeline's.
pub async fn taken_port(tb: &Testbed, secs: u64, config: PipelineConfig) -> TakenPort {
    let mut p = Running::start(tb, config);
    let [b1, b2] = [&tb.cluster.backends[0], &tb.cluster.backends[1]];
    let edges = tb.edges.len();
    p.tx.send(web_snapshot(&[b1])).expect("pipeline runs");
    p.wait("every edge live", Duration::from_secs(30), |s| {
        s.nodes_in_sync() == edges
    })
    .await;
    let before: Vec<_> = tb
        .edges
        .iter()
        .map(|e| e.show_proc(&tb.tools.tb_client))
        .collect();
    let started = Instant::now();
    let phase = Duration::from_secs(secs) / 3;
    let interval_ms = 20;
    let count = u32::try_from(secs * 1000 / interval_ms).unwrap_or(u32::MAX);
    let loads: Vec<_> = (0..edges)
        .map(|i| {
            tb.client
                .start_load(tb.edge_addr(i, LISTEN_PORT), count, interval_ms)
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let with_bad = with_sshlike(web_snapshot(&[b1]), 22, tb);
    p.tx.send(with_bad.clone()).expect("pipeline runs");
    // Bounded waits for what the pipeline must reach, not fixed sleeps: a loaded machine is
    // slower, never wrong.
    let status_with_bad = p
        .wait(
            "every edge settled with the bad Service",
            Duration::from_secs(30),
            |s| s.snapshot.as_deref() == Some(&with_bad) && s.nodes_in_sync() == edges,
        )
        .await;
    tokio::time::sleep_until(started + phase).await;

    p.tx.send(with_sshlike(web_snapshot(&[b2]), 22, tb))
        .expect("pipeline runs");
    let sent = Instant::now();
    let mut web_change_live = vec![None; edges];
    let window = (2 * phase).max(phase + Duration::from_secs(30));
    while Instant::now() < started + window && web_change_live.iter().any(Option::is_none) {
        for (i, live) in web_change_live.iter_mut().enumerate() {
            if live.is_none()
                && tb
                    .client
                    .probe(tb.edge_addr(i, LISTEN_PORT))
                    .await
                    .backend()
                    == Some("b2")
            {
                *live = Some(sent.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep_until(started + 2 * phase).await;

    let without_bad = web_snapshot(&[b2]);
    p.tx.send(without_bad.clone()).expect("pipeline runs");
    let status_at_end = p
        .wait(
            "every edge settled without the bad Service",
            Duration::from_secs(30),
            |s| s.snapshot.as_deref() == Some(&without_bad) && s.nodes_in_sync() == edges,
        )
        .await;
    let mut failed = Vec::new();
    let mut connections = 0;
    for load in loads {
        let probes = load.finish().await;
        connections += probes.len();
        failed.push(
            probes
                .into_iter()
                .filter(|p| matches!(p, Probe::Failed(_)))
                .collect(),
        );
    }
    let failed_reloads = tb
        .edges
        .iter()
        .zip(&before)
        .map(|(e, b)| {
            e.show_proc(&tb.tools.tb_client)
                .failed_reloads
                .saturating_sub(b.failed_reloads)
        })
        .collect();
    p.finish().await;
    TakenPort {
        connections,
        failed,
        failed_reloads,
        web_change_live,
        status_with_bad,
        status_at_end,
    }
}

/// What the status channel showed, with when: each generation's first appearance as the
/// desired state, and each node's first run of it.
#[derive(Debug, Default, Clone)]
struct Seen {
    desired: BTreeMap<u64, Instant>,
    live: BTreeMap<(String, u64), Instant>,
}

/// Records [`Seen`] from the status channel until aborted.
fn watch_generations(
    mut status: watch::Receiver<PipelineStatus>,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Seen>>) {
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let sink = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            {
                let s = status.borrow_and_update();
                let now = Instant::now();
                let mut seen = sink.lock().expect("lock");
                seen.desired.entry(s.generation).or_insert(now);
                for (name, node) in &s.nodes {
                    if let Some(g) = node.live_generation.filter(|g| node.in_sync(*g)) {
                        seen.live.entry((name.clone(), g)).or_insert(now);
                    }
                }
            }
            if status.changed().await.is_err() {
                return;
            }
        }
    });
    (task, seen)
}

/// What [`faulty_edge`] saw.
#[derive(Debug)]
pub struct FaultyEdge {
    /// Per healthy edge: for each change, how long from being sent until the edge ran it
    /// (or a later one); `None` when it never did.
    pub latencies: BTreeMap<String, Vec<Option<Duration>>>,
    /// Whether the faulty edge's trouble showed in its status (failures, or a deploy in
    /// flight) while it lasted.
    pub faulty_reported: bool,
    /// How long after the last fault healed the faulty edge ran the last change.
    pub faulty_caught_up: Option<Duration>,
}

/// Endpoint churn (one change a second) through the testbed's edges while the last edge's
/// link is cut for `changes` changes, then loses 30 % of its packets for as many.
pub async fn faulty_edge(tb: &Testbed, changes: usize) -> FaultyEdge {
    let mut p = Running::start(tb, fast_pipeline());
    let edges = tb.edges.len();
    let faulty = &tb.edges[edges - 1];
    let backends = &tb.cluster.backends;
    p.tx.send(web_snapshot(&[&backends[0]]))
        .expect("pipeline runs");
    p.wait("every edge live", Duration::from_secs(30), |s| {
        s.nodes_in_sync() == edges
    })
    .await;
    let (watcher, seen) = watch_generations(p.status.clone());
    let mut sent: Vec<Instant> = Vec::new();
    let mut last = None;
    let mut faulty_reported = false;
    for loss in [100, 30] {
        faulty.set_packet_loss(loss).expect("nft works in the edge");
        for i in 0..changes {
            let pick = [
                &backends[(i + 1) % backends.len()],
                &backends[(i + 2) % backends.len()],
            ];
            let snapshot = web_snapshot(&pick[..1 + i % 2]);
            p.tx.send(snapshot.clone()).expect("pipeline runs");
            sent.push(Instant::now());
            last = Some(snapshot);
            tokio::time::sleep(Duration::from_secs(1)).await;
            let s = p.status.borrow().clone();
            let node = &s.nodes[&faulty.name];
            faulty_reported |= node.consecutive_failures > 0 || !node.in_sync(s.generation);
        }
    }
    faulty.set_packet_loss(0).expect("nft works in the edge");
    let healed = Instant::now();
    let caught_up = {
        let wait = p
            .status
            .wait_for(|s| s.snapshot.as_deref() == last.as_ref() && s.nodes_in_sync() == edges);
        matches!(
            tokio::time::timeout(Duration::from_secs(60), wait).await,
            Ok(Ok(_))
        )
    };
    let faulty_caught_up = caught_up.then(|| healed.elapsed());
    watcher.abort();
    let seen = seen.lock().expect("lock").clone();
    let mut latencies = BTreeMap::new();
    for edge in &tb.edges[..edges - 1] {
        let per_change = sent
            .iter()
            .map(|at| {
                // The first desired state made after the change was sent holds it (or a
                // later change, when the pipeline took several at once): the change is live
                // on the edge when the edge first runs that generation or a later one.
                let g = seen
                    .desired
                    .iter()
                    .find(|(_, t)| *t >= at)
                    .map(|(g, _)| *g)?;
                seen.live
                    .iter()
                    .filter(|((n, lg), _)| *n == edge.name && *lg >= g)
                    .map(|(_, t)| t.saturating_duration_since(*at))
                    .min()
            })
            .collect();
        latencies.insert(edge.name.clone(), per_change);
    }
    p.finish().await;
    FaultyEdge {
        latencies,
        faulty_reported,
        faulty_caught_up,
    }
}

/// Median and maximum of `values` in milliseconds (`None` counts as never: infinite).
pub fn median_and_max_ms(values: &[Option<Duration>]) -> (f64, f64) {
    let mut ms: Vec<f64> = values
        .iter()
        .map(|v| v.map_or(f64::INFINITY, |d| d.as_secs_f64() * 1000.0))
        .collect();
    ms.sort_by(f64::total_cmp);
    let median = ms.get(ms.len() / 2).copied().unwrap_or(f64::NAN);
    (median, ms.last().copied().unwrap_or(f64::NAN))
}
