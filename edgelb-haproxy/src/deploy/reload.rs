//! The reload path of a deploy: write the new file beside the live one, validate it with
//! `haproxy -c`, keep the previous file, swap atomically, reload, confirm through the master
//! CLI's `show proc`, and roll back when the reload does not take.

use std::time::Duration;

use edgelb_core::{Applied, DeployError, RenderedConfig};
use tokio::time::Instant;

use crate::cli::master::{MasterProcs, show_proc};
use crate::edge_host::EdgeHost;
use crate::error::step_detail;
use crate::layout::HaproxyLayout;

/// Why a reload did not take.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    /// The host failed a step: sending the reload, or reading `show proc` to confirm it.
    #[error("{}", step_detail(.0))]
    Host(#[source] DeployError),
    /// The configured reload command failed.
    #[error("`{command}` failed: {output}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed.
        output: String,
    },
    /// The master counted the reload as failed, or no fresh worker serves.
    #[error(
        "haproxy could not start a worker with the new config (the old worker keeps serving; see haproxy's log)"
    )]
    NoWorker,
    /// `show proc` answered, but no reload showed up in it in time.
    #[error("no reload showed up in the master's `show proc` within {seconds:.1}s")]
    NotSeen {
        /// How long it waited.
        seconds: f64,
    },
    /// `show proc` kept failing until the deadline.
    #[error("{} within {seconds:.1}s", step_detail(.source))]
    Unconfirmed {
        /// How long it waited.
        seconds: f64,
        /// The last failure.
        #[source]
        source: DeployError,
    },
}

/// Writes `config` beside the live file, validates it, keeps the previous file (`live`, the
/// bytes this deploy was decided on), swaps it in and reloads; rolls back a reload that does
/// not take.
pub(super) async fn swap_and_reload(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    live: Option<&[u8]>,
    config: &RenderedConfig,
) -> Result<Applied, DeployError> {
    let (live_path, new_path) = (&layout.config_path, layout.new_path());
    host.write_file(&new_path, config.text.as_bytes()).await?;
    validate_file(host, layout, &new_path).await?;

    let before = show_proc(host, layout).await?;
    if let Some(live) = live {
        host.write_file(&layout.prev_path(), live).await?;
    }
    host.rename(&new_path, live_path).await?;
    tracing::debug!(node = host.node(), digest = %config.digest.short(), "new config in place; reloading");

    match reload_and_confirm(host, layout, &before).await {
        Ok(()) => Ok(Applied::Reloaded),
        Err(why) => Err(roll_back(host, layout, live.is_some(), why.to_string()).await),
    }
}

/// Runs `haproxy -c -f <path>`; on rejection removes the file and returns HAProxy's words.
pub(crate) async fn validate_file(
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

/// Reads `show proc`, reloads, and waits until `show proc` says the reload took.
pub(super) async fn reload_now(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
) -> Result<(), ReloadError> {
    let before = show_proc(host, layout).await.map_err(ReloadError::Host)?;
    reload_and_confirm(host, layout, &before).await
}

/// Reloads and waits until `show proc` says the reload took (`before` is `show proc` from
/// before the reload).
pub(super) async fn reload_and_confirm(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    before: &MasterProcs,
) -> Result<(), ReloadError> {
    match &layout.reload_command {
        Some(argv) => {
            let out = host.exec(argv).await.map_err(ReloadError::Host)?;
            if !out.success() {
                return Err(ReloadError::Command {
                    command: argv.join(" "),
                    output: out.message(),
                });
            }
        }
        None => {
            host.socket_command(&layout.master_socket, "reload")
                .await
                .map_err(ReloadError::Host)?;
        }
    }
    // The master re-executes itself on reload: its socket refuses connections for a moment,
    // so errors are retried until the deadline like a reload that has not shown up yet.
    let deadline = Instant::now() + layout.reload_timeout;
    let seconds = layout.reload_timeout.as_secs_f64();
    loop {
        let last = match show_proc(host, layout).await {
            Ok(now) => match now.reload_succeeded_since(before) {
                Some(true) => return Ok(()),
                Some(false) => return Err(ReloadError::NoWorker),
                None => ReloadError::NotSeen { seconds },
            },
            Err(source) => ReloadError::Unconfirmed { seconds, source },
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Restores the previous file and reloads it; returns the error to report, `message` saying
/// why the reload is rolled back.
pub(super) async fn roll_back(
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
            .map_err(ReloadError::Host)?;
        reload_now(host, layout).await
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
