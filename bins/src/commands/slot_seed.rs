//! Slot seeding for a controller that starts (or starts leading) while edges already run a
//! config: the renderer carries on from the server slots live on an edge, so endpoints keep
//! their slots, removed endpoints keep draining in theirs, and an unchanged cluster deploys
//! nothing at all.

use std::time::Duration;

use edgelb_core::{Deployer, EdgeNode};
use edgelb_haproxy::HaproxyRenderer;

/// How long one edge may take to hand over its live config before the next one is asked.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Seeds `renderer` from the live config of the first edge, in `edges` order, that has one.
/// Returns that edge's name, or `None` when no edge could be read (the deployer cannot read
/// live configs, every edge is unreachable or has no config yet): the renderer then places
/// endpoints afresh, which costs at most one runtime update or reload per edge.
pub async fn seed_from_edges(
    renderer: &HaproxyRenderer,
    deployer: &dyn Deployer,
    edges: &[EdgeNode],
    timeout: Duration,
) -> Option<String> {
    for node in edges {
        match tokio::time::timeout(timeout, deployer.live_config(node)).await {
            Ok(Ok(Some(live))) => {
                renderer.seed_slots_from_config(&live);
                tracing::info!(node = %node.name, "carrying on from the server slots live on this edge");
                return Some(node.name.clone());
            }
            Ok(Ok(None)) => {
                tracing::debug!(node = %node.name, "no live config to seed server slots from");
            }
            Ok(Err(e)) => {
                tracing::warn!(node = %node.name, error = %e, "cannot read the live config to seed server slots; trying the next edge");
            }
            Err(_) => {
                tracing::warn!(node = %node.name, timeout = ?timeout, "reading the live config to seed server slots timed out; trying the next edge");
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use edgelb_core::testing::MockDeployer;
    use edgelb_core::{
        DeployError, Endpoint, PortSpec, ProxyProtocol, Renderer, ServiceKey, Snapshot,
    };
    use edgelb_haproxy::RenderOptions;

    use super::*;

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

    #[tokio::test]
    async fn a_seeded_renderer_renders_what_the_edge_runs() {
        let nodes = [EdgeNode::new("edge-1"), EdgeNode::new("edge-2")];
        let live = live_config(&nodes[1]);
        let mut deployer = MockDeployer::new();
        let answer = live.clone();
        deployer.expect_live_config().returning(move |node| {
            if node.name == "edge-1" {
                Err(DeployError::Connect {
                    node: node.name.clone(),
                    message: "connection refused".into(),
                })
            } else {
                Ok(Some(answer.clone()))
            }
        });

        let fresh = renderer();
        let unseeded = fresh.render(&snapshot(&[2, 3]), &nodes[1]).unwrap();
        assert_ne!(unseeded.text, live, "a fresh renderer moves the endpoints");

        let seeded = renderer();
        let from = seed_from_edges(&seeded, &deployer, &nodes, READ_TIMEOUT).await;
        assert_eq!(from.as_deref(), Some("edge-2"));
        let rendered = seeded.render(&snapshot(&[2, 3]), &nodes[1]).unwrap();
        assert_eq!(rendered.text, live);
    }

    #[tokio::test]
    async fn no_readable_edge_leaves_the_renderer_fresh() {
        let nodes = [EdgeNode::new("edge-1")];
        let mut deployer = MockDeployer::new();
        deployer.expect_live_config().returning(|_| Ok(None));
        let seeded = renderer();
        assert_eq!(
            seed_from_edges(&seeded, &deployer, &nodes, READ_TIMEOUT).await,
            None
        );
        let fresh = renderer().render(&snapshot(&[2, 3]), &nodes[0]).unwrap();
        assert_eq!(
            seeded.render(&snapshot(&[2, 3]), &nodes[0]).unwrap().text,
            fresh.text
        );
    }
}
