//! The scenarios, each written once against [`DeployerUnderTest`].

use std::sync::Arc;
use std::time::Duration;

use edgelb_core::{
    Applied, ChannelSource, DeployError, Deployer, EdgeNode, Endpoint, NodeConfig, Pipeline,
    PipelineConfig, PipelineStatus, PortSpec, ProxyProtocol, RenderedConfig, Renderer, ServiceKey,
    Snapshot,
};
use tokio::sync::watch;

use super::DeployerUnderTest;
use super::outcomes::{assert_config_rejected, assert_reload_rolled_back, with_unknown_keyword};
use crate::testbed::scenario::{LISTEN_PORT, fast_pipeline, renderer, web_snapshot};
use crate::testbed::{Edge, Probe, Testbed, TestbedConfig};

/// One end-to-end scenario of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Through the pipeline to 3 edges: a client connecting through each edge reaches a
    /// backend that saw the client's own address and port (PROXY v2); the live file,
    /// `live_digest` and `live_config` are what was rendered.
    RealClientIp,
    /// Ten endpoint changes through the pipeline while a bounded load loop runs through an
    /// edge: no connection fails, and after each change new connections reach the new
    /// backend. Every fourth change (2, 6, 10) also adds a port, which needs a reload.
    EndpointChangesUnderLoad,
    /// A config `haproxy -c` rejects: `ConfigRejected` with HAProxy's message, no file
    /// changed, no reload, traffic still flows.
    RejectedConfig,
    /// One of 3 edges has its sshd down: the others converge, it is reported as a `Connect`
    /// failure, and it converges through the pipeline's retry once sshd is back.
    SshdDown,
    /// The edge's host key is not the one pinned (or none is pinned for it), or our client key
    /// is not authorized: `HostKeyMismatch` / `Auth`, nothing written.
    WrongKeys,
    /// A config that passes `haproxy -c` but cannot start: `ReloadFailed { rolled_back: true }`,
    /// the previous file restored and reloaded, the old config still serving.
    FailedReloadRolledBack,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Self; 6] = [
        Self::RealClientIp,
        Self::EndpointChangesUnderLoad,
        Self::RejectedConfig,
        Self::SshdDown,
        Self::WrongKeys,
        Self::FailedReloadRolledBack,
    ];

    /// Its name in test names and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::RealClientIp => "real_client_ip_through_three_edges",
            Self::EndpointChangesUnderLoad => "endpoint_changes_under_load_drop_nothing",
            Self::RejectedConfig => "rejected_config_changes_nothing",
            Self::SshdDown => "edge_with_sshd_down_converges_after_it_returns",
            Self::WrongKeys => "wrong_host_key_or_client_key_is_refused",
            Self::FailedReloadRolledBack => "failed_reload_is_rolled_back",
        }
    }

    /// The testbed it needs.
    pub fn testbed(self) -> TestbedConfig {
        let (edges, backends) = match self {
            Self::RealClientIp => (3, 2),
            Self::EndpointChangesUnderLoad => (1, 4),
            Self::RejectedConfig => (1, 1),
            Self::SshdDown => (3, 2),
            Self::WrongKeys => (2, 1),
            Self::FailedReloadRolledBack => (1, 2),
        };
        TestbedConfig { edges, backends }
    }

    /// Runs it against `dut` on `tb` (built with [`Scenario::testbed`]).
    pub async fn run(self, dut: &dyn DeployerUnderTest, tb: Testbed) {
        match self {
            Self::RealClientIp => real_client_ip(dut, &tb).await,
            Self::EndpointChangesUnderLoad => endpoint_changes_under_load(dut, &tb).await,
            Self::RejectedConfig => rejected_config(dut, &tb).await,
            Self::SshdDown => sshd_down(dut, tb).await,
            Self::WrongKeys => wrong_keys(dut, &tb).await,
            Self::FailedReloadRolledBack => failed_reload_rolled_back(dut, &tb).await,
        }
    }
}

