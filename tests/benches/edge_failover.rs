//! How fast edge health follows a failure and a recovery: prints medians, asserts nothing.
//!
//! ```text
//! cargo bench -p edgelb-tests --bench edge_failover                     # root, nft
//! EDGELB_FAILOVER_ROUNDS=20 cargo bench -p edgelb-tests --bench edge_failover
//! ```
//!
//! On 2 testbed edges, with probes every 500 ms (1 s timeout, fall 2, rise 2): the second
//! edge's HAProxy hangs, its sshd stops, its link is cut, each `EDGELB_FAILOVER_ROUNDS` times
//! (default 10), while a load loop runs through the first edge. For each fault, the median
//! and maximum time from the fault to `unhealthy` and from the mend to `healthy`; the status
//! writer then takes one PATCH per Service to publish it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use edgelb_tests::bench_env::{env_usize, listing_only, runtime, testbed_or_skip};
use edgelb_tests::edge_failover::{Fault, quick_health, run};
use edgelb_tests::testbed::TestbedConfig;
use edgelb_tests::testbed_tools;

fn median_max(mut values: Vec<Duration>) -> (Duration, Duration) {
    values.sort();
    (
        values.get(values.len() / 2).copied().unwrap_or_default(),
        values.last().copied().unwrap_or_default(),
    )
}

fn main() {
    if listing_only() {
        return;
    }
    let rounds = env_usize("EDGELB_FAILOVER_ROUNDS", 10);
    runtime().block_on(async {
        let config = TestbedConfig {
            edges: 2,
            backends: 1,
        };
        let Some(mut tb) = testbed_or_skip("edge_failover", config, testbed_tools!()) else {
            return;
        };
        let seen = run(&mut tb, rounds).await;
        let h = quick_health();
        println!(
            "edge failover: probes every {:?}, timeout {:?}, fall {}, rise {}; {rounds} rounds",
            h.interval, h.timeout, h.fall, h.rise
        );
        for fault in Fault::ALL {
            let trials: Vec<_> = seen.trials.iter().filter(|t| t.fault == fault).collect();
            let (detect_median, detect_max) =
                median_max(trials.iter().map(|t| t.detected).collect());
            let (recover_median, recover_max) =
                median_max(trials.iter().map(|t| t.recovered).collect());
            println!(
                "{fault:?}: unhealthy after median {:.0} ms (max {:.0} ms); healthy again after median {:.0} ms (max {:.0} ms); {} trials",
                detect_median.as_secs_f64() * 1000.0,
                detect_max.as_secs_f64() * 1000.0,
                recover_median.as_secs_f64() * 1000.0,
                recover_max.as_secs_f64() * 1000.0,
                trials.len()
            );
        }
        println!(
            "the other edge: {} connections, {} failed; stayed healthy: {}",
            seen.connections,
            seen.failed.len(),
            seen.other_stayed_healthy
        );
    });
}
