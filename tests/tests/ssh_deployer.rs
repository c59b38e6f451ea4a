//! End-to-end tests of the native SSH deployer on the network-namespace testbed: real sshd,
//! real HAProxy, the real renderer and pipeline. They need root and the packages named in
//! `edgelb_tests::testbed` (skipped with a message without them, failed when `CI` is set).
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns too

use std::sync::Arc;
use std::time::Duration;

use edgelb_core::{ChannelSource, Deployer, Pipeline, PipelineStatus, Renderer};
use edgelb_haproxy::SshDeployer;
use edgelb_tests::testbed::scenario::{LISTEN_PORT, fast_pipeline, renderer, web_snapshot};
use edgelb_tests::testbed::{Probe, Testbed, TestbedConfig};
use edgelb_tests::testbed_tools;
use tokio::sync::watch;

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDGELB_TEST_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
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
            "timed out waiting for {what}; status: {:#?}",
            *status.borrow()
        )
    })
}

/// Deploy to 3 edges through the pipeline; a client connecting through each edge gets an
/// answer from a backend that saw the client's own IP and port in the PROXY v2 header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_edges_carry_the_real_client_address() {
    init_logs();
    let Some(tb) = Testbed::start_or_skip(
        "three_edges_carry_the_real_client_address",
        TestbedConfig {
            edges: 3,
            backends: 2,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let deployer = Arc::new(SshDeployer::new(tb.deployer_config()).unwrap());
    let pipeline = Pipeline::new(
        Arc::new(renderer()),
        deployer.clone(),
        tb.nodes(),
        fast_pipeline(),
    )
    .unwrap();
    let mut status = pipeline.status();
    let (source, tx) = ChannelSource::new();
    let stop = edgelb_core::CancellationToken::new();
    let run = tokio::spawn(pipeline.run(source, stop.clone()));

    let backends: Vec<_> = tb.cluster.backends.iter().collect();
    tx.send(web_snapshot(&backends)).unwrap();
    let s = wait_status(
        &mut status,
        "3 edges in sync",
        Duration::from_secs(30),
        |s| s.nodes_in_sync() == 3,
    )
    .await;
    for (name, node) in &s.nodes {
        assert_eq!(
            node.last_outcome,
            Some(edgelb_core::Applied::Reloaded),
            "{name}"
        );
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
        // What is live on disk is what was rendered for the node.
        let desired = renderer()
            .render(&web_snapshot(&backends), &edge.node())
            .unwrap();
        assert_eq!(edge.live_config(), desired.text, "{}", edge.name);
        assert_eq!(
            deployer.live_digest(&edge.node()).await.unwrap(),
            Some(desired.digest)
        );
    }
    stop.cancel();
    run.await.unwrap().unwrap();
}

/// Starts a pipeline over `tb`'s edges with the real renderer and an SSH deployer.
struct Running {
    tx: edgelb_core::SnapshotSender,
    status: watch::Receiver<PipelineStatus>,
    stop: edgelb_core::CancellationToken,
    run: tokio::task::JoinHandle<edgelb_core::Result<()>>,
}

impl Running {
    fn start(tb: &Testbed, deployer: Arc<SshDeployer>) -> Self {
        let pipeline =
            Pipeline::new(Arc::new(renderer()), deployer, tb.nodes(), fast_pipeline()).unwrap();
        let status = pipeline.status();
        let (source, tx) = ChannelSource::new();
        let stop = edgelb_core::CancellationToken::new();
        let run = tokio::spawn(pipeline.run(source, stop.clone()));
        Self {
            tx,
            status,
            stop,
            run,
        }
    }

    /// Sends a snapshot and waits until `nodes` nodes run it.
    async fn converge(&mut self, snapshot: edgelb_core::Snapshot, nodes: usize) -> PipelineStatus {
        let before = self.status.borrow().generation;
        self.tx.send(snapshot).unwrap();
        wait_status(
            &mut self.status,
            &format!("{nodes} nodes in sync after generation {before}"),
            Duration::from_secs(30),
            |s| s.generation > before && s.nodes_in_sync() == nodes,
        )
        .await
    }

    async fn shutdown(self) {
        self.stop.cancel();
        self.run.await.unwrap().unwrap();
    }
}

/// Ten endpoint changes while a bounded load loop runs through an edge: no connection
/// fails, and after each change the new backend takes the traffic. Odd changes move the
/// endpoint only (applied through the runtime API, no reload); even ones also add or remove
/// a second port, so the config is reloaded: both paths are exercised under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_changes_under_load_drop_nothing() {
    init_logs();
    let Some(tb) = Testbed::start_or_skip(
        "endpoint_changes_under_load_drop_nothing",
        TestbedConfig {
            edges: 1,
            backends: 4,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let deployer = Arc::new(SshDeployer::new(tb.deployer_config()).unwrap());
    let mut pipeline = Running::start(&tb, deployer);
    let backends = &tb.cluster.backends;
    pipeline.converge(web_snapshot(&[&backends[0]]), 1).await;

    let target = tb.edge_addr(0, LISTEN_PORT);
    // 100 connections a second, at most 60 s; stopped once the changes are done.
    let load = tb.client.start_load(target, 6000, 10);
    while load.done() < 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut outcomes = Vec::new();
    for change in 1..=10 {
        let next = &backends[change % backends.len()];
        let mut snapshot = web_snapshot(&[next]);
        if change % 4 == 2 {
            // A second port: the frontends change, so this one is a reload.
            let extra =
                edgelb_core::PortSpec::new(LISTEN_PORT + 10, edgelb_core::ProxyProtocol::V2)
                    .with_endpoint(edgelb_core::Endpoint::ready(
                        next.addr.ip(),
                        next.addr.port(),
                    ));
            snapshot
                .insert_port(
                    edgelb_core::ServiceKey::new("default", "web").unwrap(),
                    "admin",
                    extra,
                )
                .unwrap();
        }
        let s = pipeline.converge(snapshot, 1).await;
        outcomes.push(s.nodes["edge1"].last_outcome);
        // New connections now reach the new backend only.
        for _ in 0..5 {
            let probe = tb.client.probe(target).await;
            assert_eq!(
                probe.backend(),
                Some(next.name.as_str()),
                "change {change}: {probe:?}"
            );
        }
    }
    // Keep the load on a little past the last change.
    let seen = load.done();
    while load.done() < seen + 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen_before_stop = load.done();
    let results = load.stop().await;
    let failed: Vec<&Probe> = results
        .iter()
        .filter(|p| matches!(p, Probe::Failed(_)))
        .collect();
    for how in [
        edgelb_core::Applied::Reloaded,
        edgelb_core::Applied::RuntimeUpdated,
    ] {
        assert!(outcomes.contains(&Some(how)), "{outcomes:?}");
    }
    assert!(
        results.len() >= 150,
        "the load loop ran only {} connections ({seen_before_stop} before stop)",
        results.len()
    );
    assert!(
        failed.is_empty(),
        "{:?}: {} of {} connections failed during 10 changes ({outcomes:?})\nhaproxy log: {}",
        &failed[..failed.len().min(5)],
        failed.len(),
        results.len(),
        tb.edges[0].haproxy_log()
    );
    // Every backend took traffic at some point of the loop.
    for b in backends {
        assert!(
            results.iter().any(|p| p.backend() == Some(b.name.as_str())),
            "{} never answered",
            b.name
        );
    }
    eprintln!(
        "endpoint_changes_under_load_drop_nothing: {} connections, 0 failed, 10 changes: {outcomes:?}",
        results.len()
    );
    pipeline.shutdown().await;
}

/// One node through the deployer directly.
async fn deploy(
    deployer: &SshDeployer,
    node: edgelb_core::EdgeNode,
    config: edgelb_core::RenderedConfig,
) -> Result<edgelb_core::Applied, edgelb_core::DeployError> {
    let mut outcomes = deployer
        .deploy(&[edgelb_core::NodeConfig { node, config }])
        .await;
    assert_eq!(outcomes.len(), 1);
    outcomes.remove(0).result
}

/// A deploy that went live: reloaded, or for an endpoint-only change applied through the
/// runtime API without a reload.
fn assert_live(result: Result<edgelb_core::Applied, edgelb_core::DeployError>) {
    assert!(
        matches!(
            result,
            Ok(edgelb_core::Applied::Reloaded | edgelb_core::Applied::RuntimeUpdated)
        ),
        "{result:?}"
    );
}

/// The files a failed deploy must not leave behind or change.
fn files(edge: &edgelb_tests::testbed::Edge) -> (String, bool, bool) {
    (
        edge.live_config(),
        edge.haproxy_file("haproxy.cfg.edgelb-new").exists(),
        edge.haproxy_file("haproxy.cfg.edgelb-prev").exists(),
    )
}

/// A config that `haproxy -c` rejects: nothing is swapped or reloaded, traffic keeps
/// flowing, and the outcome carries HAProxy's own error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_config_changes_nothing() {
    init_logs();
    let Some(tb) = Testbed::start_or_skip(
        "rejected_config_changes_nothing",
        TestbedConfig {
            edges: 1,
            backends: 1,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let edge = &tb.edges[0];
    let deployer = SshDeployer::new(tb.deployer_config()).unwrap();
    let good = renderer()
        .render(&web_snapshot(&[&tb.cluster.backends[0]]), &edge.node())
        .unwrap();
    assert_eq!(
        deploy(&deployer, edge.node(), good.clone()).await,
        Ok(edgelb_core::Applied::Reloaded)
    );
    let files_before = files(edge);
    let procs_before = edge.show_proc(&tb.tools.tb_client);

    let body = good.text.split_once('\n').unwrap().1;
    let bad = edgelb_core::RenderedConfig::from_body(format!(
        "{body}\nbackend be_broken\n    frobnicate-the-widgets on\n"
    ));
    let err = deploy(&deployer, edge.node(), bad).await.unwrap_err();
    let edgelb_core::DeployError::ConfigRejected {
        node,
        haproxy_output,
    } = &err
    else {
        panic!("expected ConfigRejected, got {err:?}");
    };
    assert_eq!(node, "edge1");
    assert!(
        haproxy_output.contains("frobnicate-the-widgets") && haproxy_output.contains("ALERT"),
        "HAProxy's message should be in the outcome: {haproxy_output}"
    );
    assert!(err.to_string().contains("nothing was changed"), "{err}");
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

/// A changed host key, an unknown host and a wrong client key are refused with clear
/// errors, and nothing is written; an authorized RSA key works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_host_key_or_client_key_is_refused() {
    use edgelb_haproxy::ssh::{ClientKey, KnownHosts, SshCredentials};
    init_logs();
    let Some(tb) = Testbed::start_or_skip(
        "wrong_host_key_or_client_key_is_refused",
        TestbedConfig {
            edges: 2,
            backends: 1,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let (edge1, edge2) = (&tb.edges[0], &tb.edges[1]);
    let config = renderer()
        .render(&web_snapshot(&[&tb.cluster.backends[0]]), &edge1.node())
        .unwrap();
    let before = files(edge1);
    let key = ClientKey::from_file(&tb.key.private, None).unwrap();
    let with_credentials = |credentials: SshCredentials| {
        let mut cfg = tb.deployer_config();
        cfg.default_credentials = Some(credentials);
        SshDeployer::new(cfg).unwrap()
    };

    // edge1's address pinned to edge2's key: the key edge1 presents is refused.
    let swapped = KnownHosts::parse(&format!("{} {}\n", edge1.ip, edge2.host_key)).unwrap();
    let err = deploy(
        &with_credentials(SshCredentials::new(key.clone(), swapped)),
        edge1.node(),
        config.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        edgelb_core::DeployError::HostKeyMismatch {
            node: "edge1".into(),
            fingerprint: edge1.host_key_fingerprint(),
        }
    );
    assert!(err.to_string().contains("treat this as an attack"), "{err}");

    // Nothing pinned for edge1 at all: no trust on first use.
    let others = KnownHosts::parse(&format!("{}\n", edge2.known_hosts_line())).unwrap();
    let err = deploy(
        &with_credentials(SshCredentials::new(key.clone(), others)),
        edge1.node(),
        config.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), "host-key-mismatch", "{err}");
    assert!(
        err.to_string().contains(&edge1.host_key_fingerprint()),
        "{err}"
    );

    // A key edge1 does not authorize.
    let stranger = ClientKey::from_file(&tb.stranger_key.private, None).unwrap();
    let err = deploy(
        &with_credentials(SshCredentials::new(stranger, tb.known_hosts())),
        edge1.node(),
        config.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        edgelb_core::DeployError::Auth {
            node: "edge1".into(),
            user: "root".into(),
        }
    );
    assert_eq!(files(edge1), before, "a refused deploy wrote files");

    // The authorized RSA key logs in (rsa-sha2 signature) and deploys.
    let rsa = ClientKey::from_file(&tb.rsa_key.private, None).unwrap();
    assert_eq!(
        deploy(
            &with_credentials(SshCredentials::new(rsa, tb.known_hosts())),
            edge1.node(),
            config.clone(),
        )
        .await,
        Ok(edgelb_core::Applied::Reloaded)
    );
    assert_eq!(edge1.live_config(), config.text);
}

/// A config that passes `haproxy -c` but cannot start (it binds an address the edge does not
/// have): the reload is seen to fail, the previous file is restored and reloaded, and the old
/// config keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_reload_is_rolled_back() {
    init_logs();
    let Some(tb) = Testbed::start_or_skip(
        "failed_reload_is_rolled_back",
        TestbedConfig {
            edges: 1,
            backends: 2,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let edge = &tb.edges[0];
    let deployer = SshDeployer::new(tb.deployer_config()).unwrap();
    let good = renderer()
        .render(&web_snapshot(&[&tb.cluster.backends[0]]), &edge.node())
        .unwrap();
    assert_eq!(
        deploy(&deployer, edge.node(), good.clone()).await,
        Ok(edgelb_core::Applied::Reloaded)
    );

    // Same service, another backend, bound to an address that is not on the edge.
    let mut elsewhere = edge
        .node()
        .with_bind(LISTEN_PORT, format!("{}:{LISTEN_PORT}", tb.ip(250)));
    elsewhere.replace_default_bind = true;
    let unstartable = renderer()
        .render(&web_snapshot(&[&tb.cluster.backends[1]]), &elsewhere)
        .unwrap();
    let procs_before = edge.show_proc(&tb.tools.tb_client);
    let err = deploy(&deployer, edge.node(), unstartable)
        .await
        .unwrap_err();
    let edgelb_core::DeployError::ReloadFailed {
        node, rolled_back, ..
    } = &err
    else {
        panic!("expected ReloadFailed, got {err:?}");
    };
    assert_eq!(node, "edge1");
    assert!(rolled_back, "{err}");
    assert!(
        err.to_string().contains("previous config was restored"),
        "{err}"
    );
    assert_eq!(
        edge.live_config(),
        good.text,
        "the previous file is live again"
    );
    let procs_after = edge.show_proc(&tb.tools.tb_client);
    // Two reloads: the failed one and the rollback's (HAProxy 2.6 resets its failure
    // count on the good one), and the bind failure is in HAProxy's log.
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
}

/// An edge whose sshd is down: the others converge, it is reported failed, and it converges
/// through the pipeline's retry once sshd is back (over a new session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_with_sshd_down_converges_after_it_returns() {
    init_logs();
    let Some(mut tb) = Testbed::start_or_skip(
        "edge_with_sshd_down_converges_after_it_returns",
        TestbedConfig {
            edges: 3,
            backends: 2,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let deployer = Arc::new(SshDeployer::new(tb.deployer_config()).unwrap());
    let mut pipeline = Running::start(&tb, deployer.clone());
    let backends = tb.cluster.backends.clone();
    pipeline.converge(web_snapshot(&[&backends[0]]), 3).await;

    // sshd dies on edge2, its open session with it.
    tb.edges[1].stop_sshd();
    let second = web_snapshot(&[&backends[1]]);
    let s = pipeline.converge(second.clone(), 2).await;
    let failed = &s.nodes["edge2"];
    assert!(!failed.in_sync(s.generation));
    let s = wait_status(
        &mut pipeline.status,
        "edge2 reported failed",
        Duration::from_secs(20),
        |s| s.nodes["edge2"].last_error.is_some(),
    )
    .await;
    let err = s.nodes["edge2"].last_error.clone().unwrap();
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
    tb.edges[1].start_sshd().unwrap();
    let s = wait_status(
        &mut pipeline.status,
        "edge2 converged after sshd came back",
        Duration::from_secs(30),
        |s| s.nodes_in_sync() == 3,
    )
    .await;
    assert!(s.nodes["edge2"].last_error.is_none());
    assert!(s.nodes["edge2"].consecutive_failures == 0);
    // The pipeline's renderer keeps endpoints in their slots, so compare digests with what
    // the pipeline wanted rather than with a fresh render.
    let live = edgelb_haproxy::apply::live_digest_of(tb.edges[1].live_config().as_bytes());
    assert!(live.is_some());
    assert_eq!(live, s.nodes["edge2"].desired_digest);
    let probe = tb.client.probe(tb.edge_addr(1, LISTEN_PORT)).await;
    assert_eq!(probe.backend(), Some("b2"), "{probe:?}");
    pipeline.shutdown().await;
}

/// A session that died under the deployer (its sshd process killed) is replaced
/// transparently: the next deploy succeeds without an error, over a new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_session_is_replaced_transparently() {
    init_logs();
    let Some(tb) = Testbed::start_or_skip(
        "dead_session_is_replaced_transparently",
        TestbedConfig {
            edges: 1,
            backends: 2,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let edge = &tb.edges[0];
    let deployer = SshDeployer::new(tb.deployer_config()).unwrap();
    let render = |b: usize| {
        renderer()
            .render(&web_snapshot(&[&tb.cluster.backends[b]]), &edge.node())
            .unwrap()
    };
    assert_eq!(
        deploy(&deployer, edge.node(), render(0)).await,
        Ok(edgelb_core::Applied::Reloaded)
    );
    let host = deployer.host(&edge.node()).unwrap();
    assert!(host.is_connected().await);

    edge.kill_sessions();
    // Right away, before the client may have noticed, and again once it surely has.
    assert_live(deploy(&deployer, edge.node(), render(1)).await);
    edge.kill_sessions();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!host.is_connected().await, "the dead session is noticed");
    assert_live(deploy(&deployer, edge.node(), render(0)).await);
    assert!(host.is_connected().await);
    let probe = tb.client.probe(tb.edge_addr(0, LISTEN_PORT)).await;
    assert_eq!(probe.backend(), Some("b1"), "{probe:?}");

    // A session lost in the middle of a command is a connection failure, never the
    // command's own failure (a lost `haproxy -c` must not read as a rejected config).
    use edgelb_haproxy::EdgeHost;
    let running = tokio::spawn({
        let host = host.clone();
        async move { host.exec(&["sleep".to_owned(), "5".to_owned()]).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    edge.kill_sessions();
    let err = running.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), "connect", "{err}");
    assert!(
        err.to_string().contains("was lost while running sleep"),
        "{err}"
    );
    assert_live(deploy(&deployer, edge.node(), render(1)).await);
}

/// A hung edge (sshd frozen) fails with a timeout naming the step, within the configured
/// time, and works again once it thaws.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_edge_times_out() {
    init_logs();
    let Some(tb) = Testbed::start_or_skip(
        "hung_edge_times_out",
        TestbedConfig {
            edges: 1,
            backends: 2,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let edge = &tb.edges[0];
    let mut cfg = tb.deployer_config();
    cfg.options.connect_timeout = Duration::from_secs(1);
    cfg.options.step_timeout = Duration::from_secs(1);
    let deployer = SshDeployer::new(cfg).unwrap();
    let render = |b: usize| {
        renderer()
            .render(&web_snapshot(&[&tb.cluster.backends[b]]), &edge.node())
            .unwrap()
    };
    assert_eq!(
        deploy(&deployer, edge.node(), render(0)).await,
        Ok(edgelb_core::Applied::Reloaded)
    );

    // The open session hangs: the first step times out.
    edge.freeze_sshd(false, true);
    let started = std::time::Instant::now();
    let err = deploy(&deployer, edge.node(), render(1)).await.unwrap_err();
    edge.freeze_sshd(false, false);
    let edgelb_core::DeployError::Timeout { step, seconds, .. } = &err else {
        panic!("expected a timeout, got {err:?}");
    };
    assert_eq!(*seconds, 1);
    assert!(step.contains("/etc/haproxy/haproxy.cfg"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // The same over exec (no SFTP): opening the command's channel times out.
    let mut cfg = tb.deployer_config();
    cfg.options.connect_timeout = Duration::from_secs(1);
    cfg.options.step_timeout = Duration::from_secs(1);
    cfg.options.file_transfer = edgelb_haproxy::ssh::FileTransfer::Exec;
    let exec_deployer = SshDeployer::new(cfg).unwrap();
    exec_deployer.connect_all(&[edge.node()]).await[0]
        .1
        .clone()
        .unwrap();
    edge.freeze_sshd(false, true);
    let err = deploy(&exec_deployer, edge.node(), render(1))
        .await
        .unwrap_err();
    edge.freeze_sshd(false, false);
    assert_eq!(err.kind(), "timeout", "{err}");

    // sshd itself hangs: connecting times out (the timed-out session was dropped).
    edge.freeze_sshd(true, true);
    let err = deploy(&deployer, edge.node(), render(1)).await.unwrap_err();
    edge.freeze_sshd(true, false);
    let edgelb_core::DeployError::Timeout { step, .. } = &err else {
        panic!("expected a timeout, got {err:?}");
    };
    assert!(step.contains("connecting"), "{err}");
    assert!(err.to_string().contains("timed out after 1s"), "{err}");

    // Thawed: the next deploy reconnects and goes through.
    assert_live(deploy(&deployer, edge.node(), render(1)).await);
}
