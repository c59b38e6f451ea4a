//! The deploy transaction, the same on every host: write beside the live file, validate with
//! `haproxy -c`, keep the previous file, swap atomically, reload, confirm through the master
//! CLI, and roll back when the reload does not take.

use std::time::Duration;

use edgelb_core::{Applied, DeployError, Digest, RenderedConfig};
use tokio::time::Instant;

use crate::acl_update;
use crate::host::EdgeHost;
use crate::layout::HaproxyLayout;
use crate::listen_check;
use crate::master_cli::MasterProcs;
use crate::running_drift;
use crate::runtime_api::RuntimeApi;
use crate::runtime_update;

/// Puts `config` live on `host`. Nothing is swapped unless `haproxy -c` accepts the new file;
/// a reload that does not take is rolled back to the previous file.
pub async fn apply_config(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    config: &RenderedConfig,
) -> Result<Applied, DeployError> {
    let live_path = &layout.config_path;
    let live = host.read_file(live_path).await?;
    if live.as_deref().and_then(live_digest_of) == Some(config.digest) {
        // The file is right; the running servers may still have been changed by hand.
        return crate::acl_drift::restore_running(host, layout, &config.text).await;
    }
    if let Some(live) = live.as_deref()
        && let Some(applied) = try_runtime_update(host, layout, live, config).await?
    {
        return Ok(applied);
    }

    // `haproxy -c` does not bind: a port another process holds would only fail the reload,
    // which pauses every listener of the running worker. Refuse it before touching anything.
    let live_text = live.as_deref().map(String::from_utf8_lossy);
    listen_check::check_new_listen_ports(host, live_text.as_deref(), &config.text).await?;

    let new_path = layout.new_path();
    host.write_file(&new_path, config.text.as_bytes()).await?;
    validate_file(host, layout, &new_path).await?;

    let before = show_proc(host, layout).await?;
    if let Some(live) = live.as_deref() {
        // The bytes read above, whose digest this transaction was decided on.
        host.write_file(&layout.prev_path(), live).await?;
    }
    host.rename(&new_path, live_path).await?;
    tracing::debug!(node = host.node(), digest = %config.digest.short(), "new config in place; reloading");

    match reload_and_confirm(host, layout, &before).await {
        Ok(()) => Ok(Applied::Reloaded),
        Err(message) => Err(roll_back(host, layout, live.is_some(), message).await),
    }
}

