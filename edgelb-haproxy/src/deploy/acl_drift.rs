//! Source ACL lists that no longer match the live file: changed by hand through the runtime
//! API (`add acl #id …`, `clear acl #id`), or left by an interrupted update. As for servers
//! (see `drift.rs`), the file's digest cannot see this, so:
//! * [`drift`] tells [`live_digest`](crate::deploy::live_digest) that the edge does not run
//!   what its file says (a resync then redeploys), and
//! * [`restore_running`] (what a deploy of the config already live does) puts the lists back
//!   through the runtime API, else reloads the live file, and then the servers.

use edgelb_core::{Applied, DeployError, IpNet};

use super::drift::restore_running_servers;
use super::reload::reload_and_confirm;
use crate::cli::acl::{self, AclError, SourceAcls};
use crate::cli::master::show_proc;
use crate::edge_host::EdgeHost;
use crate::layout::HaproxyLayout;
use crate::live_file::LiveFile;

/// How the running source ACL lists differ from the file's (`file`, behind `socket`); `None`
/// when they match, when the file has none, or when they cannot be read (logged at debug:
/// nothing here can repair a HAProxy that does not answer).
pub(super) async fn drift(
    host: &dyn EdgeHost,
    socket: &str,
    file: &SourceAcls,
) -> Option<AclError> {
    if file.is_empty() {
        return None;
    }
    match acl::read_running(host, socket, file.keys().copied()).await {
        Ok(running) => acl::compare(file, &running).err(),
        Err(e) => {
            tracing::debug!(node = host.node(), error = %e, "cannot compare the running source ACLs with the live file");
            None
        }
    }
}

/// Brings the running source ACL lists to the live file's (`file`) through the runtime API;
/// `Ok(0)` when they already match (or cannot be read), else how many commands it took.
async fn restore_lists(
    host: &dyn EdgeHost,
    socket: &str,
    file: &SourceAcls,
) -> Result<usize, AclError> {
    if file.is_empty() {
        return Ok(0);
    }
    let Ok(running) = acl::read_running(host, socket, file.keys().copied()).await else {
        return Ok(0);
    };
    let Err(why) = acl::compare(file, &running) else {
        return Ok(0);
    };
    tracing::warn!(node = host.node(), reason = %why, "running source ACLs differ from the live file; putting them back through the runtime API");
    let running: SourceAcls = running
        .into_iter()
        .map(|(id, ranges)| (id, ranges.into_iter().collect::<Vec<IpNet>>()))
        .collect();
    let steps = acl::plan(&running, file);
    let mut sent = 0;
    for phase in acl::phases(&steps) {
        sent += acl::apply_phase(host, socket, phase).await?;
    }
    acl::verify(host, socket, file).await?;
    Ok(sent)
}

/// Brings the running HAProxy to the `live` file: its source ACL lists, then its servers
/// ([`restore_running_servers`]). `Unchanged` when both match, `RuntimeUpdated` when the
/// runtime API put them back, `Reloaded` when the live file had to be reloaded.
pub(super) async fn restore_running(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    live: &LiveFile,
) -> Result<Applied, DeployError> {
    let lists = match live.stats_socket.as_deref() {
        Some(socket) => restore_lists(host, socket, &live.source_acls).await,
        None => Ok(0),
    };
    let servers = restore_running_servers(host, layout, live).await?;
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
