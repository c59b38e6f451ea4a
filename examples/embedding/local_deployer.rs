//! The local deployer keeping a real haproxy on this machine in sync, as `edgelb run` does
//! with `deployer: {local: …}`: it starts haproxy (master-worker, master socket) on the
//! first deploy, listening on a free loopback port in front of two demo backends, then
//! moves the service from one backend to the other. The move changes server lines only,
//! so it goes through HAProxy's runtime API without a reload. Requests through the edge
//! show which backend answers and that it got the client's address in a PROXY v2 header.
//! Dropping the deployer stops the haproxy it started.
//!
//! Needs `haproxy` on PATH (Debian: `apt-get install haproxy`); everything else lives in a
//! temporary directory and on 127.0.0.1. Exits non-zero when a step fails.
//!
//! Run: `cargo run -p edgelb-examples --bin local_deployer`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use edgelb_core::{
    Applied, CancellationToken, ChannelSource, Endpoint, Pipeline, PipelineConfig, PortSpec,
    ProxyProtocol, ServiceKey, Snapshot,
};
use edgelb_examples::{
    ScratchHaproxy, ask, demo_backend, free_port, haproxy_installed, loopback_node,
    wait_for_backend,
};
use edgelb_haproxy::{HaproxyRenderer, LocalDeployer};

type Error = Box<dyn std::error::Error>;

const NODE: &str = "local";

/// Service `demo/web` on the edge's port `listen`, served by `backend`.
fn snapshot(listen: u16, backend: SocketAddr) -> Result<Snapshot, Error> {
    let mut snapshot = Snapshot::default();
    snapshot.insert_port(
        ServiceKey::new("demo", "web")?,
        "http",
        PortSpec::new(listen, ProxyProtocol::V2)
            .with_endpoint(Endpoint::ready(backend.ip(), backend.port())),
    )?;
    Ok(snapshot)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    if !haproxy_installed() {
        return Err("haproxy is not installed (Debian: apt-get install haproxy)".into());
    }
    let scratch = ScratchHaproxy::new()?;
    let demo1 = demo_backend("demo-1").await?;
    let demo2 = demo_backend("demo-2").await?;
    let listen = free_port()?;

    let deployer = Arc::new(LocalDeployer::new(NODE, scratch.layout())?.start_if_missing(true));
    let pipeline = Pipeline::new(
        Arc::new(HaproxyRenderer::new(scratch.render_options())?),
        deployer.clone(),
        vec![loopback_node(NODE, listen)],
        PipelineConfig::default(),
    )?
    // The local deployer also probes the edge's health (edgelb's /readyz and DNS use it).
    .with_health_probe(deployer.clone());
    let mut status = pipeline.status();
    let (source, snapshots) = ChannelSource::new();
    let stop = CancellationToken::new();
    let running = tokio::spawn(pipeline.run(source, stop.clone()));
    let in_sync = |generation| {
        move |s: &edgelb_core::PipelineStatus| {
            s.nodes.get(NODE).is_some_and(|n| n.in_sync(generation))
        }
    };
    let within = Duration::from_secs(15);

    snapshots.send(snapshot(listen, demo1)?)?;
    tokio::time::timeout(within, status.wait_for(in_sync(1))).await??;
    let answer = wait_for_backend(listen, "demo-1", within).await?;
    println!("haproxy started, through 127.0.0.1:{listen}: {answer}");
    if !answer.contains("proxy=v2") || !answer.contains("client=127.0.0.1:") {
        return Err(
            format!("the backend did not get the client address over PROXY v2: {answer}").into(),
        );
    }

    snapshots.send(snapshot(listen, demo2)?)?;
    let outcome = tokio::time::timeout(within, status.wait_for(in_sync(2)))
        .await??
        .nodes
        .get(NODE)
        .and_then(|n| n.last_outcome);
    if outcome != Some(Applied::RuntimeUpdated) {
        return Err(format!("expected a runtime update without a reload, got {outcome:?}").into());
    }
    let answer = wait_for_backend(listen, "demo-2", within).await?;
    println!("moved without a reload: {answer}");

    stop.cancel();
    running.await??;
    drop(deployer); // the last owner: stops the haproxy it started
    let deadline = tokio::time::Instant::now() + within;
    while ask(listen).await.is_ok() {
        if tokio::time::Instant::now() >= deadline {
            return Err("haproxy still answers after the deployer was dropped".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("haproxy stopped with the deployer");
    Ok(())
}
