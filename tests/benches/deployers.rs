//! Time from `deploy()` to confirmed live on 3 testbed edges, the native SSH deployer against
//! the Ansible deployer, in the same run. Prints median and p95 of each and the ratio;
//! asserts nothing about timings.
//!
//! ```text
//! cargo bench -p edgelb-tests --bench deployers       # root, the testbed's packages, ansible-core
//! EDGELB_BENCH_RUNS=15 cargo bench -p edgelb-tests --bench deployers
//! ```
//!
//! Both deployers get one batch of the 3 edges per `deploy()` and keep their connections
//! between deploys (the native deployer its SSH sessions, Ansible its ControlPersist
//! masters), as in a running controller; both are warmed up first. `deploy()` returns once
//! each edge's reload is confirmed in the master's `show proc` (or, for the native runtime
//! path, `show servers state`), so its duration is the convergence time. Two changes are
//! measured, round-robin (one of each deployer per round, so other load on the machine
//! spreads evenly):
//! * a config change (the listen port alternates): every deployer uploads, validates,
//!   swaps and reloads;
//! * an endpoint-only change (the backend alternates): the native deployer applies it
//!   through the runtime API without a reload, Ansible reloads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use edgelb_ansible::AnsibleDeployer;
use edgelb_core::{Applied, Deployer, NodeConfig, Renderer};
use edgelb_haproxy::SshDeployer;
use edgelb_tests::bench_env::{env_usize, listing_only, runtime, testbed_or_skip, timed_deploy};
use edgelb_tests::bench_stats::stats;
use edgelb_tests::testbed::ansible::find_ansible_playbook;
use edgelb_tests::testbed::scenario::{LISTEN_PORT, renderer, web_snapshot_on};
use edgelb_tests::testbed::{Testbed, TestbedConfig};
use edgelb_tests::testbed_tools;

/// What the edges run now; each change flips one thing.
struct State<'a> {
    tb: &'a Testbed,
    port: u16,
    backend: usize,
}

impl State<'_> {
    /// The batch for the edges after a config change (`structural`) or an endpoint change.
    fn next(&mut self, structural: bool) -> Vec<NodeConfig> {
        if structural {
            self.port = if self.port == LISTEN_PORT {
                LISTEN_PORT + 1
            } else {
                LISTEN_PORT
            };
        } else {
            self.backend = 1 - self.backend;
        }
        let snapshot = web_snapshot_on(self.port, &[&self.tb.cluster.backends[self.backend]]);
        self.tb
            .nodes()
            .into_iter()
            .map(|node| NodeConfig {
                config: renderer().render(&snapshot, &node).unwrap(),
                node,
            })
            .collect()
    }
}

/// One timed `deploy()` of `batch`; every edge must report one of `expected` and run the
/// new file.
async fn timed(
    tb: &Testbed,
    deployer: &dyn Deployer,
    batch: &[NodeConfig],
    expected: &[Applied],
) -> f64 {
    let ms = timed_deploy(deployer, batch, expected).await;
    for (edge, cfg) in tb.edges.iter().zip(batch) {
        assert_eq!(edge.live_config(), cfg.config.text, "{}", edge.name);
    }
    ms
}

fn main() {
    if listing_only() {
        return;
    }
    let Some(ansible_playbook) = find_ansible_playbook() else {
        println!(
            "deployers bench skipped: no ansible-playbook on PATH or in target/venv (pip install ansible-core)"
        );
        return;
    };
    let runs = env_usize("EDGELB_BENCH_RUNS", 7);
    let rt = runtime();
    let Some(tb) = testbed_or_skip(
        "deployers bench",
        TestbedConfig {
            edges: 3,
            backends: 2,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let native = SshDeployer::new(tb.deployer_config()).unwrap();
    let ansible = AnsibleDeployer::new(tb.ansible_deployer_config(ansible_playbook)).unwrap();
    let mut state = State {
        tb: &tb,
        port: LISTEN_PORT,
        backend: 0,
    };
    let reloaded = &[Applied::Reloaded][..];
    let runtime = &[Applied::RuntimeUpdated, Applied::Reloaded][..];

    // Warm-up: sessions and ControlPersist masters open, Python caches on the edges warm.
    rt.block_on(async {
        timed(&tb, &native, &state.next(true), reloaded).await;
        timed(&tb, &ansible, &state.next(true), reloaded).await;
    });

    // (deployer, change) → samples in ms.
    let mut native_reload = Vec::new();
    let mut ansible_reload = Vec::new();
    let mut native_endpoint = Vec::new();
    let mut ansible_endpoint = Vec::new();
    let started = Instant::now();
    rt.block_on(async {
        for _ in 0..runs {
            native_reload.push(timed(&tb, &native, &state.next(true), reloaded).await);
            ansible_reload.push(timed(&tb, &ansible, &state.next(true), reloaded).await);
            native_endpoint.push(timed(&tb, &native, &state.next(false), runtime).await);
            ansible_endpoint.push(timed(&tb, &ansible, &state.next(false), reloaded).await);
        }
    });

    println!(
        "\ndeploy() → confirmed live on 3 edges, {runs} runs each ({:.0} s in all)\n",
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<58} {:>10} {:>10}",
        "deployer, change", "median ms", "p95 ms"
    );
    let row = |what: &str, samples: &[f64]| {
        let (median, p95) = stats(samples);
        println!("{what:<58} {median:>10.0} {p95:>10.0}");
        median
    };
    let nr = row("native SSH, config change (reload)", &native_reload);
    let ar = row("Ansible, config change (reload)", &ansible_reload);
    let ne = row(
        "native SSH, endpoint change (runtime API, no reload)",
        &native_endpoint,
    );
    let ae = row("Ansible, endpoint change (reload)", &ansible_endpoint);
    println!();
    println!("ratio Ansible / native, config change:   {:.1}×", ar / nr);
    println!("ratio Ansible / native, endpoint change: {:.1}×", ae / ne);
    rt.block_on(native.disconnect_all());
}
