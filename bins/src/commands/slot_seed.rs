//! Slot seeding for a controller that starts (or starts leading) while edges already run a
//! config: the renderer carries on from the server slots live on an edge, so endpoints keep
//! their slots, removed endpoints keep draining in theirs, and an unchanged cluster deploys
//! nothing at all.

use std::time::Duration;

use edgelb_core::is_edgelbs_own;
use edgelb_core::{Deployer, EdgeNode};
use edgelb_haproxy::HaproxyRenderer;
use futures::StreamExt;

/// How long seeding may hold up the first deploy, whatever the number of edges.
pub const SEED_TIMEOUT: Duration = Duration::from_secs(10);

/// Edges asked at once (the Ansible deployer starts a playbook run per edge).
const CONCURRENT_READS: usize = 8;

/// Seeds `renderer` from the live config of the first edge to hand over one that edgelb
/// wrote and nobody edited, with server slots in it (edges are asked concurrently; they
/// normally hold the same slots). Returns that edge's name, or `None` when no edge did so
/// within `timeout` (the deployer cannot read live configs, the edges are unreachable, new or
/// edited by hand): the renderer then places endpoints afresh, which costs at most one
/// runtime update or reload per edge.
pub async fn seed_from_edges(
    renderer: &HaproxyRenderer,
    deployer: &dyn Deployer,
    edges: &[EdgeNode],
    timeout: Duration,
) -> Option<String> {
    let reads = futures::stream::iter(edges)
        .map(|node| async move { (node, deployer.live_config(node).await) })
        .buffer_unordered(CONCURRENT_READS)
        .filter_map(|(node, read)| async move {
            match read {
                Ok(Some(live)) if is_edgelbs_own(&live) => Some((node, live)),
                Ok(Some(_)) => {
                    tracing::info!(node = %node.name, "the live config is not edgelb's own (new edge, or edited by hand); not seeding server slots from it");
                    None
                }
                Ok(None) => {
                    tracing::debug!(node = %node.name, "no live config to seed server slots from");
                    None
                }
                Err(e) => {
                    tracing::warn!(node = %node.name, error = %e, "cannot read the live config to seed server slots");
                    None
                }
            }
        });
    let seeded = tokio::time::timeout(timeout, async {
        let mut reads = std::pin::pin!(reads);
        while let Some((node, live)) = reads.next().await {
            if renderer.seed_slots_from_config(&live) > 0 {
                return Some(node);
            }
        }
        None
    })
    .await;
    match seeded {
        Ok(Some(node)) => {
            tracing::info!(node = %node.name, "carrying on from the server slots live on this edge");
            Some(node.name.clone())
        }
        Ok(None) => {
            tracing::info!("no edge has a live config to carry on from; placing endpoints afresh");
            None
        }
        Err(_) => {
            tracing::warn!(timeout = ?timeout, "no edge handed over its live config in time; placing endpoints afresh");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use edgelb_core::{
        DeployError, Digest, Endpoint, NodeConfig, NodeOutcome, PortSpec, ProxyProtocol, Renderer,
        ServiceKey, Snapshot,
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

    /// Edges by name: `hung` never answers, `down` refuses, `empty` has no config, `distro`
    /// runs a distribution's config, `edited` a hand-edited `live`; anything else answers
    /// with `live`.
    struct Edges {
        live: String,
    }

    #[async_trait]
    impl Deployer for Edges {
        async fn deploy(&self, _batch: &[NodeConfig]) -> Vec<NodeOutcome> {
            unreachable!("seeding never deploys")
        }

        async fn live_digest(&self, _node: &EdgeNode) -> Result<Option<Digest>, DeployError> {
            unreachable!("seeding reads whole configs")
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
        let from = seed_from_edges(&seeded, &deployer, &edges, SEED_TIMEOUT).await;
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
        let from = seed_from_edges(&seeded, &deployer, &edges, SEED_TIMEOUT).await;
        assert_eq!(from, None);
        assert_eq!(started.elapsed(), SEED_TIMEOUT);
        let fresh = renderer().render(&snapshot(&[2, 3]), &node).unwrap();
        assert_eq!(
            seeded.render(&snapshot(&[2, 3]), &node).unwrap().text,
            fresh.text
        );
    }
}
