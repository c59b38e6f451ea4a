//! `edgelb render`: print each edge's config.

use std::io::Write;

use crate::config::LoadedConfig;
use crate::error::{Error, Result};

/// Prints the config of `node` (or of every edge, each under a `### node NAME` line).
pub async fn run(loaded: &LoadedConfig, node: Option<&str>) -> Result<()> {
    let config = &loaded.config;
    let edges: Vec<_> = match node {
        Some(name) => vec![
            config
                .edges
                .iter()
                .find(|e| e.name == name)
                .cloned()
                .ok_or_else(|| Error::Config {
                    path: loaded.path.clone(),
                    message: format!("no edge named {name:?} in edges"),
                })?,
        ],
        None => config.edges.clone(),
    };
    let snapshot = super::snapshot_once(loaded).await?;
    let renderer = super::renderer(loaded)?;
    let mut out = std::io::stdout().lock();
    let write_err = |e| Error::Io {
        context: "writing to stdout".into(),
        source: e,
    };
    for (name, rendered) in super::render_all(renderer.as_ref(), &snapshot, &edges) {
        let rendered = rendered?;
        if node.is_none() {
            writeln!(out, "### node {name}").map_err(write_err)?;
        }
        out.write_all(rendered.text.as_bytes()).map_err(write_err)?;
    }
    Ok(())
}