async fn wait_status(
    status: &mut watch::Receiver<PipelineStatus>,
    what: &str,
    timeout: Duration,
    cond: impl Fn(&PipelineStatus) -> bool,
) -> PipelineStatus {
    let reached = match tokio::time::timeout(timeout, status.wait_for(|s| cond(s))).await {
        Ok(Ok(s)) => Some(s.clone()),
        _ => None,
    };
    reached.unwrap_or_else(|| {
        panic!(
            "timed out after {timeout:?} waiting for {what}; status: {:#?}",
            *status.borrow()
        )
    })
}

/// A pipeline over `tb`'s edges with the real renderer and the deployer under test.
struct Running {
    tx: edgelb_core::SnapshotSender,
    status: watch::Receiver<PipelineStatus>,
    stop: edgelb_core::CancellationToken,
    run: tokio::task::JoinHandle<edgelb_core::Result<()>>,
    timeout: Duration,
}

impl Running {
    fn start(tb: &Testbed, dut: &dyn DeployerUnderTest, deployer: Arc<dyn Deployer>) -> Self {
        let config = PipelineConfig {
            batch_size: dut.batch_size(),
            ..fast_pipeline()
        };
        let pipeline = Pipeline::new(Arc::new(renderer()), deployer, tb.nodes(), config)
            .expect("pipeline config is valid");
        let status = pipeline.status();
        let (source, tx) = ChannelSource::new();
        let stop = edgelb_core::CancellationToken::new();
        let run = tokio::spawn(pipeline.run(source, stop.clone()));
        Self {
            tx,
            status,
            stop,
            run,
            timeout: dut.deploy_time(),
        }
    }

    /// Sends a snapshot and waits until `nodes` nodes run it.
    async fn converge(&mut self, snapshot: Snapshot, nodes: usize) -> PipelineStatus {
        let before = self.status.borrow().generation;
        self.tx.send(snapshot).expect("pipeline runs");
        wait_status(
            &mut self.status,
            &format!("{nodes} nodes in sync after generation {before}"),
            self.timeout,
            |s| s.generation > before && s.nodes_in_sync() == nodes,
        )
        .await
    }

    async fn shutdown(self) {
        self.stop.cancel();
        self.run
            .await
            .expect("pipeline task")
            .expect("pipeline ends cleanly");
    }
}

/// One node through the deployer directly.
async fn deploy(
    deployer: &dyn Deployer,
    node: EdgeNode,
    config: RenderedConfig,
) -> Result<Applied, DeployError> {
    let mut outcomes = deployer.deploy(&[NodeConfig { node, config }]).await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    outcomes.remove(0).result
}

/// The files a failed deploy must not leave behind or change: the live file, and whether
/// the new and previous files exist.
fn files(edge: &Edge) -> (String, bool, bool) {
    (
        edge.live_config(),
        edge.haproxy_file("haproxy.cfg.edgelb-new").exists(),
        edge.haproxy_file("haproxy.cfg.edgelb-prev").exists(),
    )
}

fn render(tb: &Testbed, edge: &Edge, backend: usize) -> RenderedConfig {
    renderer()
        .render(
            &web_snapshot(&[&tb.cluster.backends[backend]]),
            &edge.node(),
        )
        .expect("renders")
}

