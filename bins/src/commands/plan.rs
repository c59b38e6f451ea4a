//! `edgelb plan`: for each edge, the diff between its live config and what would be
//! deployed. Changes nothing.

use std::process::ExitCode;

use similar::TextDiff;

use crate::config::LoadedConfig;
use crate::error::Result;

/// Exit code when every edge runs what would be deployed.
pub const IN_SYNC: u8 = 0;
/// Exit code when an edge could not be read or rendered.
pub const FAILED: u8 = 1;
/// Exit code when at least one edge would change (like `terraform plan -detailed-exitcode`).
pub const CHANGES: u8 = 2;

/// Prints one section per edge and returns [`IN_SYNC`], [`CHANGES`] or [`FAILED`].
pub async fn run(loaded: &LoadedConfig) -> Result<ExitCode> {
    let config = &loaded.config;
    let snapshot = super::snapshot_once(loaded).await?;
    let deployer = super::deployer(loaded)?;
    let mut code = IN_SYNC;
    for node in &config.edges {
        let live = match deployer.live_config(node).await {
            Ok(live) => live.unwrap_or_default(),
            Err(e) => {
                println!("=== {}: cannot read the live config: {e}", node.name);
                code = FAILED;
                continue;
            }
        };
        // A renderer that carries on from the edge's own server slots, as the running
        // controller does: endpoints that stay keep their lines.
        let renderer = super::renderer(loaded)?;
        renderer.seed_slots_from_config(&live);
        let desired = match renderer.render_config(&snapshot, node) {
            Ok(r) => r,
            Err(e) => {
                println!("=== {}: cannot render: {e}", node.name);
                code = FAILED;
                continue;
            }
        };
        if live == desired.text {
            println!(
                "=== {}: in sync (digest {})",
                node.name,
                desired.digest.short()
            );
            continue;
        }
        println!("=== {}: would change", node.name);
        let diff = TextDiff::from_lines(live.as_str(), desired.text.as_str());
        print!(
            "{}",
            diff.unified_diff().context_radius(3).header(
                &format!("{} (live)", node.name),
                &format!("{} (desired)", node.name)
            )
        );
        if code == IN_SYNC {
            code = CHANGES;
        }
    }
    if code == FAILED {
        eprintln!("edgelb: plan could not look at every edge (see above)");
    }
    Ok(ExitCode::from(code))
}
