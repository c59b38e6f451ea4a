//! Pipeline behaviour under paused tokio time: debounce, dedupe, retry/backoff, resync,
//! partial failure and shutdown.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::testing::{FakeDeployer, MockDeployer, MockRenderer};
use crate::{
    Applied, ChannelSource, DeployError, Digest, EdgeHealth, Endpoint, NodeConfig, NodeOutcome,
    PortSpec, ProxyProtocol, RenderedConfig, ServiceKey,
};

/// Renders a digest of the snapshot and node, so equal inputs give equal configs.
struct DebugRenderer;

impl Renderer for DebugRenderer {
    fn render(&self, snapshot: &Snapshot, node: &EdgeNode) -> Result<RenderedConfig> {
        Ok(RenderedConfig::from_body(format!(
            "{}\n{snapshot:?}\n",
            node.name
        )))
    }
}

fn snapshot(endpoints: u8) -> Snapshot {
    let mut port = PortSpec::new(443, ProxyProtocol::V2);
    for i in 0..endpoints {
        port.add_endpoint(Endpoint::ready([10, 0, 0, i + 1].into(), 8443));
    }
    let mut snap = Snapshot::default();
    snap.insert_port(
        ServiceKey::new("kube-system", "traefik").unwrap(),
        "websecure",
        port,
    )
    .unwrap();
    snap
}

fn nodes(names: &[&str]) -> Vec<EdgeNode> {
    names.iter().map(|n| EdgeNode::new(*n)).collect()
}

struct Harness {
    deployer: Arc<FakeDeployer>,
    status: watch::Receiver<PipelineStatus>,
    tx: crate::SnapshotSender,
    stop: CancellationToken,
    run: tokio::task::JoinHandle<Result<()>>,
}

fn start(deployer: FakeDeployer, node_names: &[&str], config: PipelineConfig) -> Harness {
    start_with(Arc::new(DebugRenderer), deployer, node_names, config)
}

