//! The pipeline with placed services: each node gets the services of its pools only, and a
//! snapshot whose pools collide on a shared edge never reaches a node.

use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::{
    Applied, ChannelSource, DeployError, Digest, Endpoint, NodeConfig, NodeOutcome, PortSpec,
    ProxyProtocol, RenderedConfig, ServiceKey,
};

/// Renders the node name and the service names it got.
struct NamesRenderer;

impl Renderer for NamesRenderer {
    fn render(&self, snapshot: &Snapshot, node: &EdgeNode) -> Result<RenderedConfig> {
        let names: Vec<String> = snapshot.services.keys().map(ToString::to_string).collect();
        Ok(RenderedConfig::from_body(format!(
            "{} {}\n",
            node.name,
            names.join(",")
        )))
    }
}

/// Takes every config.
struct TakesAll;

#[async_trait]
impl Deployer for TakesAll {
    async fn deploy(&self, batch: &[NodeConfig]) -> Vec<NodeOutcome> {
        batch
            .iter()
            .map(|c| NodeOutcome::ok(c.node.name.clone(), Applied::Reloaded))
            .collect()
    }

    async fn live_digest(&self, _: &EdgeNode) -> Result<Option<Digest>, DeployError> {
        Ok(None)
    }
}

fn placed(services: &[(&str, &str, u16)]) -> Snapshot {
    let mut snap = Snapshot::default();
    for (name, pool, listen) in services {
        let key = ServiceKey::new("ns", *name).unwrap();
        snap.insert_port(
            key.clone(),
            "p",
            PortSpec::new(*listen, ProxyProtocol::V2)
                .with_endpoint(Endpoint::ready([10, 0, 0, 1].into(), 80)),
        )
        .unwrap();
        snap.services.get_mut(&key).unwrap().pool = Some((*pool).to_owned());
    }
    snap
}

fn live_services(status: &PipelineStatus, node: &str) -> Vec<String> {
    status.nodes[node]
        .live_snapshot
        .as_ref()
        .map(|s| s.services.keys().map(|k| k.name.clone()).collect())
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn each_node_runs_the_services_of_its_pools_only() {
    let nodes = vec![
        EdgeNode::new("pub-1").with_pool("public"),
        EdgeNode::new("int-1").with_pool("internal"),
        EdgeNode::new("both")
            .with_pool("public")
            .with_pool("internal"),
    ];
    let pipeline = Pipeline::new(
        Arc::new(NamesRenderer),
        Arc::new(TakesAll),
        nodes,
        PipelineConfig::default(),
    )
    .unwrap();
    let status = pipeline.status();
    let (source, tx) = ChannelSource::new();
    let stop = CancellationToken::new();
    let run = tokio::spawn(pipeline.run(source, stop.clone()));

    // Port 443 twice, in two pools: fine on the dedicated edges, but `both` is in both.
    tx.send(placed(&[
        ("web", "public", 443),
        ("admin", "internal", 443),
    ]))
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    {
        let s = status.borrow();
        let error = s.source_error.clone().unwrap_or_default();
        assert!(error.contains("listen port 443"), "{error}");
        assert_eq!(s.nodes_in_sync(), 0, "nothing of it reaches a node");
    }

    tx.send(placed(&[
        ("web", "public", 443),
        ("admin", "internal", 8443),
    ]))
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    {
        let s = status.borrow();
        assert_eq!(s.source_error, None);
        assert_eq!(live_services(&s, "pub-1"), ["web"]);
        assert_eq!(live_services(&s, "int-1"), ["admin"]);
        assert_eq!(live_services(&s, "both"), ["admin", "web"]);
    }
    stop.cancel();
    run.await.unwrap().unwrap();
}