/// The runtime-API path (see [`crate::runtime_update`]): `Ok(None)` when the change is not
/// endpoint-only (nothing was touched: go on with the reload), else how it was applied.
/// The runtime API brings the running servers to the new file; the file is then written,
/// validated and swapped in (the previous one kept) without a reload, and `show servers state`
/// is checked against it. A failed command or a mismatch ends in a validated reload of
/// the new file (rolled back like any reload); for a rejected file the runtime changes are
/// undone (through the runtime API, else by reloading the live file) and the rejection is
/// reported.
async fn try_runtime_update(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    live: &[u8],
    config: &RenderedConfig,
) -> Result<Option<Applied>, DeployError> {
    let node = host.node();
    let Ok(live_text) = std::str::from_utf8(live) else {
        return Ok(None);
    };
    // Only a file edgelb wrote and nobody edited is known to describe the running process.
    if !is_edgelbs_own(live_text) {
        tracing::debug!(node, "live config is not edgelb's own; reloading");
        return Ok(None);
    }
    let split = match runtime_update::runtime_servers(live_text, &config.text) {
        Ok(split) => split,
        Err(why) => {
            tracing::debug!(node, reason = %why, "not a runtime API change; reloading");
            return Ok(None);
        }
    };
    let Some(socket) = split.stats_socket.as_deref() else {
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
    // commands do not queue behind `haproxy -c` for the CPU); then the safety net, its
    // independent steps together: the new file written and validated, the previous one kept.
    let pushed = async {
        let servers = runtime_update::push(&api, &split.servers).await?;
        Ok::<_, String>(servers + acl_update::push(host, socket, live_text, &config.text).await?)
    }
    .await;
    let (validated, kept) = futures::join!(
        async {
            host.write_file(&new_path, config.text.as_bytes()).await?;
            validate_file(host, layout, &new_path).await
        },
        host.write_file(&prev_path, live),
    );
    if let Err(rejected) = validated {
        if !matches!(pushed, Ok(0)) {
            tracing::debug!(
                node,
                "new config rejected after runtime API changes; undoing them"
            );
            if let Err(e) = acl_update::push(host, socket, &config.text, live_text).await {
                tracing::error!(node, error = %e, "undoing the source range changes failed");
            }
            match running_drift::restore_running_servers(host, layout, live_text).await {
                Ok(applied) => {
                    tracing::info!(node, %applied, "runtime API changes undone; the live config is what runs");
                }
                Err(e) => {
                    tracing::error!(node, error = %e, "undoing the runtime API changes failed")
                }
            }
        }
        return Err(rejected);
    }
    kept?;
    let (swapped, checked) = futures::join!(host.rename(&new_path, &layout.config_path), async {
        let commands = pushed?;
        runtime_update::verify(&api, &split.servers).await?;
        acl_update::verify(host, socket, &config.text).await?;
        Ok::<_, String>(commands)
    });
    swapped?;
    match checked {
        Ok(commands) => {
            tracing::info!(node, digest = %config.digest.short(), commands, "applied through the runtime API, no reload");
            Ok(Some(Applied::RuntimeUpdated))
        }
        Err(why) => {
            tracing::warn!(node, reason = %why, "runtime API update did not take; reloading the new config");
            // The new file is in place: a reload that cannot even start must still put the
            // previous file back, or the next attempt would find the digest live and stop.
            let reloaded = async {
                let before = show_proc(host, layout).await.map_err(|e| step_detail(&e))?;
                reload_and_confirm(host, layout, &before).await
            }
            .await;
            match reloaded {
                Ok(()) => Ok(Some(Applied::Reloaded)),
                Err(message) => Err(roll_back(
                    host,
                    layout,
                    true,
                    format!("the runtime API update did not take ({why}) and the reload failed: {message}"),
                )
                .await),
            }
        }
    }
}

/// The digest of the config live on `host`, `None` when there is no file or it has no
/// edgelb digest line. Like a hand-edited file (see [`live_digest_of`]), running servers that
/// differ from edgelb's own file (changed by hand through the runtime API) give a digest that
/// matches no rendered config, so a resync redeploys and the deploy puts them back.
pub async fn live_digest(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
) -> Result<Option<Digest>, DeployError> {
    let Some(bytes) = host.read_file(&layout.config_path).await? else {
        return Ok(None);
    };
    let Some(digest) = live_digest_of(&bytes) else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    if Digest::from_config_text(&text) == Some(digest)
        && let Some(why) = running_drift::running_drift(host, &text).await
    {
        tracing::warn!(node = host.node(), reason = %why, "running servers differ from the live file");
        let marked = format!("{digest}\nrunning servers differ from the file");
        return Ok(Some(Digest::of(marked.as_bytes())));
    }
    Ok(Some(digest))
}

/// Whether `text` is a file edgelb wrote that nobody edited since (its digest line matches
/// its body): only such a file says what edgelb put live.
pub fn is_edgelbs_own(text: &str) -> bool {
    let claimed = Digest::from_config_text(text);
    claimed.is_some() && live_digest_of(text.as_bytes()) == claimed
}

/// The digest a live file really has: its digest line if the body still matches it, or the
/// digest of the whole file when someone edited the body by hand (so it never matches a
/// rendered config and drift is repaired).
pub fn live_digest_of(bytes: &[u8]) -> Option<Digest> {
    let text = std::str::from_utf8(bytes).ok()?;
    let claimed = Digest::from_config_text(text)?;
    let body = text.split_once('\n').map_or("", |(_, body)| body);
    if Digest::of(body.as_bytes()) == claimed {
        Some(claimed)
    } else {
        Some(Digest::of(bytes))
    }
}

/// Runs `haproxy -c -f <path>`; on rejection removes the file and returns HAProxy's words.
pub async fn validate_file(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    path: &str,
) -> Result<(), DeployError> {
    let argv = [
        layout.haproxy_bin.clone(),
        "-c".into(),
        "-f".into(),
        path.to_owned(),
    ];
    let out = host.exec(&argv).await?;
    if out.success() {
        return Ok(());
    }
    if let Err(e) = host.remove_file(path).await {
        tracing::warn!(node = host.node(), error = %e, "could not remove the rejected config");
    }
    Err(DeployError::ConfigRejected {
        node: host.node().to_owned(),
        haproxy_output: out.message(),
    })
}

/// Reads the master CLI's `show proc`.
pub async fn show_proc(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
) -> Result<MasterProcs, DeployError> {
    let text = host
        .socket_command(&layout.master_socket, "show proc")
        .await
        .map_err(|e| match e {
            // The socket itself failed: say which one and what to check.
            DeployError::Step { .. } => DeployError::Step {
                node: host.node().to_owned(),
                step: format!("reaching haproxy's master socket {}", layout.master_socket),
                message: format!(
                    "{}; is haproxy running in master-worker mode with -S {}?",
                    step_detail(&e),
                    layout.master_socket
                ),
            },
            // The host was unreachable, timed out or refused us: keep that typed outcome.
            other => other,
        })?;
    MasterProcs::parse(host.node(), &text)
}

/// An error's words without the `node X:` prefix, to nest it in another error of that node.
fn step_detail(e: &DeployError) -> String {
    match e {
        DeployError::Step { step, message, .. } => format!("{step} failed: {message}"),
        other => other.to_string(),
    }
}

/// Reloads and waits until `show proc` says the reload took (`Err` says why not).
pub(crate) async fn reload_and_confirm(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    before: &MasterProcs,
) -> Result<(), String> {
    match &layout.reload_command {
        Some(argv) => {
            let out = host.exec(argv).await.map_err(|e| step_detail(&e))?;
            if !out.success() {
                return Err(format!("`{}` failed: {}", argv.join(" "), out.message()));
            }
        }
        None => {
            host.socket_command(&layout.master_socket, "reload")
                .await
                .map_err(|e| step_detail(&e))?;
        }
    }
    // The master re-executes itself on reload: its socket refuses connections for a moment,
    // so errors are retried until the deadline like a reload that has not shown up yet.
    let deadline = Instant::now() + layout.reload_timeout;
    loop {
        let verdict = match show_proc(host, layout).await {
            Ok(now) => now
                .reload_succeeded_since(before)
                .ok_or_else(|| "no reload showed up in the master's `show proc`".to_owned()),
            Err(e) => Err(step_detail(&e)),
        };
        match verdict {
            Ok(true) => return Ok(()),
            Ok(false) => {
                return Err(
                    "haproxy could not start a worker with the new config (the old worker keeps serving; see haproxy's log)".into(),
                );
            }
            Err(last) if Instant::now() >= deadline => {
                return Err(format!(
                    "{last} within {:.1}s",
                    layout.reload_timeout.as_secs_f64()
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Restores the previous file and reloads it; returns the error to report.
async fn roll_back(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    had_previous: bool,
    message: String,
) -> DeployError {
    let node = host.node().to_owned();
    // The outcome (rolled back or not) is logged once, by whoever reports the error.
    tracing::debug!(node = %node, reason = %message, "reload failed; rolling back");
    if !had_previous {
        return DeployError::ReloadFailed {
            node,
            message: format!("{message}; there was no previous file to restore"),
            rolled_back: false,
        };
    }
    let restored = async {
        host.copy(&layout.prev_path(), &layout.config_path)
            .await
            .map_err(|e| step_detail(&e))?;
        let before = show_proc(host, layout).await.map_err(|e| step_detail(&e))?;
        reload_and_confirm(host, layout, &before).await
    }
    .await;
    match restored {
        Ok(()) => DeployError::ReloadFailed {
            node,
            message,
            rolled_back: true,
        },
        Err(e) => DeployError::ReloadFailed {
            node,
            message: format!("{message}; restoring the previous config failed too: {e}"),
            rolled_back: false,
        },
    }
}
