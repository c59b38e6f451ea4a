//! `edgelb plan`: for each edge, the diff between its live config and what `run` would
//! deploy, the empty-backend hold included. Changes nothing.

use std::process::ExitCode;

use similar::TextDiff;

use super::plan_hold;
use crate::config::LoadedConfig;
use crate::error::Result;
use crate::out::{outln, write};

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
    let hold = config.pipeline.empty_backend_hold;
    let mut code = IN_SYNC;
    for node in &config.edges {
        let live = match deployer.live_config(node).await {
            Ok(live) => live.unwrap_or_default(),
            Err(e) => {
                outln!("=== {}: cannot read the live config: {e}", node.name)?;
                code = FAILED;
                continue;
            }
        };
        // What `run` would put live: backends the source empties keep their live endpoints
        // for the hold time.
        let (effective, held) = plan_hold::apply(&snapshot, &live, hold);
        // A renderer that carries on from the edge's own server slots, as the running
        // controller does: endpoints that stay keep their lines.
        let renderer = super::renderer(loaded)?;
        renderer.seed_slots_from_config(&live);
        let desired = match renderer.render_config(&effective, node) {
            Ok(r) => r,
            Err(e) => {
                outln!("=== {}: cannot render: {e}", node.name)?;
                code = FAILED;
                continue;
            }
        };
        let note = if held.is_empty() {
            String::new()
        } else {
            format!(
                "; held: {} (the source has no endpoints for them: `run` keeps the live ones until that has lasted pipeline.empty_backend_hold, {}, then removes them)",
                held.join(", "),
                edgelb_core::duration::format(hold)
            )
        };
        if live == desired.text {
            outln!(
                "=== {}: in sync (digest {}){note}",
                node.name,
                desired.digest.short()
            )?;
            continue;
        }
        outln!("=== {}: would change{note}", node.name)?;
        let diff = TextDiff::from_lines(live.as_str(), desired.text.as_str());
        write(
            &diff
                .unified_diff()
                .context_radius(3)
                .header(
                    &format!("{} (live)", node.name),
                    &format!("{} (desired)", node.name),
                )
                .to_string(),
        )?;
        if code == IN_SYNC {
            code = CHANGES;
        }
    }
    if code == FAILED {
        tracing::error!("plan could not look at every edge (see above)");
    }
    Ok(ExitCode::from(code))
}
