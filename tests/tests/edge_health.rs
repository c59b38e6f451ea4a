//! Edge health on the testbed (real sshd and HAProxy per edge, the native SSH deployer as
//! the pipeline's health probe): one edge's HAProxy hangs, then its sshd stops, then its link
//! is cut; each is seen as `unhealthy` with a reason within a few probe intervals, each
//! mend as `healthy`, while the other edge stays healthy and serves every connection. (That
//! an unhealthy edge's addresses leave the Services' status is the status writer's test in
//! edgelb-kube; `cargo bench --bench edge_failover` repeats this and prints medians.)
//!
//! Needs root and the packages named in `edgelb_tests::testbed` (skipped with a message
//! without them, failed when `CI` is set).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use edgelb_tests::edge_failover::{Fault, quick_health, run};
use edgelb_tests::testbed::{Testbed, TestbedConfig};
use edgelb_tests::testbed_tools;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_haproxy_a_stopped_sshd_and_a_cut_link_make_an_edge_unhealthy_and_back() {
    let Some(mut tb) = Testbed::start_or_skip(
        "a_hung_haproxy_a_stopped_sshd_and_a_cut_link_make_an_edge_unhealthy_and_back",
        TestbedConfig {
            edges: 2,
            backends: 1,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let seen = run(&mut tb, 1).await;
    let health = quick_health();
    for trial in &seen.trials {
        println!(
            "{:?}: unhealthy after {:?} ({}), healthy again {:?} after the mend",
            trial.fault, trial.detected, trial.reason, trial.recovered
        );
        let expected = match trial.fault {
            Fault::HaproxyHung => "no answer to the health probe",
            Fault::SshdDown => "cannot connect",
            Fault::LinkCut => "no answer to the health probe",
        };
        assert!(
            trial.reason.contains(expected),
            "{:?}: {}",
            trial.fault,
            trial.reason
        );
        // A bound with room: detection needs `fall` probes (each at most `timeout`) after the
        // next tick, far below the bound on a loaded machine.
        let bound = (health.interval + health.timeout) * (health.fall + 4);
        assert!(trial.detected < bound, "{trial:?}");
    }
    assert_eq!(seen.trials.len(), 3);
    assert!(seen.other_stayed_healthy, "edge1 never flapped");
    assert!(
        seen.failed.is_empty(),
        "{} of {} connections through edge1 failed: {:?}",
        seen.failed.len(),
        seen.connections,
        &seen.failed[..seen.failed.len().min(5)]
    );
}
