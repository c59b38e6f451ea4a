//! The pipeline, the real renderer and the real deploy transaction on simulated edges.

use std::time::Duration;

use edgelb_core::{
    Applied, CancellationToken, ChannelSource, Deployer, Endpoint, Pipeline, PipelineConfig,
    PortSpec, ProxyProtocol, ServiceKey, Snapshot,
};

use super::*;
use crate::{HaproxyRenderer, RenderOptions};

const BACKEND: &str = "be_web_app_http";

fn snapshot(last_octets: &[u8]) -> Snapshot {
    let mut spec = PortSpec::new(80, ProxyProtocol::V2);
    for &o in last_octets {
        spec = spec.with_endpoint(Endpoint::ready([10, 0, 0, o].into(), 8080));
    }
    let mut snapshot = Snapshot::default();
    snapshot
        .insert_port(ServiceKey::new("web", "app").unwrap(), "http", spec)
        .unwrap();
    snapshot
}

#[tokio::test(start_paused = true)]
async fn endpoint_changes_skip_reloads_and_hand_edits_are_put_back_at_resync() {
    let deployer = Arc::new(
        SimDeployer::new()
            .with_edge(SimEdge::new().named("a"))
            .with_edge(SimEdge::new().named("b").rejecting_configs()),
    );
    let pipeline = Pipeline::new(
        Arc::new(HaproxyRenderer::new(RenderOptions::default()).unwrap()),
        deployer.clone(),
        ["a", "b"].map(edgelb_core::EdgeNode::new).into(),
        PipelineConfig {
            resync_interval: Duration::from_secs(30),
            ..PipelineConfig::default()
        },
    )
    .unwrap();
    let mut status = pipeline.status();
    let (source, snapshots) = ChannelSource::new();
    let stop = CancellationToken::new();
    let run = tokio::spawn(pipeline.run(source, stop.clone()));
    let a = deployer.edge("a").unwrap();
    let b = deployer.edge("b").unwrap();

    snapshots.send(snapshot(&[1])).unwrap();
    status
        .wait_for(|s| s.nodes.get("a").is_some_and(|n| n.in_sync(1)))
        .await
        .unwrap();
    assert_eq!(a.reload_count(), 1, "a fresh edge is reloaded once");
    assert_eq!(b.live_config(), None, "b rejected it and runs nothing");

    snapshots.send(snapshot(&[1, 2])).unwrap();
    status
        .wait_for(|s| s.nodes.get("a").is_some_and(|n| n.in_sync(2)))
        .await
        .unwrap();
    assert_eq!(a.reload_count(), 1, "an endpoint change needs no reload");
    let s002 = a.server(BACKEND, "s002").unwrap();
    assert_eq!((s002.address.as_str(), s002.port), ("10.0.0.2", 8080));

    // By hand: s001 into maintenance. The next resync puts it back through the runtime API.
    a.runtime_command(&format!("set server {BACKEND}/s001 state maint"));
    assert!(a.server(BACKEND, "s001").unwrap().in_maintenance());
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert!(!a.server(BACKEND, "s001").unwrap().in_maintenance());
    assert_eq!(a.reload_count(), 1);
    assert!(status.borrow().nodes["a"].in_sync(2));
    assert!(
        a.commands()
            .iter()
            .any(|c| c.contains(&format!("set server {BACKEND}/s001 state ready"))),
        "{:?}",
        a.commands()
    );

    stop.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_unknown_node_fails_like_an_unreachable_edge() {
    let deployer = SimDeployer::new().with_edge(SimEdge::new().named("a"));
    let node = edgelb_core::EdgeNode::new("z");
    let err = deployer.live_digest(&node).await.unwrap_err();
    assert!(matches!(err, DeployError::Connect { .. }), "{err}");
    let config = edgelb_core::RenderedConfig::from_body("global\n".into());
    let outcomes = deployer
        .deploy(&[edgelb_core::NodeConfig { node, config }])
        .await;
    assert_eq!(outcomes[0].node, "z");
    assert!(outcomes[0].result.is_err());
    assert_ne!(outcomes[0].result, Ok(Applied::Reloaded));
}
