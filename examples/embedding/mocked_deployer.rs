//! The pipeline tested with a mocked deployer (edgelb-core's feature `testing`, mockall):
//! your source's snapshots go through the real HAProxy renderer, and the mock checks what
//! would reach the edges.
//!
//! A mock needs a `live_digest` expectation as well as `deploy`'s: every resync interval the
//! pipeline asks each edge what it runs, and a mock without that expectation panics. Answer
//! with the digest of what `deploy` put live, as a real edge would; answering `None` (or any
//! other digest) makes the pipeline see drift and deploy again. Here the resync runs every
//! 100 ms, and the test checks that it finds the edge in sync and deploys only once.
//!
//! In your crate this is a `#[tokio::test]`; here it is a program that panics (exit code
//! 101) when an expectation fails.
//!
//! Run: `cargo run -p edgelb-examples --bin mocked_deployer`

use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgelb_core::testing::MockDeployer;
use edgelb_core::{
    Applied, CancellationToken, ChannelSource, Digest, EdgeNode, Endpoint, NodeOutcome, Pipeline,
    PipelineConfig, PortSpec, ProxyProtocol, ServiceKey, Snapshot,
};
use edgelb_haproxy::{HaproxyRenderer, RenderOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // What the edge runs, shared by the two expectations.
    let live: Arc<Mutex<Option<Digest>>> = Arc::default();

    let mut deployer = MockDeployer::new();
    let deployed = live.clone();
    deployer.expect_deploy().times(1).returning(move |batch| {
        let config = &batch[0].config;
        assert!(
            config.text.contains("server s001 10.42.0.7:8443")
                && config.text.contains("send-proxy-v2"),
            "{}",
            config.text
        );
        *deployed.lock().unwrap_or_else(|e| e.into_inner()) = Some(config.digest);
        batch
            .iter()
            .map(|c| NodeOutcome::ok(c.node.name.clone(), Applied::Reloaded))
            .collect()
    });
    let asked = live.clone();
    deployer
        .expect_live_digest()
        .times(1..)
        .returning(move |_node| Ok(*asked.lock().unwrap_or_else(|e| e.into_inner())));

    let pipeline = Pipeline::new(
        Arc::new(HaproxyRenderer::new(RenderOptions::default())?),
        Arc::new(deployer),
        vec![EdgeNode::new("edge-1")],
        PipelineConfig {
            resync_interval: Duration::from_millis(100),
            ..PipelineConfig::default()
        },
    )?;
    let mut status = pipeline.status();
    let (source, snapshots) = ChannelSource::new();
    let stop = CancellationToken::new();
    let running = tokio::spawn(pipeline.run(source, stop.clone()));

    let mut snapshot = Snapshot::default();
    snapshot.insert_port(
        ServiceKey::new("kube-system", "traefik")?,
        "websecure",
        PortSpec::new(443, ProxyProtocol::V2)
            .with_endpoint(Endpoint::ready("10.42.0.7".parse()?, 8443)),
    )?;
    snapshots.send(snapshot)?;

    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.nodes_in_sync() == 1),
    )
    .await??;
    // A few resyncs: each asks live_digest, finds the edge in sync and deploys nothing.
    tokio::time::sleep(Duration::from_millis(350)).await;
    if status.borrow().nodes_in_sync() != 1 {
        return Err("the edge fell out of sync".into());
    }
    stop.cancel();
    // The pipeline owns the mock: it is dropped here, and checks `times(1)` and `times(1..)`.
    running.await??;
    println!("deployed once; resyncs found the edge in sync");
    Ok(())
}
