//! Endpoint-only changes without a reload.
//!
//! When a new config differs from the live one only in server lines of backends (address,
//! port, `weight`, `disabled`; see [`LiveFile`] for what each means) and in the source ranges
//! of frontends, the running HAProxy is brought to what the new file says through the runtime
//! API ([`crate::cli::plan`], [`crate::cli::acl`]), the new
//! file is validated and swapped in (a later reload or restart then gives the same state: a
//! reload forgets runtime changes), and `show servers state` is checked against the file.
//! Anything else, or any mismatch, falls back to the validated reload of
//! [`apply_config`](super::apply_config).

use std::sync::Arc;

use edgelb_core::{Applied, DeployError, RenderedConfig};

use super::drift;
use super::reload::{reload_after_runtime_miss, validate_argv};
use crate::cli::runtime::RuntimeApi;
use crate::cli::{acl, plan};
use crate::edge_host::{EdgeHost, StageSwap, Staged};
use crate::layout::HaproxyLayout;
use crate::live_file::LiveFile;

/// The runtime-API path: `Ok(None)` when the change from `live` (its bytes and what they
/// say) to `new` (the file of `config`) is not endpoint-only (nothing was touched: go on
/// with the reload), else how it was applied. The runtime API brings the running servers to
/// the new file; the file is then written, validated and swapped in (the previous one kept)
/// without a reload, and `show servers state` is checked against it. A failed command or a
/// mismatch ends in a validated reload of the new file (rolled back like any reload); for a
/// rejected file the runtime changes are undone (through the runtime API, else by reloading
/// the live file) and the rejection is reported.
pub(super) async fn try_runtime_update(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    (live_bytes, live): (&[u8], &LiveFile),
    new: &Arc<LiveFile>,
    config: &RenderedConfig,
) -> Result<Option<Applied>, DeployError> {
    let node = host.node();
    // Only a file edgelb wrote and nobody edited is known to describe the running process.
    if !live.own {
        tracing::debug!(node, "live config is not edgelb's own; reloading");
        return Ok(None);
    }
    if let Err(why) = live.endpoint_only_change_to(new) {
        tracing::debug!(node, reason = %why, "not a runtime API change; reloading");
        return Ok(None);
    }
    let Some(socket) = new.stats_socket.as_deref() else {
        return Ok(None);
    };
    let api = match RuntimeApi::new(host, socket) {
        Ok(api) => api,
        Err(e) => {
            tracing::debug!(node, error = %e, "the stats socket is not usable by the runtime API client; reloading");
            return Ok(None);
        }
    };
    let (new_path, prev_path) = (layout.new_path(), layout.prev_path());
    // The running servers first, so traffic follows the change as soon as possible (and the
    // commands do not queue behind `haproxy -c` for the CPU); then the safety net in one
    // request where the host can: the new file written and validated, the previous one kept,
    // the new one swapped in, while `show servers state` is checked.
    let pushed = async {
        let servers = plan::push(&api, &new.servers).await?;
        let lists = acl::push(host, socket, &live.source_acls, &new.source_acls)
            .await
            .map_err(Box::new)?;
        Ok::<_, plan::RuntimeUpdateError>(servers + lists)
    }
    .await;
    let validate = validate_argv(layout, &new_path);
    let request = StageSwap {
        live_path: &layout.config_path,
        new_path: &new_path,
        prev_path: &prev_path,
        contents: config.text.as_bytes(),
        validate: &validate,
        keep_live: Some(live_bytes),
        expect_stamp: None,
    };
    let (staged, checked) = futures::join!(host.stage_and_swap(&request), async {
        let commands = pushed?;
        plan::verify(&api, &new.servers).await?;
        acl::verify(host, socket, &new.source_acls)
            .await
            .map_err(Box::new)?;
        Ok::<_, plan::RuntimeUpdateError>(commands)
    });
    let failed = match staged {
        Ok(Staged::Swapped { stamp }) => {
            if let (Some(cache), Some(stamp)) = (host.live_cache(), stamp) {
                cache.set(&layout.config_path, Arc::clone(new), stamp);
            }
            None
        }
        Ok(Staged::Rejected(output)) => Some(DeployError::ConfigRejected {
            node: node.to_owned(),
            haproxy_output: output,
        }),
        // Not asked to check a stamp, so not expected; nothing was swapped either way.
        Ok(Staged::LiveChanged) => Some(DeployError::Step {
            node: node.to_owned(),
            step: "swapping in the new config".into(),
            message: "the live config changed while it was being replaced; the next deploy retries"
                .into(),
        }),
        Err(e) => Some(e),
    };
    if let Some(failed) = failed {
        if !matches!(checked, Ok(0)) {
            tracing::debug!(
                node,
                "new config rejected after runtime API changes; undoing them"
            );
            if let Err(e) = acl::push(host, socket, &new.source_acls, &live.source_acls).await {
                tracing::error!(node, error = %e, "undoing the source range changes failed");
            }
            match drift::restore_running_servers(host, layout, live).await {
                Ok(applied) => {
                    tracing::info!(node, %applied, "runtime API changes undone; the live config is what runs");
                }
                Err(e) => {
                    tracing::error!(node, error = %e, "undoing the runtime API changes failed")
                }
            }
        }
        return Err(failed);
    }
    match checked {
        Ok(commands) => {
            tracing::info!(node, digest = %config.digest.short(), commands, "applied through the runtime API, no reload");
            Ok(Some(Applied::RuntimeUpdated))
        }
        Err(why) => reload_after_runtime_miss(host, layout, &why).await,
    }
}
