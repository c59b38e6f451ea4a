//! The deploy transaction, the same on every host ([`EdgeHost`]): put a rendered config live
//! on an edge, and say which config is live there.
//!
//! A host that knows its live file (the bytes edgelb last swapped in, and the file's stamp
//! since: `live_cache.rs`) skips reading it; its runtime and reload paths go out at once,
//! the stamp checked in the request that swaps the new file (`deploy/known.rs`). Otherwise,
//! or when the stamp changed,
//! [`apply_config`] reads the live file once (`live_file.rs`) and takes one of three paths:
//! * the config is already live: the running servers and source ACL lists are checked
//!   against it and put back when someone changed them by hand (`deploy/drift.rs`,
//!   `deploy/acl_drift.rs`);
//! * only server addresses, states or weights, or the source ranges of frontends, changed:
//!   the runtime API brings the running servers and lists to the new file, which is validated and swapped in without a reload
//!   (`deploy/runtime.rs`);
//! * anything else: after a check that no other process holds a new listen port
//!   (`deploy/listen_check.rs`), the new file is written beside the live one, validated with
//!   `haproxy -c`, swapped in (the previous one kept), reloaded, confirmed through the master
//!   CLI, and rolled back when the reload does not take (`deploy/reload.rs`).
//!
//! [`live_digest`] is what the pipeline's resync compares with the desired digest.

use edgelb_core::{Applied, DeployError, Digest, RenderedConfig};

use crate::edge_host::EdgeHost;
use crate::layout::HaproxyLayout;
use crate::live_file::LiveFile;

mod acl_drift;
mod drift;
mod known;
pub(crate) mod listen_addresses;
mod listen_check;
mod reload;
mod runtime;
#[cfg(test)]
mod tests;

pub(crate) use reload::validate_file;

/// Puts `config` live on `host`. Nothing is swapped unless `haproxy -c` accepts the new file;
/// a reload that does not take is rolled back to the previous file.
pub async fn apply_config(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    config: &RenderedConfig,
) -> Result<Applied, DeployError> {
    // A host that knows its live file sends the change without reading it first.
    if let Some(applied) = known::try_known(host, layout, config).await? {
        return Ok(applied);
    }
    let live_bytes = host.read_file(&layout.config_path).await?;
    let live = live_bytes.as_deref().map(LiveFile::parse);
    if let Some(live) = &live
        && live.digest == Some(config.digest)
    {
        // The file is right; the running servers and lists may still have been changed by hand.
        return acl_drift::restore_running(host, layout, live).await;
    }
    // Shared, so the runtime path can keep it as the host's known file without a copy.
    let new = std::sync::Arc::new(LiveFile::of_rendered(config));
    if let (Some(bytes), Some(live)) = (live_bytes.as_deref(), &live)
        && let Some(applied) =
            runtime::try_runtime_update(host, layout, (bytes, live), &new, config).await?
    {
        return Ok(applied);
    }

    // `haproxy -c` does not bind: a port another process holds would only fail the reload,
    // which pauses every listener of the running worker. Refuse it before touching anything.
    listen_check::check_new_listen_ports(host, live.as_ref().map(|l| &l.bind_ports), &new).await?;
    reload::swap_and_reload(host, layout, live_bytes.as_deref(), config).await
}

/// How what runs differs from the `live` file: its servers, else its source ACL lists.
async fn running_drift(host: &dyn EdgeHost, live: &LiveFile) -> Option<String> {
    if let Some(why) = drift::running_drift(host, live).await {
        return Some(why.to_string());
    }
    let socket = live.stats_socket.as_deref()?;
    acl_drift::drift(host, socket, &live.source_acls)
        .await
        .map(|why| why.to_string())
}

/// The digest of the config live on `host`, `None` when there is no file or it has no
/// edgelb digest line. Like a hand-edited file (see [`edgelb_core::live_digest_of`]), running
/// servers that differ from edgelb's own file (changed by hand through the runtime API) give
/// a digest that matches no rendered config, so a resync redeploys and the deploy puts them
/// back.
pub async fn live_digest(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
) -> Result<Option<Digest>, DeployError> {
    let Some(bytes) = host.read_file(&layout.config_path).await? else {
        return Ok(None);
    };
    let live = LiveFile::parse(&bytes);
    let Some(digest) = live.digest else {
        return Ok(None);
    };
    if live.own
        && let Some(why) = running_drift(host, &live).await
    {
        tracing::warn!(node = host.node(), reason = %why, "what runs differs from the live file");
        let marked = format!("{digest}\nrunning servers differ from the file");
        return Ok(Some(Digest::of(marked.as_bytes())));
    }
    Ok(Some(digest))
}
