//! The blast radius of a failure is the Service or the edge that failed, on the testbed
//! (real sshd and HAProxy per edge, the native SSH deployer, the real pipeline; the scenarios
//! live in `edgelb_tests::blast_radius`, and `cargo bench --bench blast_radius` prints their
//! figures at full length):
//!
//! - a Service on a port another process holds on the edges (sshd's 22) is quarantined
//!   before any reload, while a load loop through every edge on another port sees no failed
//!   connection, the other Service's changes still go live, no reload ever fails, and the
//!   bad Service leaves without an empty-backend hold;
//! - one edge's link cut, then at 30 % packet loss, under endpoint churn: every other edge
//!   runs every change without waiting for it, and the faulty edge catches up after.
//!
//! They need root and the packages named in `edgelb_tests::testbed` (skipped with a message
//! without them, failed when `CI` is set).
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns too

use std::time::Duration;

use edgelb_core::PipelineConfig;
use edgelb_tests::blast_radius::{faulty_edge, median_and_max_ms, sshlike_key, taken_port};
use edgelb_tests::testbed::scenario::fast_pipeline;
use edgelb_tests::testbed::{Testbed, TestbedConfig};
use edgelb_tests::testbed_tools;

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDGELB_TEST_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_on_a_taken_port_is_quarantined_and_hurts_no_other_service() {
    init_logs();
    let Some(tb) = Testbed::start_or_skip(
        "a_service_on_a_taken_port_is_quarantined_and_hurts_no_other_service",
        TestbedConfig {
            edges: 2,
            backends: 2,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let config = PipelineConfig {
        empty_backend_hold: Duration::from_secs(30),
        ..fast_pipeline()
    };
    let seen = taken_port(&tb, 9, config).await;

    let key = sshlike_key();
    for (name, node) in &seen.status_with_bad.nodes {
        let why = node.quarantined.get(&key);
        assert!(
            why.is_some_and(|w| w.contains("listen port(s) 22 already taken")),
            "{name}: {:?}",
            node.quarantined
        );
        assert!(
            node.last_error.is_none(),
            "{name} itself did not fail: {node:?}"
        );
        assert!(
            node.in_sync(seen.status_with_bad.generation),
            "{name}: {node:?}"
        );
    }
    assert!(
        seen.web_change_live.iter().all(Option::is_some),
        "the other Service's change went live on every edge: {:?}",
        seen.web_change_live
    );
    let end = &seen.status_at_end;
    assert!(
        end.held_backends.is_empty(),
        "it never ran: not held: {end:?}"
    );
    assert!(end.quarantined().is_empty(), "{:?}", end.quarantined());
    for (i, failed) in seen.failed.iter().enumerate() {
        assert!(
            failed.is_empty(),
            "edge {i}: {} connections to the web port failed: {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
    }
    assert_eq!(seen.failed_reloads, vec![0, 0], "no reload may fail");
    println!(
        "taken port: {} connections through 2 edges, 0 failed, 0 failed reloads; web's change live after {:?}",
        seen.connections, seen.web_change_live
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_or_lossy_edge_delays_no_change_on_the_other_edges() {
    init_logs();
    let Some(tb) = Testbed::start_or_skip(
        "a_cut_or_lossy_edge_delays_no_change_on_the_other_edges",
        TestbedConfig {
            edges: 3,
            backends: 3,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let seen = faulty_edge(&tb, 6).await;
    assert!(seen.faulty_reported, "edge3's trouble shows in its status");
    assert!(
        seen.faulty_caught_up.is_some(),
        "edge3 runs the last change once its link heals"
    );
    for (node, latencies) in &seen.latencies {
        let (median, max) = median_and_max_ms(latencies);
        println!(
            "{node}: {} changes while edge3 was cut or lossy: live after median {median:.0} ms, max {max:.0} ms",
            latencies.len()
        );
        // Below the 15 s step timeout that a hung edge3 needs to give up, with room for a
        // loaded machine: no change waited for it (before edges were independent, changes
        // waited 15 s and more).
        assert!(
            max < 10_000.0,
            "{node} waited for the faulty edge: {latencies:?}"
        );
    }
}
