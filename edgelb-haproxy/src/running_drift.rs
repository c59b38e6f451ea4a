//! Running servers that no longer match the live file: someone changed them through the
//! runtime API by hand (`set server … state maint`, `… weight`, `… addr`), or a runtime
//! update was lost. The file is right and a reload would restore it, but the file's digest
//! alone cannot see this drift, so:
//! * [`live_digest`](crate::apply::live_digest) (what the pipeline's resync compares) reports
//!   a digest that matches no rendered config when the running servers differ, and
//! * deploying the config that is already live puts the servers back through the runtime API
//!   (no reload), falling back to a reload of the live file when that does not take; the
//!   runtime path undoes its commands for a rejected file the same way.

use edgelb_core::{Applied, DeployError};

use crate::apply::{reload_and_confirm, show_proc};
use crate::host::EdgeHost;
use crate::layout::HaproxyLayout;
use crate::runtime_api::{RuntimeApi, ServerState};
use crate::runtime_update::{self, ServerSlot};

/// How the running servers differ from what the live file `text` says; `None` when they
/// match, or when they cannot be compared: a file without a stats socket, or a socket that
/// does not answer (logged at debug; nothing here can repair a HAProxy that is down, and
/// the next change's deploy reports it).
pub async fn running_drift(host: &dyn EdgeHost, text: &str) -> Option<String> {
    let split = runtime_update::split_config(text);
    let socket = split.stats_socket.as_deref()?;
    match drift_of(host, socket, &split.servers).await {
        Some((why, _)) => Some(why),
        None => crate::acl_drift::drift(host, socket, text).await,
    }
}

/// How the servers running behind `socket` differ from `slots`, with what runs; `None` as
/// for [`running_drift`].
async fn drift_of(
    host: &dyn EdgeHost,
    socket: &str,
    slots: &[ServerSlot],
) -> Option<(String, Vec<ServerState>)> {
    let api = RuntimeApi::new(host, socket).ok()?;
    match api.show_servers_state(None).await {
        Ok(running) => runtime_update::compare(slots, &running)
            .err()
            .map(|why| (why, running)),
        Err(e) => {
            tracing::debug!(node = host.node(), error = %e, "cannot compare the running servers with the live file");
            None
        }
    }
}

