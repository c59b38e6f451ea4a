//! Drift of the running servers from the live file (`deploy/drift.rs`), seen and repaired
//! through [`apply_config`] and [`live_digest`] on a simulated edge.
// Test code: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use edgelb_core::{Applied, DeployError, Digest, RenderedConfig};

use crate::deploy::{apply_config, live_digest};
use crate::layout::HaproxyLayout;
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
