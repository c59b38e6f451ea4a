//! The stage request (write, stamp check, `haproxy -c`, keep, swap) goes to a shell the SSH
//! host started ahead on the edge, so it costs no channel and no wait for sshd's input
//! window on the path. On a real testbed edge: the waiting shell is used (no command
//! channel opened on the path), a new one waits after each change, one that ended is
//! replaced by a fresh channel, a login shell that prints while starting does not spoil it,
//! and none outlives its session. Its own test binary: it counts the SSH host's channel
//! events through the global `tracing` subscriber. Needs root and the testbed packages.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly on a failed step

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use edgelb_core::Applied;
use edgelb_haproxy::SshDeployer;
use edgelb_tests::ssh_channels::{ChannelLog, ChannelSeen};
use edgelb_tests::testbed::kept_edge::{assert_edge_runs, deploy_set};
use edgelb_tests::testbed::scenario::renderer;
use edgelb_tests::testbed::{Edge, Testbed, TestbedConfig};
use edgelb_tests::testbed_tools;

/// What only the stage script's command line holds: how the waiting shell is found.
const STAGE_SHELL: &str = "IFS= read -r n";

/// The edge's stage shells waiting for their input, once one shows (up to 5 s).
async fn waiting_stage_shells(edge: &Edge) -> Vec<u32> {
    let started = Instant::now();
    loop {
        let pids = edge.pids_running(STAGE_SHELL);
        if !pids.is_empty() || started.elapsed() > Duration::from_secs(5) {
            return pids;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Until no stage shell runs on the edge (up to `within`).
async fn no_stage_shell_within(edge: &Edge, within: Duration, what: &str) {
    let started = Instant::now();
    while !edge.pids_running(STAGE_SHELL).is_empty() {
        assert!(started.elapsed() < within, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Command (`exec`) channels opened on the path of a request, not ahead.
fn exec_on_path(seen: &[ChannelSeen]) -> usize {
    seen.iter().filter(|c| c.kind == "exec" && !c.ahead).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stage_shell_started_ahead_is_used_and_replaced_when_it_ended() {
    let channels = ChannelLog::install_global();
    let Some(tb) = Testbed::start_or_skip(
        "the_stage_shell_started_ahead_is_used_and_replaced_when_it_ended",
        TestbedConfig {
            edges: 1,
            backends: 3,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let edge = &tb.edges[0];
    let node = edge.node();
    let b: Vec<SocketAddr> = tb.cluster.backends.iter().map(|b| b.addr).collect();
    let sets = [[b[0], b[1]], [b[0], b[2]]];
    let deployer = SshDeployer::new(tb.deployer_config()).unwrap();
    let renderer = renderer();

    let (first, _) = deploy_set(&deployer, &renderer, &node, &sets[0]).await;
    assert_eq!(first, Ok(Applied::Reloaded));
    let (applied, text) = deploy_set(&deployer, &renderer, &node, &sets[1]).await;
    assert_eq!(applied, Ok(Applied::RuntimeUpdated));
    assert_edge_runs(&tb, edge, &text).await;

    // After a stage request one shell waits for the next: the next change uses it (no
    // command channel on its path, and that shell is gone after) and starts another one.
    let waiting = waiting_stage_shells(edge).await;
    assert_eq!(waiting.len(), 1, "one stage shell waits on the edge");
    channels.take();
    let (applied, text) = deploy_set(&deployer, &renderer, &node, &sets[0]).await;
    assert_eq!(applied, Ok(Applied::RuntimeUpdated));
    assert_eq!(
        exec_on_path(&channels.take()),
        0,
        "the change used the waiting shell"
    );
    assert_edge_runs(&tb, edge, &text).await;
    let next = waiting_stage_shells(edge).await;
    assert_eq!(next.len(), 1, "a new stage shell waits on the edge");
    assert_ne!(
        next, waiting,
        "the shell that waited ran the change and exited"
    );

    // The waiting shell ends on its own (an sshd ChannelTimeout, a kill by hand): the next
    // change opens a fresh channel for its stage request and lands all the same.
    for pid in &next {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    no_stage_shell_within(edge, Duration::from_secs(5), "the killed shell never ended").await;
    channels.take();
    let (applied, text) = deploy_set(&deployer, &renderer, &node, &sets[1]).await;
    assert_eq!(applied, Ok(Applied::RuntimeUpdated));
    assert_eq!(
        exec_on_path(&channels.take()),
        1,
        "one fresh channel for the stage request"
    );
    assert_edge_runs(&tb, edge, &text).await;
    assert_eq!(
        waiting_stage_shells(edge).await.len(),
        1,
        "and a new shell waits again"
    );

    // A login shell that prints while starting (a noisy `.bashrc`, bind-mounted as root's):
    // the shells started from now on print first, and are used all the same; the stamp
    // still reads right (the change after is a runtime update, not a repair).
    std::fs::write(
        edge.dir.join("bashrc"),
        "echo 'welcome to the edge'\necho 'bashrc: a warning' >&2\n",
    )
    .unwrap();
    let mut last = text;
    for (round, set) in [&sets[0], &sets[1], &sets[0]].into_iter().enumerate() {
        waiting_stage_shells(edge).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        channels.take();
        let (applied, text) = deploy_set(&deployer, &renderer, &node, set).await;
        assert_eq!(applied, Ok(Applied::RuntimeUpdated), "noisy round {round}");
        if round > 0 {
            assert_eq!(
                exec_on_path(&channels.take()),
                0,
                "noisy round {round}: the shell that printed was used"
            );
        }
        assert_edge_runs(&tb, edge, &text).await;
        last = text;
    }

    // A controller that goes away leaves no shell behind: its session closes, the shell's
    // input ends, and it exits without touching anything.
    drop(deployer);
    no_stage_shell_within(
        edge,
        Duration::from_secs(10),
        "a stage shell outlived its session",
    )
    .await;
    assert_eq!(edge.live_config(), last, "the live file is untouched");
}
