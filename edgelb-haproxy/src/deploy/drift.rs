//! Running servers that no longer match the live file: someone changed them through the
//! runtime API by hand (`set server … state maint`, `… weight`, `… addr`), or a runtime
//! update was lost. The file is right and a reload would restore it, but the file's digest
//! alone cannot see this drift, so:
//! * [`live_digest`](crate::deploy::live_digest) (what the pipeline's resync compares) reports
//!   a digest that matches no rendered config when the running servers differ, and
//! * deploying the config that is already live puts the servers back through the runtime API
//!   (no reload), falling back to a reload of the live file when that does not take; the
//!   runtime path undoes its commands for a rejected file the same way.

use edgelb_core::{Applied, DeployError};

use super::reload::reload_and_confirm;
use crate::cli::master::show_proc;
use crate::cli::plan::{self, Mismatches};
use crate::cli::runtime::RuntimeApi;
use crate::cli::servers_state::ServersStateAnswer;
use crate::edge_host::EdgeHost;
use crate::layout::HaproxyLayout;
use crate::live_file::{LiveFile, ServerSlot};

/// How the running servers differ from what the live file says; `None` when they match, or
/// when they cannot be compared: a file without a stats socket, or a socket that does not
/// answer (logged at debug; nothing here can repair a HAProxy that is down, and the next
/// change's deploy reports it).
pub(super) async fn running_drift(host: &dyn EdgeHost, live: &LiveFile) -> Option<Mismatches> {
    let socket = live.stats_socket.as_deref()?;
    drift_of(host, socket, &live.servers)
        .await
        .map(|(why, _)| why)
}

/// How the servers running behind `socket` differ from `slots`, with what runs; `None` as
/// for [`running_drift`].
async fn drift_of(
    host: &dyn EdgeHost,
    socket: &str,
    slots: &[ServerSlot],
) -> Option<(Mismatches, ServersStateAnswer)> {
    let api = RuntimeApi::new(host, socket).ok()?;
    match api.servers_state().await {
        Ok(running) => plan::compare(slots, running.servers())
            .err()
            .map(|why| (why, running)),
        Err(e) => {
            tracing::debug!(node = host.node(), error = %e, "cannot compare the running servers with the live file");
            None
        }
    }
}

/// Brings the running servers to the `live` file: for a deploy of the config already live,
/// and to undo runtime changes whose new file was rejected. `Unchanged` when they match it,
/// else brings them back through the runtime API (`RuntimeUpdated`), or, when that does not
/// take, reloads the live file (`Reloaded`). Drift that even the reload leaves (the stats
/// socket belongs to a HAProxy running another file, say) is an error, so the pipeline backs
/// off instead of reloading at every resync.
pub(super) async fn restore_running_servers(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    live: &LiveFile,
) -> Result<Applied, DeployError> {
    let node = host.node();
    let Some(socket) = live.stats_socket.as_deref() else {
        return Ok(Applied::Unchanged);
    };
    let Some((why, running)) = drift_of(host, socket, &live.servers).await else {
        return Ok(Applied::Unchanged);
    };
    tracing::warn!(node, reason = %why, "running servers differ from the live file; putting them back through the runtime API");
    let restored = async {
        let api = RuntimeApi::new(host, socket)?;
        plan::send_plan(&api, &live.servers, &running).await?;
        plan::verify(&api, &live.servers).await
    }
    .await;
    let Err(still) = restored else {
        return Ok(Applied::RuntimeUpdated);
    };
    tracing::warn!(node, reason = %still, "the runtime API did not restore the servers; reloading the live file");
    let before = show_proc(host, layout).await?;
    if let Err(failed) = reload_and_confirm(host, layout, &before).await {
        return Err(DeployError::ReloadFailed {
            node: node.to_owned(),
            message: format!(
                "the running servers differ from the live file ({why}) and reloading it failed: {failed}"
            ),
            rolled_back: false,
        });
    }
    match drift_of(host, socket, &live.servers).await {
        None => Ok(Applied::Reloaded),
        Some((left, _)) => Err(DeployError::Step {
            node: node.to_owned(),
            step: "restoring the running servers".into(),
            message: format!(
                "they still differ from the live file after a reload ({left}); check that the stats socket in the config belongs to the HAProxy that loads {}",
                layout.config_path
            ),
        }),
    }
}