async fn real_client_ip(dut: &dyn DeployerUnderTest, tb: &Testbed) {
    let deployer = dut.deployer(tb);
    let mut pipeline = Running::start(tb, dut, deployer.clone());
    let backends: Vec<_> = tb.cluster.backends.iter().collect();
    let s = pipeline.converge(web_snapshot(&backends), 3).await;
    for (name, node) in &s.nodes {
        // A first deploy over the edges' initial config is a reload for every deployer.
        assert_eq!(node.last_outcome, Some(Applied::Reloaded), "{name}");
    }
    for (i, edge) in tb.edges.iter().enumerate() {
        let probe = tb.client.probe(tb.edge_addr(i, LISTEN_PORT)).await;
        let Probe::Ok {
            local,
            backend,
            client,
            proxy,
        } = probe
        else {
            panic!(
                "{}: {probe:?}\nhaproxy log: {}",
                edge.name,
                edge.haproxy_log()
            );
        };
        assert_eq!(
            client, local,
            "{}: the backend saw another address",
            edge.name
        );
        assert_eq!(local.ip(), std::net::IpAddr::V4(tb.client_ip()));
        assert_eq!(proxy, "v2");
        assert!(["b1", "b2"].contains(&backend.as_str()), "{backend}");
        let desired = renderer()
            .render(&web_snapshot(&backends), &edge.node())
            .expect("renders");
        assert_eq!(edge.live_config(), desired.text, "{}", edge.name);
        assert_eq!(
            deployer.live_digest(&edge.node()).await,
            Ok(Some(desired.digest)),
            "{}",
            edge.name
        );
        assert_eq!(
            deployer.live_config(&edge.node()).await,
            Ok(Some(desired.text)),
            "{}",
            edge.name
        );
    }
    pipeline.shutdown().await;
}

/// Connections the load of the endpoint-changes scenario makes at least, whatever the speed of
/// the deployer under test.
const MIN_LOAD: usize = 200;

async fn endpoint_changes_under_load(dut: &dyn DeployerUnderTest, tb: &Testbed) {
    let deployer = dut.deployer(tb);
    let mut pipeline = Running::start(tb, dut, deployer);
    let backends = &tb.cluster.backends;
    pipeline.converge(web_snapshot(&[&backends[0]]), 1).await;

    let target = tb.edge_addr(0, LISTEN_PORT);
    // The load runs until stopped once enough connections were made; its count (12 deploy
    // times' worth) is only a safety cap. How many connections fall inside the changes
    // depends on how fast the deployer is, so nothing asserts on that.
    let interval = dut.load_interval_ms();
    let count = (dut.deploy_time().as_millis() as u64 * 12 / interval) as u32;
    let load = tb.client.start_load(target, count, interval);
    load.wait_for(20, dut.deploy_time()).await;
    let mut outcomes = Vec::new();
    for change in 1..=10 {
        let next = &backends[change % backends.len()];
        let mut snapshot = web_snapshot(&[next]);
        let structural = change % 4 == 2;
        if structural {
            // A second port: the frontends change, so this one is a reload.
            let extra = PortSpec::new(LISTEN_PORT + 10, ProxyProtocol::V2)
                .with_endpoint(Endpoint::ready(next.addr.ip(), next.addr.port()));
            snapshot
                .insert_port(
                    ServiceKey::new("default", "web").expect("valid key"),
                    "admin",
                    extra,
                )
                .expect("valid port");
        }
        let s = pipeline.converge(snapshot, 1).await;
        let outcome = s.nodes["edge1"].last_outcome;
        // A structural change reloads on every deployer. An endpoint-only one may go live
        // through the runtime API (native deployers) or a reload (Ansible, or the native
        // fallback): what the deployer says it does is accepted.
        let accepted: &[Applied] = if structural {
            &[Applied::Reloaded]
        } else {
            dut.endpoint_change_outcomes()
        };
        assert!(
            outcome.is_some_and(|o| accepted.contains(&o)),
            "change {change} (structural: {structural}): {outcome:?}, accepted {accepted:?}"
        );
        outcomes.push(outcome);
        for _ in 0..5 {
            let probe = tb.client.probe(target).await;
            assert_eq!(
                probe.backend(),
                Some(next.name.as_str()),
                "change {change}: {probe:?}"
            );
        }
    }
    // Keep the load on past the last change, until it made enough connections in all.
    load.wait_for((load.done() + 20).max(MIN_LOAD), dut.deploy_time())
        .await;
    let results = load.stop().await;
    let failed: Vec<&Probe> = results
        .iter()
        .filter(|p| matches!(p, Probe::Failed(_)))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} connections failed during 10 changes ({outcomes:?}): {:?}\nhaproxy log: {}",
        failed.len(),
        results.len(),
        &failed[..failed.len().min(5)],
        tb.edges[0].haproxy_log()
    );
    for b in backends {
        assert!(
            results.iter().any(|p| p.backend() == Some(b.name.as_str())),
            "{} never answered",
            b.name
        );
    }
    eprintln!(
        "{}: {} connections, 0 failed, 10 changes: {outcomes:?}",
        dut.name(),
        results.len()
    );
    pipeline.shutdown().await;
}

