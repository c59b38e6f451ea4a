//! `edgelb render`: print each edge's config.

use crate::config::LoadedConfig;
use crate::error::{Error, Result};
use crate::out::{outln, write};

/// Prints the config of `node`, or of the only edge, as a plain file `haproxy -c` reads.
/// With several edges and no `node`, prints each under a `### node NAME` line (comments to
/// HAProxy, but one stream of several configs: split it, or use `--node`).
///
/// A Kubernetes source without a cluster renders an empty state, as `check` does, and says
/// so on stderr.
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
                    message: format!(
                        "no edge named {name:?} in edges; the edges are: {}",
                        config
                            .edges
                            .iter()
                            .map(|e| e.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })?,
        ],
        None => config.edges.clone(),
    };
    let (snapshot, offline) = super::snapshot_or_offline(loaded).await?;
    if let Some(why) = offline {
        tracing::warn!(reason = %why, "no cluster to read from; rendering an empty state");
    }
    let renderer = super::renderer(loaded)?;
    let headed = edges.len() > 1;
    for (name, rendered) in super::render_all(renderer.as_ref(), &snapshot, &edges) {
        let rendered = rendered?;
        if headed {
            outln!("### node {name}")?;
        }
        write(&rendered.text)?;
    }
    Ok(())
}
