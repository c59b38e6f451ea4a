//! Stateful tests with the `testing` doubles, the way edgelb's own tests run: on tokio's
//! paused clock (feature `test-util`), so backoff and resync timings are exact and instant.
//!
//! 1. Retries: edgelb-core's `FakeDeployer` remembers what each edge runs; `fail("edge-2",
//!    3)` makes edge-2 unreachable for three deploys, and the pipeline retries it with
//!    exponential backoff while edge-1 is done at once.
//! 2. Drift: edgelb-haproxy's `SimDeployer` runs the real deploy transaction on simulated
//!    edges (`SimEdge`: files, `haproxy -c`, master CLI and runtime API in memory). An
//!    endpoint change goes through the runtime API without a reload; a server put in
//!    maintenance by hand is put back at the next resync.
//!
//! In your crate these are `#[tokio::test(start_paused = true)]` functions; here it is a
//! program that exits non-zero when a check fails.
//!
//! Run: `cargo run -p edgelb-examples --bin simulated_edges`

use std::sync::Arc;
use std::time::Duration;

use edgelb_core::testing::FakeDeployer;
use edgelb_core::{
    CancellationToken, ChannelSource, EdgeNode, Endpoint, Pipeline, PipelineConfig, PortSpec,
    ProxyProtocol, Renderer, ServiceKey, Snapshot,
};
use edgelb_haproxy::sim_edge::{SimDeployer, SimEdge};
use edgelb_haproxy::{HaproxyRenderer, RenderOptions};

type Error = Box<dyn std::error::Error>;

/// Service `web/app` port `http` on :80 with endpoints 10.0.0.N:8080 for each N.
fn snapshot(last_octets: &[u8]) -> Result<Snapshot, Error> {
    let mut spec = PortSpec::new(80, ProxyProtocol::V2);
    for &n in last_octets {
        spec.add_endpoint(Endpoint::ready([10, 0, 0, n].into(), 8080));
    }
    let mut snapshot = Snapshot::default();
    snapshot.insert_port(ServiceKey::new("web", "app")?, "http", spec)?;
    Ok(snapshot)
}

fn check(ok: bool, what: &str) -> Result<(), Error> {
    if ok {
        println!("ok: {what}");
        Ok(())
    } else {
        Err(format!("failed: {what}").into())
    }
}

/// Edge-2 is unreachable for three deploys: retried after 1 s, 2 s and 4 s.
async fn retries() -> Result<(), Error> {
    let deployer = Arc::new(FakeDeployer::new().fail("edge-2", 3));
    let pipeline = Pipeline::new(
        Arc::new(HaproxyRenderer::new(RenderOptions::default())?),
        deployer.clone(),
        vec![EdgeNode::new("edge-1"), EdgeNode::new("edge-2")],
        PipelineConfig::default(), // debounce 200 ms, backoff from 1 s doubling
    )?;
    let status = pipeline.status();
    let (source, snapshots) = ChannelSource::new();
    let stop = CancellationToken::new();
    let running = tokio::spawn(pipeline.run(source, stop.clone()));

    snapshots.send(snapshot(&[1])?)?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let ms = |v: Vec<Duration>| v.iter().map(Duration::as_millis).collect::<Vec<_>>();
    check(
        ms(deployer.deploys_to("edge-1")) == [200],
        "edge-1 deployed once, after the 200 ms debounce",
    )?;
    let edge2 = ms(deployer.deploys_to("edge-2"));
    check(
        edge2 == [200, 1200, 3200, 7200],
        &format!("edge-2 retried with backoff 1 s, 2 s, 4 s: {edge2:?}"),
    )?;
    check(
        status.borrow().nodes_in_sync() == 2 && deployer.live("edge-2").is_some(),
        "both edges run their config in the end",
    )?;
    stop.cancel();
    running.await??;
    Ok(())
}

/// Endpoint changes without reloads, and drift put back at the resync.
async fn drift() -> Result<(), Error> {
    let deployer = Arc::new(SimDeployer::new().with_edge(SimEdge::new().named("edge-1")));
    let edge = deployer.edge("edge-1").ok_or("no edge-1")?;
    let renderer = Arc::new(HaproxyRenderer::new(RenderOptions::default())?);
    let pipeline = Pipeline::new(
        renderer.clone(),
        deployer.clone(),
        vec![EdgeNode::new("edge-1")],
        PipelineConfig {
            resync_interval: Duration::from_secs(30),
            ..PipelineConfig::default()
        },
    )?;
    let (source, snapshots) = ChannelSource::new();
    let stop = CancellationToken::new();
    let running = tokio::spawn(pipeline.run(source, stop.clone()));
    let backend = edgelb_haproxy::backend_name(&ServiceKey::new("web", "app")?, "http")?;

    snapshots.send(snapshot(&[1])?)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    check(
        edge.reload_count() == 1,
        "a new edge gets its first config with a reload",
    )?;

    snapshots.send(snapshot(&[1, 2])?)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s002 = edge.server(&backend, "s002").ok_or("no server s002")?;
    check(
        edge.reload_count() == 1 && s002.address == "10.0.0.2" && !s002.in_maintenance(),
        "a new endpoint goes live through the runtime API, without a reload",
    )?;

    edge.runtime_command(&format!("set server {backend}/s001 state maint"));
    tokio::time::sleep(Duration::from_secs(30)).await;
    let s001 = edge.server(&backend, "s001").ok_or("no server s001")?;
    check(
        !s001.in_maintenance() && edge.reload_count() == 1,
        "a server put in maintenance by hand is put back at the resync, without a reload",
    )?;
    let expected = renderer.render(&snapshot(&[1, 2])?, &EdgeNode::new("edge-1"))?;
    check(
        edge.live_config() == Some(expected.text),
        "the edge's file is the rendered config",
    )?;
    stop.cancel();
    running.await??;
    Ok(())
}

fn main() -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?;
    runtime.block_on(async {
        retries().await?;
        drift().await
    })
}
