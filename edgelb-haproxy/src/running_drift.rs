//! Running servers that no longer match the live file: someone changed them through the
//! runtime API by hand (`set server … state maint`, `… weight`, `… addr`), or a runtime
//! update was lost. The file is right and a reload would restore it, but the file's digest
//! alone cannot see this drift, so:
//! * [`live_digest`](crate::apply::live_digest) (what the pipeline's resync compares) reports
//!   a digest that matches no rendered config when the running servers differ, and
//! * deploying the config that is already live puts the servers back through the runtime API
//!   (no reload), falling back to a reload of the live file when that does not take.

use edgelb_core::{Applied, DeployError};

use crate::apply::{reload_and_confirm, show_proc};
use crate::host::EdgeHost;
use crate::layout::HaproxyLayout;
use crate::runtime_api::RuntimeApi;
use crate::runtime_update;

/// How the running servers differ from what the live file `text` says; `None` when they
/// match, or when they cannot be compared: a file without a stats socket, or a socket that
/// does not answer (logged at debug; a deploy reports a HAProxy that is down).
pub async fn running_drift(host: &dyn EdgeHost, text: &str) -> Option<String> {
    let split = runtime_update::split_config(text);
    let socket = split.stats_socket.as_deref()?;
    let api = RuntimeApi::new(host, socket).ok()?;
    match api.show_servers_state(None).await {
        Ok(running) => runtime_update::compare(&split.servers, &running).err(),
        Err(e) => {
            tracing::debug!(node = host.node(), error = %e, "cannot compare the running servers with the live file");
            None
        }
    }
}

/// For a deploy of the config already live (`text`): `Unchanged` when the running servers
/// match it, else brings them back through the runtime API (`RuntimeUpdated`), or, when that
/// does not take, reloads the live file (`Reloaded`).
pub async fn restore_running_servers(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    text: &str,
) -> Result<Applied, DeployError> {
    let node = host.node();
    let Some(why) = running_drift(host, text).await else {
        return Ok(Applied::Unchanged);
    };
    tracing::warn!(node, reason = %why, "running servers differ from the live file; putting them back through the runtime API");
    let split = runtime_update::split_config(text);
    let restored = match split.stats_socket.as_deref() {
        Some(socket) => match runtime_update::push(host, socket, &split.servers).await {
            Ok(_) => match RuntimeApi::new(host, socket) {
                Ok(api) => runtime_update::verify(&api, &split.servers).await,
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e),
        },
        None => Err("the live file has no stats socket".to_owned()),
    };
    match restored {
        Ok(()) => Ok(Applied::RuntimeUpdated),
        Err(still) => {
            tracing::warn!(node, reason = %still, "the runtime API did not restore the servers; reloading the live file");
            let before = show_proc(host, layout).await?;
            reload_and_confirm(host, layout, &before)
                .await
                .map(|()| Applied::Reloaded)
                .map_err(|message| DeployError::ReloadFailed {
                    node: node.to_owned(),
                    message: format!(
                        "the running servers differ from the live file ({why}) and reloading it failed: {message}"
                    ),
                    rolled_back: false,
                })
        }
    }
}