impl Harness {
    async fn finish(self) {
        self.stop.cancel();
        self.run.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_burst_becomes_one_deploy_of_the_last_snapshot() {
    let h = start(FakeDeployer::new(), &["a"], PipelineConfig::default());
    for n in 1..=5 {
        h.tx.send(snapshot(n)).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = h.deployer.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    // Applied 200 ms after the last of the burst (sent at 200 ms).
    assert_eq!(calls[0].at, Duration::from_millis(400));
    let status = h.status.borrow().clone();
    assert_eq!(status.snapshot.as_deref(), Some(&snapshot(5)));
    assert_eq!(status.nodes_in_sync(), 1);
    h.finish().await;
}

#[tokio::test(start_paused = true)]
async fn a_steady_stream_is_applied_after_max_debounce() {
    let h = start(FakeDeployer::new(), &["a"], PipelineConfig::default());
    for n in 1..=40u8 {
        h.tx.send(snapshot(n)).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = h.deployer.calls()[0].at;
    assert_eq!(
        first,
        Duration::from_secs(2),
        "max_debounce bounds the wait"
    );
    h.finish().await;
}

#[tokio::test(start_paused = true)]
async fn equal_snapshots_are_dropped() {
    let h = start(FakeDeployer::new(), &["a", "b"], PipelineConfig::default());
    h.tx.send(snapshot(2)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.tx.send(snapshot(2)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.deployer.calls().len(), 2, "one call per node, once");
    assert_eq!(h.status.borrow().generation, 1);

    // A source error, then the same snapshot again: the source has recovered.
    h.tx.send_error(Error::Source {
        source_name: "test".into(),
        message: "watch failed".into(),
    })
    .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(h.status.borrow().source_error.is_some());
    h.tx.send(snapshot(2)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.status.borrow().source_error, None);
    assert_eq!(h.deployer.calls().len(), 2);
    h.finish().await;
}

#[tokio::test(start_paused = true)]
async fn failed_node_retries_with_backoff_while_others_stay_put() {
    let config = PipelineConfig::default();
    let h = start(FakeDeployer::new().fail("b", 3), &["a", "b"], config);
    h.tx.send(snapshot(1)).unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;

    assert_eq!(h.deployer.deploys_to("a"), vec![Duration::from_millis(200)]);
    let ms: Vec<u128> = h
        .deployer
        .deploys_to("b")
        .iter()
        .map(|d| d.as_millis())
        .collect();
    // 1st at 200 ms, then after 1 s, 2 s, 4 s.
    assert_eq!(ms, vec![200, 1200, 3200, 7200]);

    let status = h.status.borrow().clone();
    let b = &status.nodes["b"];
    assert!(
        b.in_sync(1) && b.last_error.is_none() && b.consecutive_failures == 0,
        "{b:?}"
    );
    assert_eq!(b.deploys, 4);
    assert_eq!(b.results["connect"], 3);
    assert_eq!(b.results["reloaded"], 1);
    // From the snapshot's arrival (0 ms) to b confirming it (7.2 s).
    assert_eq!(b.last_convergence, Some(Duration::from_millis(7200)));
    h.finish().await;
}

#[tokio::test(start_paused = true)]
async fn partial_failure_is_reported_per_node() {
    let h = start(
        FakeDeployer::new().fail("b", 100),
        &["a", "b", "c"],
        PipelineConfig::default(),
    );
    h.tx.send(snapshot(1)).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = h.status.borrow().clone();
    assert!(status.nodes["a"].in_sync(1));
    assert!(status.nodes["c"].in_sync(1));
    let b = &status.nodes["b"];
    assert!(!b.in_sync(1));
    assert_eq!(b.consecutive_failures, 2);
    assert_eq!(b.last_error.as_ref().map(|e| e.kind()), Some("connect"));
    assert_eq!(status.nodes_in_sync(), 2);
    h.finish().await;
}

#[tokio::test(start_paused = true)]
async fn a_new_snapshot_goes_out_at_once_even_to_a_node_in_backoff() {
    let h = start(
        FakeDeployer::new().fail("a", 5),
        &["a"],
        PipelineConfig::default(),
    );
    h.tx.send(snapshot(1)).unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await; // 200 ms, 1.2 s, 3.2 s; next at 7.2 s
    h.tx.send(snapshot(2)).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ms: Vec<u128> = h
        .deployer
        .deploys_to("a")
        .iter()
        .map(|d| d.as_millis())
        .collect();
    assert_eq!(ms, vec![200, 1200, 3200, 4200]);
    h.finish().await;
}

#[tokio::test(start_paused = true)]
async fn resync_repairs_drift_and_leaves_healthy_nodes_alone() {
    let config = PipelineConfig {
        resync_interval: Duration::from_secs(10),
        ..PipelineConfig::default()
    };
    let h = start(FakeDeployer::new(), &["a", "b"], config);
    h.tx.send(snapshot(1)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Someone edits node b's config by hand.
    h.deployer.set_live("b", Some(Digest::of(b"hand edited")));
    tokio::time::sleep(Duration::from_secs(10)).await;

    assert_eq!(h.deployer.deploys_to("a").len(), 1, "a was in sync");
    assert_eq!(
        h.deployer.deploys_to("b"),
        vec![Duration::from_millis(200), Duration::from_secs(10)]
    );
    assert_eq!(h.status.borrow().nodes_in_sync(), 2);
    h.finish().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_the_deploy_in_flight_finish() {
    let started = tokio::time::Instant::now();
    let deployer = FakeDeployer::new().with_delay(Duration::from_secs(5));
    let h = start(deployer, &["a"], PipelineConfig::default());
    h.tx.send(snapshot(1)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await; // deploy started at 200 ms
    h.stop.cancel();
    h.run.await.unwrap().unwrap();
    assert!(
        h.status.borrow().nodes["a"].in_sync(1),
        "the in-flight deploy completed"
    );
    assert_eq!(
        tokio::time::Instant::now() - started,
        Duration::from_millis(5200)
    );
}

#[tokio::test(start_paused = true)]
async fn invalid_snapshots_and_render_errors_never_reach_a_deployer() {
    let mut renderer = MockRenderer::new();
    renderer.expect_render().returning(|snap, node| {
        if node.name == "bad" {
            Err(Error::Render {
                node: node.name.clone(),
                message: "template error".into(),
                source: None,
            })
        } else {
            Ok(RenderedConfig::from_body(format!("{snap:?}")))
        }
    });
    let mut deployer = MockDeployer::new();
    deployer.expect_deploy().times(1).returning(|batch| {
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].node.name, "good");
        vec![NodeOutcome::ok("good", Applied::Reloaded)]
    });
    let pipeline = Pipeline::new(
        Arc::new(renderer),
        Arc::new(deployer),
        nodes(&["good", "bad"]),
        PipelineConfig::default(),
    )
    .unwrap();
    let status = pipeline.status();
    let (source, tx) = ChannelSource::new();
    let stop = CancellationToken::new();
    let run = tokio::spawn(pipeline.run(source, stop.clone()));

    // Two services on one listen port: rejected as a whole.
    let mut conflicting = snapshot(1);
    conflicting
        .insert_port(
            ServiceKey::new("a", "b").unwrap(),
            "x",
            PortSpec::new(443, ProxyProtocol::V1),
        )
        .unwrap();
    tx.send(conflicting).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        status
            .borrow()
            .source_error
            .as_deref()
            .is_some_and(|e| e.contains("listen port 443"))
    );
    assert_eq!(status.borrow().generation, 0);

    tx.send(snapshot(1)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = status.borrow().clone();
    assert!(s.nodes["good"].in_sync(1));
    assert_eq!(
        s.nodes["bad"].last_error.as_ref().map(|e| e.kind()),
        Some("render")
    );
    stop.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn batches_follow_batch_size_and_concurrency() {
    let config = PipelineConfig {
        batch_size: 10,
        ..PipelineConfig::default()
    };
    let h = start(FakeDeployer::new(), &["a", "b", "c"], config);
    h.tx.send(snapshot(1)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = h.deployer.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].nodes, vec!["a", "b", "c"]);
    h.finish().await;
}

#[test]
fn duplicate_node_names_are_refused() {
    let err = Pipeline::new(
        Arc::new(DebugRenderer),
        Arc::new(FakeDeployer::new()),
        nodes(&["a", "a"]),
        PipelineConfig::default(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("unique"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_emptied_backend_is_held_while_other_changes_go_out() {
    let config = PipelineConfig {
        empty_backend_hold: Duration::from_secs(10),
        ..PipelineConfig::default()
    };
    let h = start(FakeDeployer::new(), &["a"], config);
    h.tx.send(snapshot(2)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The source suddenly says "no endpoints": held, nothing deployed.
    h.tx.send(snapshot(0)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.deployer.calls().len(), 1);
    assert_eq!(
        h.status.borrow().held_backends,
        vec!["kube-system/traefik:websecure"]
    );
    assert_eq!(h.status.borrow().snapshot.as_deref(), Some(&snapshot(2)));

    // A flap back within the hold: the hold ends, nothing was ever emptied.
    h.tx.send(snapshot(2)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(h.status.borrow().held_backends.is_empty());
    assert_eq!(
        h.deployer.calls().len(),
        1,
        "equal to what is live: no deploy"
    );

    // Emptied for good: applied once it has lasted 10 s.
    h.tx.send(snapshot(0)).unwrap(); // applied (held) at 3.2 s
    tokio::time::sleep(Duration::from_secs(15)).await;
    let calls = h.deployer.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[1].at, Duration::from_millis(13_200));
    assert_eq!(h.status.borrow().snapshot.as_deref(), Some(&snapshot(0)));
    h.finish().await;
}

/// [`DebugRenderer`] that blames a refusal on the services named `bad*`, when there are any.
struct BlamingRenderer;

impl Renderer for BlamingRenderer {
    fn render(&self, snapshot: &Snapshot, node: &EdgeNode) -> Result<RenderedConfig> {
        DebugRenderer.render(snapshot, node)
    }

    fn blame(
        &self,
        snapshot: &Snapshot,
        _node: &EdgeNode,
        _config: &RenderedConfig,
        _error: &DeployError,
    ) -> Option<std::collections::BTreeSet<ServiceKey>> {
        Some(
            snapshot
                .services
                .keys()
                .filter(|k| k.name.starts_with("bad"))
                .cloned()
                .collect(),
        )
    }
}

fn start_with(
    renderer: Arc<dyn Renderer>,
    deployer: FakeDeployer,
    node_names: &[&str],
    config: PipelineConfig,
) -> Harness {
    let deployer = Arc::new(deployer);
    let pipeline = Pipeline::new(renderer, deployer.clone(), nodes(node_names), config).unwrap();
    let status = pipeline.status();
    let (source, tx) = ChannelSource::new();
    let stop = CancellationToken::new();
    let run = tokio::spawn(pipeline.run(source, stop.clone()));
    Harness {
        deployer,
        status,
        tx,
        stop,
        run,
    }
}

/// `snapshot(endpoints)` plus a service `ns/NAME` listening on `listen`.
fn with_service(mut snap: Snapshot, name: &str, listen: u16, endpoint: u8) -> Snapshot {
    snap.insert_port(
        ServiceKey::new("ns", name).unwrap(),
        "p",
        PortSpec::new(listen, ProxyProtocol::V2)
            .with_endpoint(Endpoint::ready([10, 1, 0, endpoint].into(), 80)),
    )
    .unwrap();
    snap
}

/// Node `b` refuses any config holding the service `bad` (its port is taken there).
fn b_refuses_bad(c: &NodeConfig) -> Option<DeployError> {
    (c.node.name == "b" && c.config.text.contains("name: \"bad\"")).then(|| {
        DeployError::ListenPortTaken {
            node: "b".into(),
            ports: vec![22],
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_hung_node_holds_up_neither_the_source_nor_the_other_nodes() {
    let deployer = FakeDeployer::new().with_node_delay("b", Duration::from_secs(60));
    let h = start(deployer, &["a", "b", "c"], PipelineConfig::default());
    for n in 1..=3u8 {
        h.tx.send(snapshot(n)).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // b's first deploy (at 200 ms) hangs for a minute; a and c took every change 200 ms
    // after it was sent.
    for node in ["a", "c"] {
        assert_eq!(
            h.deployer.deploys_to(node),
            vec![
                Duration::from_millis(200),
                Duration::from_millis(1200),
                Duration::from_millis(2200)
            ],
            "{node}"
        );
    }
    assert_eq!(h.deployer.deploys_to("b"), vec![Duration::from_millis(200)]);
    let status = h.status.borrow().clone();
    assert_eq!(status.generation, 3, "the source was read throughout");
    assert!(status.nodes["a"].in_sync(3) && status.nodes["c"].in_sync(3));
    assert!(
        status.nodes["b"].deploying_since.is_some(),
        "the hung deploy shows in the status"
    );
    h.finish().await;
}

#[tokio::test(start_paused = true)]
async fn a_refused_service_is_quarantined_on_that_node_and_the_rest_goes_out_at_once() {
    let deployer = FakeDeployer::new().refusing(b_refuses_bad);
    let config = PipelineConfig {
        resync_interval: Duration::from_secs(60),
        ..PipelineConfig::default()
    };
    let h = start_with(Arc::new(BlamingRenderer), deployer, &["a", "b"], config);
    h.tx.send(snapshot(1)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.tx.send(with_service(snapshot(1), "bad", 22, 1)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // b refused the config with `bad`; without it, b's config is the one it runs already.
    assert_eq!(
        h.deployer.deploys_to("b"),
        vec![Duration::from_millis(200), Duration::from_millis(1200)]
    );
    let status = h.status.borrow().clone();
    let key = ServiceKey::new("ns", "bad").unwrap();
    assert!(
        status.nodes["b"].quarantined.contains_key(&key),
        "{status:?}"
    );
    assert!(status.nodes["b"].in_sync(2) && status.nodes["a"].in_sync(2));
    assert!(
        status.nodes["b"].last_error.is_none(),
        "not a failure of the node"
    );
    let live_b = status.nodes["b"].live_snapshot.clone().unwrap();
    assert!(!live_b.services.contains_key(&key));
    assert!(
        status.nodes["a"]
            .live_snapshot
            .as_ref()
            .unwrap()
            .services
            .contains_key(&key)
    );

    // Other services' changes keep going out to b; `bad` is not tried again meanwhile.
    h.tx.send(with_service(snapshot(2), "bad", 22, 1)).unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        h.deployer.deploys_to("b").len(),
        3,
        "{:?}",
        h.deployer.calls()
    );
    assert!(h.status.borrow().nodes["b"].in_sync(3));

    // Its own input changes: tried again (refused again, quarantined again).
    h.tx.send(with_service(snapshot(2), "bad", 22, 2)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        h.deployer.deploys_to("b").len(),
        4,
        "{:?}",
        h.deployer.calls()
    );
    // At the resync (60 s), once more; never in a loop.
    tokio::time::sleep(Duration::from_secs(50)).await;
    assert_eq!(
        h.deployer.deploys_to("b").len(),
        5,
        "{:?}",
        h.deployer.calls()
    );
    assert!(h.status.borrow().nodes["b"].quarantined.contains_key(&key));
    h.finish().await;
}

#[tokio::test(start_paused = true)]
async fn a_refused_config_nothing_can_be_blamed_for_is_not_sent_again_unchanged() {
    fn refuse_all_on_b(c: &NodeConfig) -> Option<DeployError> {
        (c.node.name == "b").then(|| DeployError::ConfigRejected {
            node: "b".into(),
            haproxy_output: "[ALERT] parsing [haproxy.cfg:3] : unknown keyword in 'global'".into(),
        })
    }
    let deployer = FakeDeployer::new().refusing(refuse_all_on_b);
    let h = start(deployer, &["a", "b"], PipelineConfig::default());
    h.tx.send(snapshot(1)).unwrap();
    tokio::time::sleep(Duration::from_secs(50)).await;
    assert_eq!(h.deployer.deploys_to("b").len(), 1, "no retry loop");
    let b = h.status.borrow().nodes["b"].clone();
    assert_eq!(
        b.last_error.as_ref().map(DeployError::kind),
        Some("config-rejected")
    );
    // A new input renders another config: that one is tried.
    h.tx.send(snapshot(2)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.deployer.deploys_to("b").len(), 2);
    // The resync (60 s) tries again.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(h.deployer.deploys_to("b").len(), 3);
    assert!(h.status.borrow().nodes["a"].in_sync(2));
    h.finish().await;
}

#[tokio::test(start_paused = true)]
async fn without_the_renderers_word_the_services_changed_since_the_last_good_config_are_blamed() {
    let deployer = FakeDeployer::new().refusing(b_refuses_bad);
    // DebugRenderer cannot tell: the change that came with the refusal is blamed.
    let h = start(deployer, &["a", "b"], PipelineConfig::default());
    h.tx.send(snapshot(1)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.tx.send(with_service(snapshot(1), "bad", 22, 1)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = h.status.borrow().clone();
    let key = ServiceKey::new("ns", "bad").unwrap();
    assert_eq!(
        status.nodes["b"].quarantined.keys().collect::<Vec<_>>(),
        vec![&key]
    );
    assert!(status.nodes["b"].in_sync(2));
    h.finish().await;
}

#[tokio::test(start_paused = true)]
async fn a_service_every_node_refused_is_not_held_when_it_leaves() {
    fn refuse_bad(c: &NodeConfig) -> Option<DeployError> {
        c.config
            .text
            .contains("name: \"bad\"")
            .then(|| DeployError::ListenPortTaken {
                node: c.node.name.clone(),
                ports: vec![22],
            })
    }
    let deployer = FakeDeployer::new().refusing(refuse_bad);
    let config = PipelineConfig {
        empty_backend_hold: Duration::from_secs(10),
        ..PipelineConfig::default()
    };
    let h = start_with(Arc::new(BlamingRenderer), deployer, &["a", "b"], config);
    h.tx.send(with_service(snapshot(1), "bad", 22, 1)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.status.borrow().quarantined().len(), 1);
    // The source drops it: nothing is held, no edge ever ran it.
    h.tx.send(snapshot(1)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = h.status.borrow().clone();
    assert!(
        status.held_backends.is_empty(),
        "{:?}",
        status.held_backends
    );
    assert_eq!(status.snapshot.as_deref(), Some(&snapshot(1)));
    assert!(status.quarantined().is_empty());
    h.finish().await;
}

/// Probes that fail for the nodes in `down` and never answer for those in `hung`.
#[derive(Default)]
struct FakeProbe {
    down: Mutex<Vec<String>>,
    hung: Mutex<Vec<String>>,
}

#[async_trait]
impl crate::HealthProbe for FakeProbe {
    async fn probe_health(&self, node: &EdgeNode, _ports: &[u16]) -> Result<(), DeployError> {
        if self.hung.lock().unwrap().contains(&node.name) {
            std::future::pending::<()>().await;
        }
        if self.down.lock().unwrap().contains(&node.name) {
            return Err(DeployError::Connect {
                node: node.name.clone(),
                message: "connection refused".into(),
            });
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn health_follows_probes_with_fall_and_rise_even_while_a_deploy_hangs() {
    let deployer = Arc::new(FakeDeployer::new().with_node_delay("b", Duration::from_secs(3600)));
    let probe = Arc::new(FakeProbe::default());
    let pipeline = Pipeline::new(
        Arc::new(DebugRenderer),
        deployer.clone(),
        nodes(&["a", "b"]),
        PipelineConfig::default(), // probes every 2 s, timeout 3 s, fall 3, rise 2
    )
    .unwrap()
    .with_health_probe(probe.clone());
    let status = pipeline.status();
    let (source, tx) = ChannelSource::new();
    let stop = CancellationToken::new();
    let run = tokio::spawn(pipeline.run(source, stop.clone()));
    tx.send(snapshot(1)).unwrap();

    // Probes at 0 s and 2 s: healthy (rise 2), b too although its deploy hangs.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let s = status.borrow().clone();
    assert!(
        s.nodes["a"].health.is_healthy() && s.nodes["b"].health.is_healthy(),
        "{s:?}"
    );
    assert_eq!(s.nodes["b"].health_transitions, 1);

    // a goes down at 2.1 s: probes at 4, 6, 8 s fail; unhealthy at the third.
    probe.down.lock().unwrap().push("a".into());
    tokio::time::sleep(Duration::from_millis(3900)).await; // 6.0 s
    assert!(
        status.borrow().nodes["a"].health.is_healthy(),
        "2 failures: not yet"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await; // 8.1 s
    let a = status.borrow().nodes["a"].clone();
    assert!(
        matches!(&a.health, EdgeHealth::Unhealthy { reason, .. } if reason.contains("connection refused")),
        "{a:?}"
    );
    assert!(status.borrow().nodes["b"].health.is_healthy());

    // b's probes stop answering: each times out after 3 s, and three make it unhealthy.
    probe.hung.lock().unwrap().push("b".into());
    tokio::time::sleep(Duration::from_secs(16)).await;
    let b = status.borrow().nodes["b"].clone();
    assert!(
        matches!(&b.health, EdgeHealth::Unhealthy { reason, .. } if reason.contains("no answer")),
        "{b:?}"
    );

    // a comes back: healthy after two good probes.
    probe.down.lock().unwrap().clear();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let a = status.borrow().nodes["a"].clone();
    assert!(a.health.is_healthy(), "{a:?}");
    assert_eq!(a.health_transitions, 3, "healthy, unhealthy, healthy");
    stop.cancel();
    // b's deploy hangs for an hour: the pipeline waits for it (a deploy is never cut).
    tokio::time::sleep(Duration::from_secs(3600)).await;
    run.await.unwrap().unwrap();
}

/// Every config a deployer gets is whole, retries included (the lane lends its config to the
/// deployer and takes it back), and the desired state is one snapshot shared by the status
/// and every node that serves all of it, not a copy each.
#[tokio::test(start_paused = true)]
async fn configs_are_lent_whole_and_the_snapshot_is_shared() {
    let seen: Arc<Mutex<Vec<bool>>> = Arc::default();
    let record = seen.clone();
    let deployer = FakeDeployer::new()
        .refusing(move |c: &NodeConfig| {
            let whole = c
                .config
                .text
                .split_once('\n')
                .is_some_and(|(_, body)| Digest::of(body.as_bytes()) == c.config.digest);
            record.lock().unwrap().push(whole);
            None
        })
        .fail("b", 2);
    let h = start(deployer, &["a", "b"], PipelineConfig::default());
    h.tx.send(snapshot(2)).unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;

    assert_eq!(
        h.deployer.deploys_to("b").len(),
        3,
        "two failures, then a retry that works"
    );
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 4 && seen.iter().all(|w| *w), "{seen:?}");
    let status = h.status.borrow().clone();
    let desired = status.snapshot.clone().unwrap();
    for node in ["a", "b"] {
        let live = status.nodes[node].live_snapshot.clone().unwrap();
        assert!(Arc::ptr_eq(&live, &desired), "{node} holds a copy");
    }
    h.finish().await;
}
