//! Source ACL lists that no longer match the live file: changed by hand through the runtime
//! API (`add acl #id …`, `clear acl #id`), or left by an interrupted update. As for servers
//! (see `running_drift`), the file's digest cannot see this, so:
//! * [`drift`] tells [`live_digest`](crate::apply::live_digest) that the edge does not run
//!   what its file says (a resync then redeploys), and
//! * [`restore_running`] (what a deploy of the config already live does) puts the lists back
//!   through the runtime API, else reloads the live file, and then the servers.

use edgelb_core::{Applied, DeployError, IpNet};

use crate::acl_update::{self, SourceAcls};
use crate::apply::{reload_and_confirm, show_proc};
use crate::host::EdgeHost;
use crate::layout::HaproxyLayout;
use crate::running_drift::restore_running_servers;
use crate::runtime_update::split_config;

/// How the running source ACL lists differ from the file `text` (behind `socket`); `None`
/// when they match, when the file has none, or when they cannot be read (logged at debug:
/// nothing here can repair a HAProxy that does not answer).
pub async fn drift(host: &dyn EdgeHost, socket: &str, text: &str) -> Option<String> {
    let file = acl_update::source_acls(text);
    if file.is_empty() {
        return None;
    }
    match acl_update::read_running(host, socket, file.keys().copied()).await {
        Ok(running) => acl_update::compare(&file, &running).err(),
        Err(e) => {
            tracing::debug!(node = host.node(), error = %e, "cannot compare the running source ACLs with the live file");
            None
        }
    }
}

/// Brings the running source ACL lists to the live file `text` through the runtime API;
/// `Ok(0)` when they already match (or cannot be read), else how many commands it took.
async fn restore_lists(host: &dyn EdgeHost, socket: &str, text: &str) -> Result<usize, String> {
    let file = acl_update::source_acls(text);
    if file.is_empty() {
        return Ok(0);
    }
    let Ok(running) = acl_update::read_running(host, socket, file.keys().copied()).await else {
        return Ok(0);
    };
    let Err(why) = acl_update::compare(&file, &running) else {
        return Ok(0);
    };
    tracing::warn!(node = host.node(), reason = %why, "running source ACLs differ from the live file; putting them back through the runtime API");
    let running: SourceAcls = running
        .into_iter()
        .map(|(id, ranges)| (id, ranges.into_iter().collect::<Vec<IpNet>>()))
        .collect();
    let steps = acl_update::plan(&running, &file);
    let mut sent = 0;
    for phase in acl_update::phases(&steps) {
        sent += acl_update::apply_phase(host, socket, phase).await?;
    }
    acl_update::verify(host, socket, text).await?;
    Ok(sent)
}

/// Brings the running HAProxy to the live file `text`: its source ACL lists, then its
/// servers ([`restore_running_servers`]). `Unchanged` when both match, `RuntimeUpdated` when
/// the runtime API put them back, `Reloaded` when the live file had to be reloaded.
pub async fn restore_running(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    text: &str,
) -> Result<Applied, DeployError> {
    let lists = match split_config(text).stats_socket {
        Some(socket) => restore_lists(host, &socket, text).await,
        None => Ok(0),
    };
    let servers = restore_running_servers(host, layout, text).await?;
    match lists {
        Ok(0) => Ok(servers),
        Ok(_) if servers == Applied::Unchanged => Ok(Applied::RuntimeUpdated),
        Ok(_) => Ok(servers),
        // A reload for the servers loaded the file's lists too.
        Err(_) if servers == Applied::Reloaded => Ok(servers),
        Err(why) => {
            let node = host.node();
            tracing::warn!(node, reason = %why, "the runtime API did not restore the source ACLs; reloading the live file");
            let before = show_proc(host, layout).await?;
            reload_and_confirm(host, layout, &before)
                .await
                .map_err(|message| DeployError::ReloadFailed {
                    node: node.to_owned(),
                    message: format!(
                        "the running source ACLs differ from the live file ({why}) and reloading it failed: {message}"
                    ),
                    rolled_back: false,
                })?;
            Ok(Applied::Reloaded)
        }
    }
}
