//! One module per subcommand.

pub mod check;
pub mod demo_backend;
pub mod render;
pub mod run;

use std::sync::Arc;

use edgelb_core::{EdgeNode, RenderedConfig, Renderer, Snapshot};
use edgelb_haproxy::HaproxyRenderer;

use crate::config::LoadedConfig;
use crate::error::Result;

/// The renderer the config asks for.
pub fn renderer(loaded: &LoadedConfig) -> Result<Arc<HaproxyRenderer>> {
    Ok(Arc::new(HaproxyRenderer::new(
        loaded.config.haproxy.clone(),
    )?))
}

/// Renders `snapshot` for every edge, in config order.
pub fn render_all(
    renderer: &dyn Renderer,
    snapshot: &Snapshot,
    edges: &[EdgeNode],
) -> Vec<(String, edgelb_core::Result<RenderedConfig>)> {
    edges
        .iter()
        .map(|node| (node.name.clone(), renderer.render(snapshot, node)))
        .collect()
}