/// Brings the running servers to the live file `text`: for a deploy of the config already
/// live, and to undo runtime changes whose new file was rejected. `Unchanged` when they match
/// it, else brings them back through the runtime API (`RuntimeUpdated`), or, when that does
/// not take, reloads the live file (`Reloaded`). Drift that even the reload leaves (the
/// stats socket belongs to a HAProxy running another file, say) is an error, so the
/// pipeline backs off instead of reloading at every resync.
pub async fn restore_running_servers(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    text: &str,
) -> Result<Applied, DeployError> {
    let node = host.node();
    let split = runtime_update::split_config(text);
    let Some(socket) = split.stats_socket.as_deref() else {
        return Ok(Applied::Unchanged);
    };
    let Some((why, running)) = drift_of(host, socket, &split.servers).await else {
        return Ok(Applied::Unchanged);
    };
    tracing::warn!(node, reason = %why, "running servers differ from the live file; putting them back through the runtime API");
    let restored = async {
        let api = RuntimeApi::new(host, socket).map_err(|e| e.to_string())?;
        runtime_update::send_plan(&api, &split.servers, &running).await?;
        runtime_update::verify(&api, &split.servers).await
    }
    .await;
    let Err(still) = restored else {
        return Ok(Applied::RuntimeUpdated);
    };
    tracing::warn!(node, reason = %still, "the runtime API did not restore the servers; reloading the live file");
    let before = show_proc(host, layout).await?;
    if let Err(message) = reload_and_confirm(host, layout, &before).await {
        return Err(DeployError::ReloadFailed {
            node: node.to_owned(),
            message: format!(
                "the running servers differ from the live file ({why}) and reloading it failed: {message}"
            ),
            rolled_back: false,
        });
    }
    match drift_of(host, socket, &split.servers).await {
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

#[cfg(test)]
mod tests {
    use edgelb_core::{Digest, RenderedConfig};

    use super::*;
    use crate::apply::{apply_config, live_digest};
    use crate::sim_edge::SimEdge;

    const BODY: &str = "global\n    master-worker\n    stats socket /run/haproxy/admin.sock mode 660 level admin\n\nfrontend fe_80\n    bind :80\n    default_backend be_a\n\nbackend be_a\n    server s001 10.0.0.1:80 check send-proxy-v2\n    server s002 10.0.0.2:80 check send-proxy-v2\n    server s003 127.0.0.1:1 check send-proxy-v2 disabled\n";

    /// An edge running `BODY`, and its rendered config.
    fn edge() -> (SimEdge, RenderedConfig) {
        let config = RenderedConfig::from_body(BODY.to_owned());
        (SimEdge::start(&config.text, false, false), config)
    }

    /// An edge whose HAProxy takes `set server … weight` without doing it, with s002's weight
    /// changed to 9 by hand; with `stale_reload` a reload does not load the file either.
    fn weight_drift_the_runtime_api_cannot_fix(stale_reload: bool) -> (SimEdge, RenderedConfig) {
        let (sim, config) = edge();
        let sim = SimEdge {
            ignores_weight: true,
            stale_reload,
            ..sim
        };
        sim.servers
            .lock()
            .unwrap()
            .get_mut(&("be_a".to_owned(), "s002".to_owned()))
            .unwrap()
            .3 = 9;
        (sim, config)
    }

    async fn digest(sim: &SimEdge) -> Option<Digest> {
        live_digest(sim, &HaproxyLayout::default()).await.unwrap()
    }

    #[tokio::test]
    async fn matching_servers_are_left_alone() {
        let (sim, config) = edge();
        let layout = HaproxyLayout::default();
        assert_eq!(digest(&sim).await, Some(config.digest));
        assert_eq!(
            apply_config(&sim, &layout, &config).await,
            Ok(Applied::Unchanged)
        );
        assert!(
            !sim.log
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.starts_with("set "))
        );
    }

    #[tokio::test]
    async fn servers_changed_by_hand_are_drift_and_are_put_back_without_a_reload() {
        let (sim, config) = edge();
        let layout = HaproxyLayout::default();
        sim.runtime_command("set server be_a/s001 state maint");
        sim.runtime_command("set server be_a/s003 addr 10.9.9.9 port 99");
        let drifted = digest(&sim).await;
        assert!(drifted.is_some() && drifted != Some(config.digest));

        assert_eq!(
            apply_config(&sim, &layout, &config).await,
            Ok(Applied::RuntimeUpdated)
        );
        assert!(!sim.reloaded());
        assert_eq!(sim.live(), config.text);
        assert_eq!(digest(&sim).await, Some(config.digest));
        assert_eq!(
            apply_config(&sim, &layout, &config).await,
            Ok(Applied::Unchanged)
        );
    }

    #[tokio::test]
    async fn drift_the_runtime_api_cannot_fix_is_reloaded_away() {
        let (sim, config) = weight_drift_the_runtime_api_cannot_fix(false);
        let layout = HaproxyLayout::default();
        assert_eq!(
            apply_config(&sim, &layout, &config).await,
            Ok(Applied::Reloaded)
        );
        assert!(sim.reloaded());
        assert_eq!(digest(&sim).await, Some(config.digest));
    }

    #[tokio::test]
    async fn drift_a_reload_leaves_is_an_error_not_a_reload_loop() {
        // The stats socket belongs to a HAProxy that runs another file: a reload of ours
        // changes nothing there.
        let (sim, config) = weight_drift_the_runtime_api_cannot_fix(true);
        let layout = HaproxyLayout::default();
        let err = apply_config(&sim, &layout, &config).await.unwrap_err();
        assert!(
            matches!(&err, DeployError::Step { step, .. } if step == "restoring the running servers"),
            "{err}"
        );
        assert!(err.to_string().contains("stats socket"), "{err}");
    }
}
