//! One module per subcommand.

pub mod check;
pub mod demo_backend;
pub mod plan;
pub mod render;
pub mod run;

use std::sync::Arc;

use edgelb_core::{Deployer, EdgeNode, RenderedConfig, Renderer, Snapshot};
use edgelb_haproxy::{HaproxyRenderer, LocalDeployer};

use crate::config::{DeployerConfig, LoadedConfig};
use crate::error::Result;

/// The renderer the config asks for.
pub fn renderer(loaded: &LoadedConfig) -> Result<Arc<HaproxyRenderer>> {
    Ok(Arc::new(HaproxyRenderer::new(
        loaded.config.haproxy.clone(),
    )?))
}

/// The deployer the config asks for.
pub fn deployer(loaded: &LoadedConfig) -> Result<Arc<dyn Deployer>> {
    let config = &loaded.config;
    Ok(match &config.deployer {
        DeployerConfig::Local(local) => Arc::new(
            LocalDeployer::new(config.edges[0].name.clone(), local.layout())?
                .start_if_missing(local.start_haproxy),
        ),
    })
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
