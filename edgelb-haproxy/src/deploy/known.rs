//! The deploy on a host that knows its live file ([`LiveCache`](crate::LiveCache)): nothing
//! is read before the change goes out.
//!
//! An endpoint-only change (decided against the cached file) sends its runtime commands
//! and `show servers state` in one exchange over the host's kept runtime-API connection
//! (a change of source ranges then replaces and reads back the changed ACL lists, see
//! [`crate::cli::acl`]);
//! then one request to the host writes the new file, checks that the live file still has
//! the stamp edgelb left, validates the new file with `haproxy -c`, keeps the live file and
//! swaps the new one in ([`EdgeHost::stage_and_swap`]; the SSH host sends it to a shell it
//! started ahead on the edge, `ssh/stage_ahead.rs`). Over a WAN link the change is live after one round trip, and the whole
//! verified transaction after one more plus the edge's time for the request (`haproxy -c`
//! most of it). Any other change takes the reload path the
//! same way (`deploy/reload.rs`), without reading the live file first.
//!
//! Every safety step of the careful path stays: nothing is swapped unless `haproxy -c`
//! accepts it; the running servers are checked against the new file (a mismatch reloads it;
//! a reload that does not take is rolled back); a rejected file has its runtime commands
//! undone. A live file whose stamp changed (edited by hand) swaps nothing, empties the
//! cache and hands the deploy to the careful path, which reads the file and repairs it.

use edgelb_core::{Applied, DeployError, RenderedConfig};

use super::acl_drift;
use super::reload::{reload_after_runtime_miss, staged_reload, validate_argv};
use crate::cli::runtime::RuntimeApi;
use crate::cli::{acl, plan};
use crate::edge_host::{EdgeHost, StageSwap, Staged};
use crate::layout::HaproxyLayout;
use crate::live_cache::{Known, LiveCache};
use crate::live_file::LiveFile;

/// `Ok(None)` when the host knows nothing of its live file, or when the config is the one
/// it knows (the careful path then checks the running servers), or when the live file
/// turned out to have changed: the careful path goes on, reading the file.
pub(super) async fn try_known(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    config: &RenderedConfig,
) -> Result<Option<Applied>, DeployError> {
    let Some(cache) = host.live_cache() else {
        return Ok(None);
    };
    let Some(known) = cache.get(&layout.config_path) else {
        return Ok(None);
    };
    if known.file.digest == Some(config.digest) {
        return Ok(None);
    }
    let new = LiveFile::of_rendered(config);
    let runtime = known.file.own && known.file.endpoint_only_change_to(&new).is_ok();
    if runtime
        && let Some(socket) = new.stats_socket.clone()
        && let Ok(api) = RuntimeApi::new(host, &socket)
        && let Ok(commands) = plan::plan_between(&known.file.servers, &new.servers)
    {
        let runtime = Runtime {
            api: &api,
            socket: &socket,
            commands: &commands,
        };
        return runtime_update(host, layout, cache, &known, runtime, new, config).await;
    }
    super::listen_check::check_new_listen_ports(host, Some(&known.file.bind_ports), &new).await?;
    staged_reload(host, layout, None, Some(&known.stamp), config).await
}

/// What the runtime path sends through: the runtime API, its socket, and the server commands.
struct Runtime<'a> {
    api: &'a RuntimeApi<'a>,
    socket: &'a str,
    commands: &'a [crate::cli::runtime::RuntimeCommand],
}

/// The runtime path on a known live file (see the module docs).
async fn runtime_update(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    cache: &LiveCache,
    known: &Known,
    runtime: Runtime<'_>,
    new: LiveFile,
    config: &RenderedConfig,
) -> Result<Option<Applied>, DeployError> {
    let node = host.node();
    let (new_path, prev_path) = (layout.new_path(), layout.prev_path());
    let validate = validate_argv(layout, &new_path);
    let request = StageSwap {
        live_path: &layout.config_path,
        new_path: &new_path,
        prev_path: &prev_path,
        contents: config.text.as_bytes(),
        validate: &validate,
        keep_live: None,
        expect_stamp: Some(&known.stamp),
    };
    // The commands first, alone: the edge answers them before it starts `haproxy -c` and
    // its helpers, which on a busy edge (or 20 edges sharing a test machine's cores) would
    // delay the answer; the stage request then goes to a shell the SSH host started ahead,
    // so it costs one round trip plus the edge's time for it.
    let lists_change = known.file.source_acls != new.source_acls;
    let checked = async {
        let commands = plan::send_and_verify(runtime.api, runtime.commands, &new.servers).await?;
        if !lists_change {
            return Ok(commands);
        }
        let (live_lists, new_lists) = (&known.file.source_acls, &new.source_acls);
        let lists = acl::push(host, runtime.socket, live_lists, new_lists)
            .await
            .map_err(Box::new)?;
        acl::verify(host, runtime.socket, new_lists)
            .await
            .map_err(Box::new)?;
        Ok::<_, plan::RuntimeUpdateError>(commands + lists)
    }
    .await;
    let staged = host.stage_and_swap(&request).await;
    let staged = match staged {
        Ok(staged) => staged,
        Err(e) => {
            // Whether the file was swapped is unknown: the next deploy reads it.
            cache.clear();
            return Err(e);
        }
    };
    match staged {
        Staged::LiveChanged => {
            cache.clear();
            tracing::warn!(
                node,
                path = %layout.config_path,
                "the live config changed since edgelb wrote it (edited by hand?); reading it and repairing"
            );
            Ok(None)
        }
        Staged::Rejected(output) => {
            tracing::debug!(
                node,
                "new config rejected after runtime API changes; undoing them"
            );
            // Back to the live file: its source ACL lists, then its servers.
            match acl_drift::restore_running(host, layout, &known.file).await {
                Ok(applied) => {
                    tracing::info!(node, %applied, "runtime API changes undone; the live config is what runs");
                }
                Err(e) => {
                    tracing::error!(node, error = %e, "undoing the runtime API changes failed")
                }
            }
            Err(DeployError::ConfigRejected {
                node: node.to_owned(),
                haproxy_output: output,
            })
        }
        Staged::Swapped { stamp } => {
            match stamp {
                Some(stamp) => cache.set(&layout.config_path, new, stamp),
                None => cache.clear(),
            }
            match checked {
                Ok(commands) => {
                    tracing::info!(node, digest = %config.digest.short(), commands, "applied through the runtime API, no reload");
                    Ok(Some(Applied::RuntimeUpdated))
                }
                Err(why) => {
                    cache.clear();
                    reload_after_runtime_miss(host, layout, &why).await
                }
            }
        }
    }
}
