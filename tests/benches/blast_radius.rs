//! The blast radius of a failure, at full length: prints figures, asserts nothing.
//!
//! ```text
//! cargo bench -p edgelb-tests --bench blast_radius                 # root, haproxy, sshd, nft
//! EDGELB_BLAST_SECS=60 EDGELB_BLAST_CHANGES=15 cargo bench -p edgelb-tests --bench blast_radius
//! EDGELB_BLAST_ONLY=faulty cargo bench -p edgelb-tests --bench blast_radius   # one scenario
//! ```
//!
//! * taken port: a Service on port 22 (sshd's on every edge) joins while a load loop runs
//!   through 2 edges on the web port for `EDGELB_BLAST_SECS` (default 60); a third of the way
//!   in, web's endpoint changes; two thirds in, the bad Service leaves. Failed connections,
//!   failed reloads, how long web's change took to answer on each edge.
//! * faulty edge: one change a second through 3 edges while edge3's link is cut for
//!   `EDGELB_BLAST_CHANGES` changes (default 15), then loses 30 % of its packets for as many:
//!   how long each change took to run on edge1 and edge2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use edgelb_core::PipelineConfig;
use edgelb_tests::bench_env::{env_usize, listing_only, runtime, testbed_or_skip};
use edgelb_tests::blast_radius::{faulty_edge, median_and_max_ms, taken_port};
use edgelb_tests::testbed::TestbedConfig;
use edgelb_tests::testbed::scenario::fast_pipeline;
use edgelb_tests::testbed_tools;

fn main() {
    if listing_only() {
        return;
    }
    let secs = env_usize("EDGELB_BLAST_SECS", 60) as u64;
    let changes = env_usize("EDGELB_BLAST_CHANGES", 15);
    let only = std::env::var("EDGELB_BLAST_ONLY").unwrap_or_default();
    let run = |scenario: &str| only.is_empty() || only.split(',').any(|s| s == scenario);
    runtime().block_on(async {
        let config = TestbedConfig {
            edges: 2,
            backends: 2,
        };
        let tb = run("taken").then(|| testbed_or_skip("blast_radius", config, testbed_tools!()));
        if let Some(tb) = tb.flatten() {
            let pipeline = PipelineConfig {
                empty_backend_hold: Duration::from_secs(10),
                ..fast_pipeline()
            };
            let seen = taken_port(&tb, secs, pipeline).await;
            let failed: Vec<usize> = seen.failed.iter().map(Vec::len).collect();
            println!(
                "taken port, {secs} s of load: {} connections to the web port through 2 edges, failed per edge {failed:?}; failed reloads per edge {:?}; web's change answered on each edge after {:?}",
                seen.connections, seen.failed_reloads, seen.web_change_live
            );
        }
        let config = TestbedConfig {
            edges: 3,
            backends: 3,
        };
        let tb = run("faulty").then(|| testbed_or_skip("blast_radius", config, testbed_tools!()));
        if let Some(tb) = tb.flatten() {
            let seen = faulty_edge(&tb, changes).await;
            for (node, latencies) in &seen.latencies {
                let (median, max) = median_and_max_ms(latencies);
                let never = latencies.iter().filter(|l| l.is_none()).count();
                println!(
                    "faulty edge: {node} ran {} changes (edge3 cut, then 30 % loss) after median {median:.0} ms, max {max:.0} ms; never: {never}",
                    latencies.len()
                );
            }
            println!(
                "faulty edge: edge3's trouble reported: {}; caught up {:?} after its link healed",
                seen.faulty_reported, seen.faulty_caught_up
            );
        }
    });
}