async fn rejected_config(dut: &dyn DeployerUnderTest, tb: &Testbed) {
    let edge = &tb.edges[0];
    let deployer = dut.deployer(tb);
    let good = render(tb, edge, 0);
    assert_eq!(
        deploy(&*deployer, edge.node(), good.clone()).await,
        Ok(Applied::Reloaded)
    );
    let files_before = files(edge);
    let procs_before = edge.show_proc(&tb.tools.tb_client);

    let bad = with_unknown_keyword(&good);
    let err = deploy(&*deployer, edge.node(), bad).await.unwrap_err();
    assert_config_rejected(&err, "edge1");
    assert_eq!(
        files(edge),
        files_before,
        "files changed after a rejected config"
    );
    let procs_after = edge.show_proc(&tb.tools.tb_client);
    assert_eq!(
        procs_after.reloads, procs_before.reloads,
        "haproxy was reloaded"
    );
    let probe = tb.client.probe(tb.edge_addr(0, LISTEN_PORT)).await;
    assert_eq!(probe.backend(), Some("b1"), "{probe:?}");
}

async fn sshd_down(dut: &dyn DeployerUnderTest, mut tb: Testbed) {
    let deployer = dut.deployer(&tb);
    let mut pipeline = Running::start(&tb, dut, deployer);
    let backends = tb.cluster.backends.clone();
    pipeline.converge(web_snapshot(&[&backends[0]]), 3).await;

    // sshd dies on edge2, its open sessions (and kept SSH connections) with it.
    tb.edges[1].stop_sshd();
    let s = pipeline.converge(web_snapshot(&[&backends[1]]), 2).await;
    assert!(!s.nodes["edge2"].in_sync(s.generation));
    let s = wait_status(
        &mut pipeline.status,
        "edge2 reported failed",
        dut.deploy_time(),
        |s| s.nodes["edge2"].last_error.is_some(),
    )
    .await;
    let err = s.nodes["edge2"].last_error.clone().expect("an error");
    assert_eq!(err.kind(), "connect", "{err}");
    assert_eq!(err.node(), "edge2");
    for name in ["edge1", "edge3"] {
        assert!(
            s.nodes[name].in_sync(s.generation),
            "{name}: {:?}",
            s.nodes[name]
        );
    }
    let probe = tb.client.probe(tb.edge_addr(1, LISTEN_PORT)).await;
    assert_eq!(
        probe.backend(),
        Some("b1"),
        "edge2 still runs the old config: {probe:?}"
    );

    // sshd comes back: the pipeline's retry reconnects and converges.
    tb.edges[1].start_sshd().expect("sshd restarts");
    let s = wait_status(
        &mut pipeline.status,
        "edge2 converged after sshd came back",
        dut.deploy_time(),
        |s| s.nodes_in_sync() == 3,
    )
    .await;
    assert!(s.nodes["edge2"].last_error.is_none());
    assert_eq!(s.nodes["edge2"].consecutive_failures, 0);
    let live = edgelb_core::live_digest_of(tb.edges[1].live_config().as_bytes());
    assert!(live.is_some());
    assert_eq!(live, s.nodes["edge2"].desired_digest);
    let probe = tb.client.probe(tb.edge_addr(1, LISTEN_PORT)).await;
    assert_eq!(probe.backend(), Some("b2"), "{probe:?}");
    pipeline.shutdown().await;
}

