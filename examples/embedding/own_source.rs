//! Your own `EndpointSource`: here the endpoints of one service come from DNS (every address
//! a name resolves to), re-resolved every few seconds; edgelb's pipeline drops snapshots
//! equal to the last one, so a source may simply send its whole state each time.
//!
//! The deployer is edgelb-core's `FakeDeployer` (feature `testing`), standing in for yours
//! (`LocalDeployer`, `SshDeployer`, `edgelb_ansible::AnsibleDeployer`): the point here is
//! the source. The program resolves `localhost`, waits until the edge is in sync, prints the
//! rendered config's backend and exits non-zero if the endpoints are not there.
//!
//! Run: `cargo run -p edgelb-examples --bin own_source [HOSTNAME]`

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use edgelb_core::testing::FakeDeployer;
use edgelb_core::{
    CancellationToken, EdgeNode, Endpoint, EndpointSource, Pipeline, PipelineConfig, PortSpec,
    ProxyProtocol, Renderer, ServiceKey, Snapshot,
};
use edgelb_haproxy::{HaproxyRenderer, RenderOptions};
use futures::StreamExt;
use futures::stream::BoxStream;

/// One service port whose endpoints are the addresses `host` resolves to.
struct DnsSource {
    service: ServiceKey,
    host: String,
    /// The port the endpoints serve on.
    port: u16,
    /// The port the edges listen on.
    listen: u16,
    every: Duration,
}

impl DnsSource {
    /// The whole desired state now: one port of one service.
    async fn resolve(&self) -> edgelb_core::Result<Snapshot> {
        let addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| edgelb_core::Error::Source {
                source_name: format!("dns {}", self.host),
                message: e.to_string(),
            })?;
        let mut ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
        ips.sort();
        ips.dedup();
        let mut spec = PortSpec::new(self.listen, ProxyProtocol::V2);
        for ip in ips {
            spec.add_endpoint(Endpoint::ready(ip, self.port));
        }
        let mut snapshot = Snapshot::default();
        snapshot.insert_port(self.service.clone(), "http", spec)?;
        Ok(snapshot)
    }
}

impl EndpointSource for DnsSource {
    /// A snapshot at once, then one every `every`. A failed lookup is an `Err` item: the
    /// pipeline reports it and keeps deploying the last good snapshot.
    fn snapshots(self) -> BoxStream<'static, edgelb_core::Result<Snapshot>> {
        let ticks = tokio::time::interval(self.every);
        futures::stream::unfold((self, ticks), |(source, mut ticks)| async move {
            ticks.tick().await;
            let snapshot = source.resolve().await;
            Some((snapshot, (source, ticks)))
        })
        .boxed()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let host = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "localhost".to_owned());
    let source = DnsSource {
        service: ServiceKey::new("default", "web")?,
        host: host.clone(),
        port: 8080,
        listen: 80,
        every: Duration::from_secs(5),
    };

    let renderer = Arc::new(HaproxyRenderer::new(RenderOptions::default())?);
    let deployer = Arc::new(FakeDeployer::new());
    let node = EdgeNode::new("edge-1");
    let pipeline = Pipeline::new(
        renderer.clone(),
        deployer.clone(),
        vec![node.clone()],
        PipelineConfig::default(),
    )?;
    let mut status = pipeline.status();
    let stop = CancellationToken::new();
    let running = tokio::spawn(pipeline.run(source, stop.clone()));

    let synced = tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.nodes_in_sync() == 1),
    )
    .await
    .map(|in_sync| in_sync.map(|s| s.snapshot.clone()));
    let snapshot = match synced {
        Ok(Ok(snapshot)) => snapshot,
        Ok(Err(_)) => return Err("the pipeline stopped".into()),
        Err(_) => {
            let why = status.borrow().source_error.clone();
            return Err(format!("not in sync within 10 s (source: {why:?})").into());
        }
    };
    stop.cancel();
    running.await??;

    let snapshot = snapshot.ok_or("in sync without a snapshot")?;
    let endpoints = snapshot.endpoint_count();
    if endpoints == 0 {
        return Err(format!("{host} resolved to no address").into());
    }
    // What the edge was sent: the renderer keeps the slots, so this renders the same bytes.
    let config = renderer.render(&snapshot, &node)?;
    if deployer.live(&node.name) != Some(config.digest) {
        return Err("the edge does not run the config of the last snapshot".into());
    }
    println!("{host} → {endpoints} endpoint(s); edge-1 runs:");
    for line in config
        .text
        .lines()
        .skip_while(|l| !l.starts_with("backend "))
    {
        println!("  {line}");
    }
    Ok(())
}
