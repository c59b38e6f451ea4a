use async_trait::async_trait;
use edgelb_core::{
    DeployError, Digest, Endpoint, NodeConfig, NodeOutcome, PortSpec, ProxyProtocol, Renderer,
    ServiceKey, Snapshot,
};

use super::*;
use crate::RenderOptions;

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

fn renderer() -> HaproxyRenderer {
    HaproxyRenderer::new(RenderOptions::default()).unwrap()
}

/// The config an edge runs after [1, 2, 3] then [2, 3]: 10.0.0.1's slot is still leaving.
fn live_config(node: &EdgeNode) -> String {
    let old = renderer();
    old.render(&snapshot(&[1, 2, 3]), node).unwrap();
    old.render(&snapshot(&[2, 3]), node).unwrap().text
}

/// Edges by name: `hung` never answers, `down` refuses, `empty` has no config, `distro`
/// runs a distribution's config, `edited` a hand-edited `live`; anything else answers with
/// `live`. Seeding only reads whole configs: the other calls fail.
struct Edges {
    live: String,
}

#[async_trait]
impl Deployer for Edges {
    async fn deploy(&self, batch: &[NodeConfig]) -> Vec<NodeOutcome> {
        batch
            .iter()
            .map(|c| {
                NodeOutcome::failed(DeployError::Step {
                    node: c.node.name.clone(),
                    step: "deploying".into(),
                    message: "seeding must not deploy".into(),
                })
            })
            .collect()
    }

    async fn live_digest(&self, node: &EdgeNode) -> Result<Option<Digest>, DeployError> {
        Err(DeployError::Step {
            node: node.name.clone(),
            step: "reading the live digest".into(),
            message: "seeding reads whole configs".into(),
        })
    }

    async fn live_config(&self, node: &EdgeNode) -> Result<Option<String>, DeployError> {
        match node.name.as_str() {
            "hung" => std::future::pending().await,
            "down" => Err(DeployError::Connect {
                node: node.name.clone(),
                message: "connection refused".into(),
            }),
            "empty" => Ok(None),
            "distro" => Ok(Some("global\n    daemon\n".to_owned())),
            "edited" => Ok(Some(self.live.replacen("s002", "s009", 1))),
            _ => Ok(Some(self.live.clone())),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_seeded_renderer_renders_what_the_edge_runs() {
    let up = EdgeNode::new("up");
    let live = live_config(&up);
    let unseeded = renderer().render(&snapshot(&[2, 3]), &up).unwrap();
    assert_ne!(unseeded.text, live, "a fresh renderer moves the endpoints");

    let deployer = Edges { live: live.clone() };
    let edges = ["hung", "down", "empty", "distro", "edited", "up"].map(EdgeNode::new);
    let seeded = renderer();
    let from = seeded
        .seed_slots_from_edges(&deployer, &edges, SLOT_SEED_TIMEOUT)
        .await;
    assert_eq!(from.as_deref(), Some("up"));
    assert_eq!(seeded.render(&snapshot(&[2, 3]), &up).unwrap().text, live);
}

#[tokio::test(start_paused = true)]
async fn no_edge_to_read_leaves_the_renderer_fresh_within_the_timeout() {
    let node = EdgeNode::new("hung");
    let deployer = Edges {
        live: live_config(&node),
    };
    let edges = ["hung", "down", "empty", "distro", "edited"].map(EdgeNode::new);
    let seeded = renderer();
    let started = tokio::time::Instant::now();
    let from = seeded
        .seed_slots_from_edges(&deployer, &edges, SLOT_SEED_TIMEOUT)
        .await;
    assert_eq!(from, None);
    assert_eq!(started.elapsed(), SLOT_SEED_TIMEOUT);
    let fresh = renderer().render(&snapshot(&[2, 3]), &node).unwrap();
    assert_eq!(
        seeded.render(&snapshot(&[2, 3]), &node).unwrap().text,
        fresh.text
    );
}

#[tokio::test(start_paused = true)]
async fn a_deployer_that_cannot_read_live_configs_seeds_nothing_at_once() {
    /// Keeps the trait's default `live_config`, which says it cannot.
    struct Blind;

    #[async_trait]
    impl Deployer for Blind {
        async fn deploy(&self, _batch: &[NodeConfig]) -> Vec<NodeOutcome> {
            Vec::new()
        }
        async fn live_digest(&self, _node: &EdgeNode) -> Result<Option<Digest>, DeployError> {
            Ok(None)
        }
    }

    let started = tokio::time::Instant::now();
    let from = renderer()
        .seed_slots_from_edges(&Blind, &[EdgeNode::new("a")], SLOT_SEED_TIMEOUT)
        .await;
    assert_eq!(from, None);
    assert_eq!(started.elapsed(), Duration::ZERO, "no wait for the timeout");
}
