//! The reload path of a deploy: write the new file beside the live one, validate it with
//! `haproxy -c`, keep the previous file, swap atomically, reload, confirm through the master
//! CLI's `show proc`, and roll back when the reload does not take.

use std::time::Duration;

use edgelb_core::{Applied, DeployError, RenderedConfig};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;

use crate::cli::master::{MasterProcs, show_proc};
use crate::edge_host::{EdgeHost, FileStamp, StageSwap, Staged};
use crate::error::step_detail;
use crate::layout::HaproxyLayout;
use crate::live_file::LiveFile;

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
    match staged_reload(host, layout, live, None, config).await? {
        Some(applied) => Ok(applied),
        // Only a stamp to check can find the live file changed.
        None => Err(DeployError::Step {
            node: host.node().to_owned(),
            step: "swapping in the new config".into(),
            message: "the live config changed while it was being replaced; the next deploy retries"
                .into(),
        }),
    }
}

/// The reload path in as few round trips as the safety steps allow: the new file written,
/// checked against `expect` (the stamp of the live file this deploy was decided on, when the
/// host knows it), validated, the live file kept (`live`, the bytes this deploy was decided
/// on, or the checked file itself) and the new one swapped in, in one request
/// ([`EdgeHost::stage_and_swap`]), while the master's `show proc` is read; then the reload,
/// confirmed, rolled back when it does not take. `Ok(None)`: the live file no longer has
/// `expect`, nothing was touched.
pub(super) async fn staged_reload(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    live: Option<&[u8]>,
    expect: Option<&FileStamp>,
    config: &RenderedConfig,
) -> Result<Option<Applied>, DeployError> {
    let (live_path, new_path, prev_path) =
        (&layout.config_path, layout.new_path(), layout.prev_path());
    let validate = validate_argv(layout, &new_path);
    let request = StageSwap {
        live_path,
        new_path: &new_path,
        prev_path: &prev_path,
        contents: config.text.as_bytes(),
        validate: &validate,
        keep_live: live,
        expect_stamp: expect,
    };
    let had_previous = live.is_some() || expect.is_some();
    // The master's `show proc` and the channel for the `reload` open beside the stage
    // request, which takes longer (a round trip plus `haproxy -c`): off the path.
    let before_and_ahead = async {
        let (before, ()) = futures::join!(show_proc(host, layout), async {
            if layout.reload_command.is_none() {
                host.open_socket_ahead(&layout.master_socket).await;
            }
        });
        before
    };
    let (staged, before) = futures::join!(host.stage_and_swap(&request), before_and_ahead);
    let cache = host.live_cache();
    let stamp = match staged {
        Ok(Staged::Swapped { stamp }) => stamp,
        Ok(Staged::Rejected(output)) => {
            return Err(DeployError::ConfigRejected {
                node: host.node().to_owned(),
                haproxy_output: output,
            });
        }
        Ok(Staged::LiveChanged) => {
            if let Some(c) = cache {
                c.clear();
            }
            tracing::warn!(node = host.node(), path = %live_path, "the live config changed since edgelb wrote it (edited by hand?); reading it and repairing");
            return Ok(None);
        }
        Err(e) => {
            if let Some(c) = cache {
                c.clear();
            }
            return Err(e);
        }
    };
    let before = match before {
        Ok(before) => before,
        Err(e) => {
            // Nothing was reloaded: putting the previous file back undoes the swap.
            if let Some(c) = cache {
                c.clear();
            }
            if had_previous && let Err(restore) = host.copy(&prev_path, live_path).await {
                tracing::error!(node = host.node(), error = %restore, "could not put the previous config back after `show proc` failed");
            }
            return Err(e);
        }
    };
    tracing::debug!(node = host.node(), digest = %config.digest.short(), "new config in place; reloading");

    match reload_and_confirm(host, layout, &before).await {
        Ok(()) => {
            if let (Some(cache), Some(stamp)) = (cache, stamp) {
                cache.set(live_path, LiveFile::of_rendered(config), stamp);
            }
            Ok(Some(Applied::Reloaded))
        }
        Err(why) => Err(roll_back(host, layout, had_previous, why.to_string()).await),
    }
}

/// `haproxy -c -f <path>` as the layout runs it.
pub(super) fn validate_argv(layout: &HaproxyLayout, path: &str) -> Vec<String> {
    vec![
        layout.haproxy_bin.clone(),
        "-c".into(),
        "-f".into(),
        path.to_owned(),
    ]
}

/// Runs `haproxy -c -f <path>`; on rejection removes the file and returns HAProxy's words.
pub(crate) async fn validate_file(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    path: &str,
) -> Result<(), DeployError> {
    let out = host.exec(&validate_argv(layout, path)).await?;
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
    host.reloaded().await;
    confirm_reload(host, layout, before).await
}

/// A new `show proc` starts this often while none has shown the reload yet, several in flight
/// at once: over a long link each one takes a round trip (the master's socket refuses
/// connections while it re-executes), and the reload shows within a few milliseconds of the
/// master accepting again instead of up to a round trip (plus a pause) later.
const CONFIRM_EVERY: Duration = Duration::from_millis(10);

/// At most this many `show proc` in flight while confirming a reload.
const CONFIRM_IN_FLIGHT: usize = 4;

/// Waits until `show proc` says the reload since `before` took (or failed). The master
/// re-executes itself on reload: its socket refuses connections for a moment, so errors are
/// retried until the layout's reload timeout like a reload that has not shown up yet. Every
/// answer is judged on its own against `before`, so answers arriving out of order change
/// nothing: one from before the reload shows no reload yet.
async fn confirm_reload(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    before: &MasterProcs,
) -> Result<(), ReloadError> {
    let deadline = Instant::now() + layout.reload_timeout;
    let seconds = layout.reload_timeout.as_secs_f64();
    let mut in_flight = FuturesUnordered::new();
    let mut next = Instant::now();
    let mut last = ReloadError::NotSeen { seconds };
    loop {
        if in_flight.len() < CONFIRM_IN_FLIGHT && Instant::now() >= next {
            in_flight.push(show_proc(host, layout));
            next = Instant::now() + CONFIRM_EVERY;
        }
        let may_start = in_flight.len() < CONFIRM_IN_FLIGHT;
        tokio::select! {
            Some(answer) = in_flight.next() => {
                last = match answer {
                    Ok(now) => match now.reload_succeeded_since(before) {
                        Some(true) => return Ok(()),
                        Some(false) => return Err(ReloadError::NoWorker),
                        None => ReloadError::NotSeen { seconds },
                    },
                    Err(source) => ReloadError::Unconfirmed { seconds, source },
                };
            }
            () = tokio::time::sleep_until(next), if may_start => {}
            () = tokio::time::sleep_until(deadline) => return Err(last),
        }
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
    if let Some(cache) = host.live_cache() {
        cache.clear();
    }
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

/// The new file is in place but the runtime API did not bring the running HAProxy to it
/// (`why`): reload it. A reload that cannot even start must still put the previous file
/// back, or the next attempt would find the digest live and stop.
pub(super) async fn reload_after_runtime_miss(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    why: &(dyn std::fmt::Display + Sync),
) -> Result<Option<Applied>, DeployError> {
    tracing::warn!(node = host.node(), reason = %why, "runtime API update did not take; reloading the new config");
    match reload_now(host, layout).await {
        Ok(()) => Ok(Some(Applied::Reloaded)),
        Err(failed) => Err(roll_back(
            host,
            layout,
            true,
            format!("the runtime API update did not take ({why}) and the reload failed: {failed}"),
        )
        .await),
    }
}
