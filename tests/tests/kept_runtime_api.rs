//! The deploy that skips reading the live file (it knows what it last wrote) and keeps one
//! runtime-API connection per edge, on a real testbed edge: a hand edit of the live file
//! between two changes is seen and repaired; a reload by hand (the kept connection then
//! reaches the stopping old worker) and SSH sessions killed in the middle of changes never
//! leave a change applied to the wrong process or half done. Needs root and the testbed
//! packages.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly on a failed step

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use edgelb_core::Applied;
use edgelb_haproxy::SshDeployer;
use edgelb_tests::testbed::kept_edge::{assert_edge_runs as assert_runs, deploy_set as deploy};
use edgelb_tests::testbed::scenario::renderer;
use edgelb_tests::testbed::{Testbed, TestbedConfig};
use edgelb_tests::testbed_tools;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_between_two_changes_is_seen_and_repaired() {
    let Some(tb) = Testbed::start_or_skip(
        "a_hand_edit_between_two_changes_is_seen_and_repaired",
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
    let (set_a, set_b) = ([b[0], b[1]], [b[0], b[2]]);
    let deployer = SshDeployer::new(tb.deployer_config()).unwrap();
    let renderer = renderer();
    let tool = &tb.tools.tb_client;

    let (first, _) = deploy(&deployer, &renderer, &node, &set_a).await;
    assert_eq!(first, Ok(Applied::Reloaded));
    let (second, text_b) = deploy(&deployer, &renderer, &node, &set_b).await;
    assert_eq!(second, Ok(Applied::RuntimeUpdated));
    assert_runs(&tb, edge, &text_b).await;

    // By hand, on the edge: one more line in the live file (valid for HAProxy).
    let path = edge.haproxy_file("haproxy.cfg");
    std::fs::write(&path, format!("{text_b}    retries 5\n")).unwrap();
    let reloads = edge.show_proc(tool).reloads;

    // The next endpoint change is endpoint-only against what edgelb wrote, but the file is
    // not that any more: the edit is seen, and the new config replaces it by a reload.
    let (third, text_a) = deploy(&deployer, &renderer, &node, &set_a).await;
    assert_eq!(third, Ok(Applied::Reloaded));
    assert_eq!(edge.show_proc(tool).reloads, reloads + 1);
    assert_runs(&tb, edge, &text_a).await;
    assert!(!edge.live_config().contains("retries 5"));

    // And the edge is known again: the next change takes the runtime path.
    let (fourth, text_b) = deploy(&deployer, &renderer, &node, &set_b).await;
    assert_eq!(fourth, Ok(Applied::RuntimeUpdated));
    assert_runs(&tb, edge, &text_b).await;
    assert_eq!(edge.show_proc(tool).reloads, reloads + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_or_stale_runtime_connection_never_strands_a_change() {
    let Some(tb) = Testbed::start_or_skip(
        "a_dropped_or_stale_runtime_connection_never_strands_a_change",
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
    let tool = &tb.tools.tb_client;

    assert_eq!(
        deploy(&deployer, &renderer, &node, &sets[0]).await.0,
        Ok(Applied::Reloaded)
    );
    let (applied, text) = deploy(&deployer, &renderer, &node, &sets[1]).await;
    assert_eq!(applied, Ok(Applied::RuntimeUpdated));
    assert_runs(&tb, edge, &text).await;

    // A reload by hand: the kept runtime-API connection now reaches the old worker, which
    // still answers (until hard-stop-after). The change must land in the new one.
    let before = edge.show_proc(tool);
    let out = edge
        .command(tool)
        .args(["sock", "/run/haproxy/master.sock", "reload"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let started = Instant::now();
    while edge.show_proc(tool).reloads == before.reloads {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the reload by hand never showed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (applied, text) = deploy(&deployer, &renderer, &node, &sets[0]).await;
    assert_eq!(applied, Ok(Applied::RuntimeUpdated));
    assert_runs(&tb, edge, &text).await;

    // SSH sessions killed while changes are under way: whatever each change reports, the
    // one after it brings the edge to exactly its config.
    for round in 0..4u64 {
        let set = &sets[(round as usize + 1) % 2];
        let change = deploy(&deployer, &renderer, &node, set);
        let kill = async {
            tokio::time::sleep(Duration::from_millis(2 + 3 * round)).await;
            edge.kill_sessions();
        };
        let ((during, _), ()) = tokio::join!(change, kill);
        eprintln!("round {round}: change during the kill: {during:?}");
        let (after, text) = deploy(&deployer, &renderer, &node, set).await;
        assert!(
            after.is_ok(),
            "round {round}: the change after the kill failed: {after:?}"
        );
        assert_runs(&tb, edge, &text).await;
    }
}
