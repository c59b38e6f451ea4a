//! Slot seeding: a controller that starts (or starts leading) while its edges already run a
//! config carries on from the server slots live there, so endpoints keep their slots,
//! removed endpoints keep draining in theirs, and an unchanged cluster deploys nothing.
//!
//! Call [`HaproxyRenderer::seed_slots_from_edges`] once before the pipeline's first render
//! (that is, before [`Pipeline::run`](edgelb_core::Pipeline::run)); without it, a restarted
//! controller places endpoints afresh and every edge gets one runtime update or reload.

use std::time::Duration;

use edgelb_core::{Deployer, EdgeNode};
use futures::StreamExt;

use crate::HaproxyRenderer;
use edgelb_core::is_edgelbs_own;

/// How long edgelb's controller lets seeding hold up its first deploy, whatever the number
/// of edges: a sensible `timeout` for [`HaproxyRenderer::seed_slots_from_edges`].
pub const SLOT_SEED_TIMEOUT: Duration = Duration::from_secs(10);

/// Edges asked at once (the Ansible deployer starts a playbook run per edge).
const CONCURRENT_READS: usize = 8;

impl HaproxyRenderer {
    /// Seeds this renderer's server slots from the live config of the first edge to hand
    /// over one that edgelb wrote and nobody edited since, with server slots in it (edges
    /// are asked concurrently through [`Deployer::live_config`]; they normally hold the same
    /// slots). Returns that edge's name, or `None` when no edge did so within `timeout` (the
    /// deployer cannot read live configs, the edges are unreachable, new or edited by hand):
    /// the renderer then places endpoints afresh, which costs at most one runtime update or
    /// reload per edge. Never fails: every edge's problem is logged and skipped.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use edgelb_core::{EdgeNode, Deployer};
    /// use edgelb_haproxy::{HaproxyRenderer, RenderOptions, SLOT_SEED_TIMEOUT};
    /// # async fn start(deployer: Arc<dyn Deployer>, edges: Vec<EdgeNode>) -> Result<(), Box<dyn std::error::Error>> {
    /// let renderer = HaproxyRenderer::new(RenderOptions::default())?;
    /// renderer.seed_slots_from_edges(deployer.as_ref(), &edges, SLOT_SEED_TIMEOUT).await;
    /// // … then Pipeline::new(Arc::new(renderer), deployer, edges, config)?.run(…)
    /// # Ok(()) }
    /// ```
    pub async fn seed_slots_from_edges(
        &self,
        deployer: &dyn Deployer,
        edges: &[EdgeNode],
        timeout: Duration,
    ) -> Option<String> {
        let reads = futures::stream::iter(edges)
            .map(|node| async move { (node, deployer.live_config(node).await) })
            .buffer_unordered(CONCURRENT_READS)
            .filter_map(|(node, read)| async move { edgelbs_own_config(node, read) });
        let seeded = tokio::time::timeout(timeout, async {
            let mut reads = std::pin::pin!(reads);
            while let Some((node, live)) = reads.next().await {
                if self.seed_slots_from_config(&live) > 0 {
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
                tracing::info!(
                    "no edge has a live config to carry on from; placing endpoints afresh"
                );
                None
            }
            Err(_) => {
                tracing::warn!(timeout = ?timeout, "no edge handed over its live config in time; placing endpoints afresh");
                None
            }
        }
    }
}

/// The live config read from `node`, if it is one to seed from; logs why not otherwise.
fn edgelbs_own_config(
    node: &EdgeNode,
    read: Result<Option<String>, edgelb_core::DeployError>,
) -> Option<(&EdgeNode, String)> {
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
}

#[cfg(test)]
#[path = "slot_seed_tests.rs"]
mod tests;
