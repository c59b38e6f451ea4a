//! The runtime path of a deploy (`deploy/runtime.rs`), through [`apply_config`] on a
//! simulated edge: endpoint-only changes without a reload, and every way back to a reload.
// Test code: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use edgelb_core::DeployError;

use crate::cli::plan::verify;
use crate::cli::runtime::RuntimeApi;
use crate::deploy::apply_config;
use crate::layout::HaproxyLayout;
use crate::live_file::LiveFile;
use crate::sim_edge::SimEdge;

const LIVE: &str = "# edgelb-digest: sha256:00\n# comment\n\nglobal\n    master-worker\n    stats socket /run/haproxy/admin.sock mode 660 level admin\n\nfrontend fe_80\n    bind :80\n    default_backend be_a\n\n# be_a: 1 of 4 slots in use\nbackend be_a\n    balance roundrobin\n    server s001 10.0.0.1:80 check send-proxy-v2\n    server s002 10.0.0.2:80 check send-proxy-v2 weight 0\n    server s003 127.0.0.1:1 check send-proxy-v2 disabled\n    server s004 [fd00::4]:8443 check send-proxy-v2\n";

/// LIVE with s001 leaving (to the placeholder), s002's drain ending and the spare s003
/// taking a new endpoint.
fn moved_endpoints() -> String {
    LIVE.replace(
        "127.0.0.1:1 check send-proxy-v2 disabled",
        "10.0.0.3:81 check send-proxy-v2",
    )
    .replace(
        "10.0.0.1:80 check send-proxy-v2\n",
        "127.0.0.1:1 check send-proxy-v2 disabled\n",
    )
    .replace(
        "10.0.0.2:80 check send-proxy-v2 weight 0",
        "10.0.0.2:80 check send-proxy-v2",
    )
}

fn rendered(body: &str) -> edgelb_core::RenderedConfig {
    edgelb_core::RenderedConfig::from_body(body.to_owned())
}

/// [`moved_endpoints`] without its digest line, as a renderer's body.
fn changed_body() -> String {
    moved_endpoints().split_once('\n').unwrap().1.to_owned()
}

fn live_config() -> edgelb_core::RenderedConfig {
    rendered(LIVE.split_once('\n').unwrap().1)
}

#[tokio::test]
async fn endpoint_change_goes_through_the_runtime_api_without_a_reload() {
    let live = live_config();
    let sim = SimEdge::start(&live.text, false, false);
    let new = rendered(&changed_body());
    let layout = HaproxyLayout::default();
    let applied = apply_config(&sim, &layout, &new).await.unwrap();
    assert_eq!(applied, edgelb_core::Applied::RuntimeUpdated);
    assert!(!sim.reloaded(), "{:?}", sim.log.lock().unwrap());
    assert_eq!(sim.live(), new.text);
    assert_eq!(
        sim.files.lock().unwrap()[&layout.prev_path()],
        live.text.as_bytes()
    );
    let log = sim.log.lock().unwrap().clone();
    assert!(
        log.iter().any(|l| l.starts_with("haproxy -c -f")),
        "validated: {log:?}"
    );
    assert!(
        log.iter().any(|l| l.contains(
            "set server be_a/s003 addr 10.0.0.3 port 81; set server be_a/s003 state ready"
        ) || l.contains("set server be_a/s003 addr 10.0.0.3 port 81")),
        "{log:?}"
    );
    // What a reload of the new file gives is what the runtime API set.
    let after_runtime = sim.servers.lock().unwrap().clone();
    sim.load(&sim.live());
    let mut after_reload = sim.servers.lock().unwrap().clone();
    // `disabled` from the file is flags 0x5, `state maint` 0x1: both maintenance.
    for v in after_reload.values_mut() {
        if v.2 == 5 {
            v.2 = 1;
        }
    }
    assert_eq!(after_runtime, after_reload);
    // The same config again: unchanged.
    assert_eq!(
        apply_config(&sim, &layout, &new).await.unwrap(),
        edgelb_core::Applied::Unchanged
    );
}

#[tokio::test]
async fn a_mismatch_after_the_commands_falls_back_to_a_reload() {
    let sim = SimEdge::start(&live_config().text, true, false);
    let new = rendered(&changed_body());
    let applied = apply_config(&sim, &HaproxyLayout::default(), &new)
        .await
        .unwrap();
    assert_eq!(applied, edgelb_core::Applied::Reloaded);
    assert!(sim.reloaded());
    assert_eq!(sim.live(), new.text);
}

#[tokio::test]
async fn a_stats_socket_the_runtime_api_cannot_use_means_a_reload() {
    // A user template's socket path that HAProxy takes but the runtime API client does
    // not (it allows letters, digits and / . _ - @ only).
    let odd = |body: String| body.replace("/run/haproxy/admin.sock", "/run/haproxy/admin+1.sock");
    let live = rendered(&odd(LIVE.split_once('\n').unwrap().1.to_owned()));
    let sim = SimEdge::start(&live.text, false, false);
    let new = rendered(&odd(changed_body()));
    let applied = apply_config(&sim, &HaproxyLayout::default(), &new)
        .await
        .unwrap();
    assert_eq!(applied, edgelb_core::Applied::Reloaded);
    assert_eq!(sim.live(), new.text);
}

#[tokio::test]
async fn a_structural_change_reloads_without_runtime_commands() {
    let sim = SimEdge::start(&live_config().text, false, false);
    let new = rendered(&changed_body().replace("bind :80", "bind :81"));
    let applied = apply_config(&sim, &HaproxyLayout::default(), &new)
        .await
        .unwrap();
    assert_eq!(applied, edgelb_core::Applied::Reloaded);
    assert!(
        sim.log
            .lock()
            .unwrap()
            .iter()
            .all(|l| !l.starts_with("set server")),
        "{:?}",
        sim.log.lock().unwrap()
    );
}

#[tokio::test]
async fn a_rejected_file_is_reported_and_the_runtime_changes_undone() {
    let live = live_config();
    let sim = SimEdge::start(&live.text, false, true);
    let err = apply_config(&sim, &HaproxyLayout::default(), &rendered(&changed_body()))
        .await
        .unwrap_err();
    assert!(matches!(err, DeployError::ConfigRejected { .. }), "{err}");
    assert_eq!(sim.live(), live.text, "the live file stays");
    assert!(
        !sim.reloaded(),
        "the runtime changes are undone through the runtime API"
    );
    verify(
        &RuntimeApi::new(&sim, "/run/haproxy/admin.sock").unwrap(),
        &LiveFile::parse(live.text.as_bytes()).servers,
    )
    .await
    .unwrap();
}