async fn wrong_keys(dut: &dyn DeployerUnderTest, tb: &Testbed) {
    let (edge1, edge2) = (&tb.edges[0], &tb.edges[1]);
    let config = render(tb, edge1, 0);
    let before = files(edge1);

    // edge1's address pinned to edge2's key: the key edge1 presents is refused.
    let swapped = dut.with_known_hosts(tb, &[format!("{} {}", edge1.ip, edge2.host_key)]);
    let err = deploy(&*swapped, edge1.node(), config.clone())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        DeployError::HostKeyMismatch {
            node: "edge1".into(),
            fingerprint: edge1.host_key_fingerprint(),
        }
    );
    assert!(err.to_string().contains("treat this as an attack"), "{err}");

    // Nothing pinned for edge1 at all: no trust on first use. (ssh's command line does not
    // print the key it was shown in this case, so only the kind and node are common.)
    let others = dut.with_known_hosts(tb, &[edge2.known_hosts_line()]);
    let err = deploy(&*others, edge1.node(), config.clone())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "host-key-unknown", "{err}");
    assert_eq!(err.node(), "edge1", "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("ssh-keyscan -p 22 -t ed25519 {}", edge1.ip))
            && !text.contains("attack"),
        "{err}"
    );

    // A key edge1 does not authorize.
    let stranger = dut.with_client_key(tb, &tb.stranger_key);
    let err = deploy(&*stranger, edge1.node(), config.clone())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        DeployError::Auth {
            node: "edge1".into(),
            user: "root".into(),
        }
    );
    assert!(err.to_string().contains("authorized_keys"), "{err}");
    assert_eq!(files(edge1), before, "a refused deploy wrote files");

    // The right keys still work.
    assert_eq!(
        deploy(&*dut.deployer(tb), edge1.node(), config.clone()).await,
        Ok(Applied::Reloaded)
    );
    assert_eq!(edge1.live_config(), config.text);
}

async fn failed_reload_rolled_back(dut: &dyn DeployerUnderTest, tb: &Testbed) {
    let edge = &tb.edges[0];
    let deployer = dut.deployer(tb);
    let good = render(tb, edge, 0);
    assert_eq!(
        deploy(&*deployer, edge.node(), good.clone()).await,
        Ok(Applied::Reloaded)
    );

    // Same service, another backend, bound to an address that is not on the edge: `haproxy
    // -c` accepts it, the new worker cannot start.
    let mut elsewhere = edge
        .node()
        .with_bind(LISTEN_PORT, format!("{}:{LISTEN_PORT}", tb.ip(250)));
    elsewhere.replace_default_bind = true;
    let unstartable = renderer()
        .render(&web_snapshot(&[&tb.cluster.backends[1]]), &elsewhere)
        .expect("renders");
    let procs_before = edge.show_proc(&tb.tools.tb_client);
    let err = deploy(&*deployer, edge.node(), unstartable)
        .await
        .unwrap_err();
    assert_reload_rolled_back(&err, "edge1");
    assert_eq!(
        edge.live_config(),
        good.text,
        "the previous file is live again"
    );
    let procs_after = edge.show_proc(&tb.tools.tb_client);
    // Two reloads: the failed one and the rollback's.
    assert_eq!(
        procs_after.reloads,
        procs_before.reloads + 2,
        "{procs_before:?} → {procs_after:?}"
    );
    assert!(
        edge.haproxy_log().contains("cannot bind socket"),
        "{}",
        edge.haproxy_log()
    );
    for _ in 0..5 {
        let probe = tb.client.probe(tb.edge_addr(0, LISTEN_PORT)).await;
        assert_eq!(probe.backend(), Some("b1"), "{probe:?}");
    }
    assert_eq!(
        deployer.live_digest(&edge.node()).await,
        Ok(Some(good.digest))
    );
}
