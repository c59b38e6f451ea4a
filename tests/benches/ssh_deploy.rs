//! Time from `deploy()` to confirmed-live on the testbed, native SSH deployer against the
//! OpenSSH command line doing the same steps, in one run. Prints a table; asserts nothing.
//!
//! ```text
//! cargo bench -p edgelb-tests --bench ssh_deploy            # root, haproxy, sshd, ssh, socat
//! EDGELB_BENCH_RUNS=15 cargo bench -p edgelb-tests --bench ssh_deploy
//! ```
//!
//! The main table measures the reload path: every deploy is a structural change (the listen
//! port alternates per edge), so each one uploads, validates (`haproxy -c`), swaps, reloads
//! and waits for the master's `show proc` to show the new worker. The paths are measured
//! round-robin (one of each per round), so load from other processes on the machine spreads
//! evenly over them. Rows:
//! * local: the same transaction (`apply_config` with `LocalHost`) run inside the edges;
//! * native cold: a new `SshDeployer` per deploy (TCP, handshake, login, SFTP start included);
//! * native warm: one deployer whose sessions stay open across deploys (SFTP, and `cat` over
//!   exec for comparison);
//! * OpenSSH one-shot: one `ssh` per edge running a script that does the same steps
//!   (config on stdin, `haproxy -c`, cp, mv, `reload` and `show proc` through socat);
//! * OpenSSH multiplexed: the same script over an already-open ControlMaster connection.
//!
//! A second table measures endpoint-only changes (the backend alternates), which
//! `apply_config` applies through the runtime API with no reload (confirmed with `show
//! servers state`), natively over warm sessions and locally.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use edgelb_core::{Applied, Deployer, NodeConfig, RenderedConfig, Renderer, Snapshot};
use edgelb_haproxy::deploy::apply_config;
use edgelb_haproxy::ssh::FileTransfer;
use edgelb_haproxy::{HaproxyLayout, SshDeployer};
use edgelb_tests::bench_env::{env_usize, listing_only, runtime, testbed_or_skip, timed_deploy};
use edgelb_tests::bench_stats::stats;
use edgelb_tests::openssh_baseline::OpenSsh;
use edgelb_tests::testbed::scenario::{renderer, web_snapshot_on};
use edgelb_tests::testbed::{Testbed, TestbedConfig, TimedHost};
use edgelb_tests::testbed_tools;

/// Row names, in print order.
const LOCAL: &str = "local on the edge(s) (same steps, LocalHost)";
const COLD: &str = "native SSH, cold (new sessions)";
const WARM: &str = "native SSH, warm (open sessions, SFTP)";
const WARM_EXEC: &str = "native SSH, warm (open sessions, cat over exec)";
const ONESHOT: &str = "OpenSSH one-shot (one ssh per edge)";
const MUX: &str = "OpenSSH multiplexed (open ControlMaster)";

fn main() {
    if listing_only() {
        return;
    }
    let runs = env_usize("EDGELB_BENCH_RUNS", 9);
    let rt = runtime();
    let Some(tb) = testbed_or_skip(
        "ssh_deploy bench",
        TestbedConfig {
            edges: 3,
            backends: 2,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let (b1, b2) = (&tb.cluster.backends[0], &tb.cluster.backends[1]);
    // Reload path: the listen port alternates. Runtime path: the backend alternates (from
    // b1 on 8080, where the reload phase leaves every edge).
    let snapshots = [web_snapshot_on(8081, &[b1]), web_snapshot_on(8080, &[b1])];
    let endpoint_snapshots = [web_snapshot_on(8080, &[b2]), web_snapshot_on(8080, &[b1])];
    let mut flip = Flip::new(&tb, &snapshots);

    let warm_sftp = SshDeployer::new(tb.deployer_config()).unwrap();
    let warm_exec = {
        let mut cfg = tb.deployer_config();
        cfg.options.file_transfer = FileTransfer::Exec;
        SshDeployer::new(cfg).unwrap()
    };
    // Open the warm sessions (and SFTP channels) before measuring.
    rt.block_on(timed_deploy(
        &warm_sftp,
        &flip.batch(3),
        &[Applied::Reloaded],
    ));
    rt.block_on(timed_deploy(
        &warm_exec,
        &flip.batch(3),
        &[Applied::Reloaded],
    ));
    let timed_host = TimedHost::new(warm_sftp.host(&tb.edges[0].node()).unwrap());

    let ssh = OpenSsh::new(&tb);
    let has_socat = Command::new("sh")
        .args(["-c", "command -v socat"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if has_socat {
        for edge in &tb.edges {
            ssh.start_master(&edge.ip.to_string());
        }
    } else {
        println!("socat is not installed: the OpenSSH rows are skipped (apt-get install -y socat)");
    }

    // (row, edges) → samples in ms.
    let mut samples: BTreeMap<(&str, usize), Vec<f64>> = BTreeMap::new();
    let (mut local_steps, mut ssh_steps) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        for edges in [1, 3] {
            let (ms, steps) = local_apply(&tb, &mut flip, edges, "reloaded");
            samples.entry((LOCAL, edges)).or_default().push(ms);
            if edges == 1 {
                local_steps.push(steps);
            }

            let cold = SshDeployer::new(tb.deployer_config()).unwrap();
            let ms = rt.block_on(timed_deploy(
                &cold,
                &flip.batch(edges),
                &[Applied::Reloaded],
            ));
            rt.block_on(cold.disconnect_all());
            samples.entry((COLD, edges)).or_default().push(ms);

            let ms = rt.block_on(timed_deploy(
                &warm_sftp,
                &flip.batch(edges),
                &[Applied::Reloaded],
            ));
            samples.entry((WARM, edges)).or_default().push(ms);
            let ms = rt.block_on(timed_deploy(
                &warm_exec,
                &flip.batch(edges),
                &[Applied::Reloaded],
            ));
            samples.entry((WARM_EXEC, edges)).or_default().push(ms);

            if has_socat {
                let ms = ssh.deploy(&tb, &flip.batch(edges), false);
                samples.entry((ONESHOT, edges)).or_default().push(ms);
                let ms = ssh.deploy(&tb, &flip.batch(edges), true);
                samples.entry((MUX, edges)).or_default().push(ms);
            }
        }
        // Where the time goes: each host call of one warm deploy to edge1.
        let cfg = flip.next_for(0);
        let applied = rt
            .block_on(apply_config(&timed_host, &HaproxyLayout::default(), &cfg))
            .unwrap();
        assert_eq!(applied, Applied::Reloaded);
        ssh_steps.push(timed_host.take());
    }
    if has_socat {
        for edge in &tb.edges {
            ssh.stop_master(&edge.ip.to_string());
        }
    }

    // Endpoint-only changes: the runtime API, no reload. First every edge gets b1 on 8080
    // (unchanged or reloaded, depending on where the flip above left it).
    let base = web_snapshot_on(8080, &[b1]);
    let base_batch = tb.batch(&renderer(), &base, tb.edges.len());
    for o in rt.block_on(warm_sftp.deploy(&base_batch)) {
        assert!(o.result.is_ok(), "{o:?}");
    }
    let mut endpoints = Flip::new(&tb, &endpoint_snapshots);
    let mut runtime: BTreeMap<(&str, usize), Vec<f64>> = BTreeMap::new();
    for _ in 0..runs {
        for edges in [1, 3] {
            let (ms, _) = local_apply(&tb, &mut endpoints, edges, "runtime-updated");
            runtime.entry((LOCAL, edges)).or_default().push(ms);
            let ms = rt.block_on(timed_deploy(
                &warm_sftp,
                &endpoints.batch(edges),
                &[Applied::RuntimeUpdated],
            ));
            runtime.entry((WARM, edges)).or_default().push(ms);
        }
    }
    rt.block_on(warm_sftp.disconnect_all());
    rt.block_on(warm_exec.disconnect_all());

    let m = |row: &str, edges: usize| samples.get(&(row, edges)).map(|v| stats(v).0);
    println!();
    println!(
        "deploy() → confirmed live, median of {runs} rounds, ms (testbed {}; each path once per round)",
        tb.id()
    );
    println!("{:<50} {:>10} {:>10}", "path", "1 edge", "3 edges");
    for row in [LOCAL, COLD, WARM, WARM_EXEC, ONESHOT, MUX] {
        let cell = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
        println!("{row:<50} {:>10} {:>10}", cell(m(row, 1)), cell(m(row, 3)));
    }
    println!();
    println!("ratios:");
    let ratio = |label: &str, a: Option<f64>, b: Option<f64>| {
        if let (Some(a), Some(b)) = (a, b) {
            println!("  {label:<48} = {:.2}", a / b);
        }
    };
    ratio(
        "native warm, 3 edges / local, 1 edge",
        m(WARM, 3),
        m(LOCAL, 1),
    );
    ratio(
        "native warm, 3 edges / local, 3 edges at once",
        m(WARM, 3),
        m(LOCAL, 3),
    );
    ratio(
        "native warm, 1 edge / local, 1 edge",
        m(WARM, 1),
        m(LOCAL, 1),
    );
    ratio(
        "OpenSSH one-shot / native warm, 1 edge",
        m(ONESHOT, 1),
        m(WARM, 1),
    );
    ratio(
        "OpenSSH one-shot / native warm, 3 edges",
        m(ONESHOT, 3),
        m(WARM, 3),
    );
    ratio(
        "OpenSSH one-shot / native cold, 3 edges",
        m(ONESHOT, 3),
        m(COLD, 3),
    );
    ratio(
        "OpenSSH multiplexed / native warm, 3 edges",
        m(MUX, 3),
        m(WARM, 3),
    );
    ratio(
        "cat over exec / SFTP, warm, 3 edges",
        m(WARM_EXEC, 3),
        m(WARM, 3),
    );
    println!();
    println!("endpoint-only change (runtime API, no reload), median of {runs} rounds, ms:");
    println!("{:<50} {:>10} {:>10}", "path", "1 edge", "3 edges");
    for row in [LOCAL, WARM] {
        let cell = |edges: usize| {
            runtime
                .get(&(row, edges))
                .map_or("-".to_owned(), |v| format!("{:.0}", stats(v).0))
        };
        println!("{row:<50} {:>10} {:>10}", cell(1), cell(3));
    }
    println!();
    println!(
        "where a warm 1-edge reload deploy spends its time (median ms per round; calls per round):"
    );
    println!("{:<28} {:>14} {:>14}", "host call", "local", "over SSH");
    for (step, local_ms, local_n, ssh_ms, ssh_n) in breakdown(&local_steps, &ssh_steps) {
        println!("{step:<28} {local_ms:>9.1} ({local_n}) {ssh_ms:>9.1} ({ssh_n})");
    }
    drop(tb);
}

/// The same transaction run locally inside edges `0..edges` at once (`tb-client
/// local-apply` through nsenter); returns the slowest edge's time and edge1's host calls.
fn local_apply(
    tb: &Testbed,
    flip: &mut Flip<'_>,
    edges: usize,
    expect: &str,
) -> (f64, Vec<(String, f64)>) {
    let children: Vec<_> = (0..edges)
        .map(|i| {
            let cfg = flip.next_for(i);
            let file = tb.dir.join(format!("bench-local-{i}.cfg"));
            std::fs::write(&file, &cfg.text).unwrap();
            tb.edges[i]
                .command(&tb.tools.tb_client)
                .args(["local-apply", &file.to_string_lossy(), &tb.edges[i].name])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut slowest: f64 = 0.0;
    let mut steps = Vec::new();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("outcome={expect}")),
            "local apply: {text}"
        );
        let ms: f64 = text
            .split_whitespace()
            .find_map(|f| f.strip_prefix("ms="))
            .unwrap()
            .parse()
            .unwrap();
        slowest = slowest.max(ms);
        if i == 0 {
            steps = text
                .lines()
                .filter_map(|l| {
                    let (ms, step) = l.strip_prefix("step ")?.split_once(' ')?;
                    Some((step.to_owned(), ms.parse().ok()?))
                })
                .collect();
        }
    }
    (slowest, steps)
}

/// Alternates each edge between two snapshots so every deploy changes its config.
struct Flip<'a> {
    tb: &'a Testbed,
    snapshots: &'a [Snapshot; 2],
    /// Per edge, the snapshot it was last given.
    current: Vec<usize>,
}

impl<'a> Flip<'a> {
    fn new(tb: &'a Testbed, snapshots: &'a [Snapshot; 2]) -> Self {
        Self {
            tb,
            snapshots,
            current: vec![1; tb.edges.len()],
        }
    }

    fn next_for(&mut self, edge: usize) -> RenderedConfig {
        self.current[edge] ^= 1;
        let snapshot = &self.snapshots[self.current[edge]];
        renderer()
            .render(snapshot, &self.tb.edges[edge].node())
            .unwrap()
    }

    /// Configs for edges `0..n`, each different from what that edge runs now.
    fn batch(&mut self, n: usize) -> Vec<NodeConfig> {
        (0..n)
            .map(|i| NodeConfig {
                node: self.tb.edges[i].node(),
                config: self.next_for(i),
            })
            .collect()
    }
}

/// Per call label: median total ms per run and calls per run, local and SSH.
fn breakdown(
    local: &[Vec<(String, f64)>],
    ssh: &[Vec<(String, f64)>],
) -> Vec<(String, f64, usize, f64, usize)> {
    let mut labels: Vec<String> = Vec::new();
    for (label, _) in local.iter().chain(ssh).flatten() {
        if !labels.contains(label) {
            labels.push(label.clone());
        }
    }
    let per_run = |runs: &[Vec<(String, f64)>], label: &str| -> (f64, usize) {
        if runs.is_empty() {
            return (0.0, 0);
        }
        let totals: Vec<f64> = runs
            .iter()
            .map(|r| r.iter().filter(|(l, _)| l == label).map(|(_, ms)| ms).sum())
            .collect();
        let counts: Vec<f64> = runs
            .iter()
            .map(|r| r.iter().filter(|(l, _)| l == label).count() as f64)
            .collect();
        (stats(&totals).0, stats(&counts).0 as usize)
    };
    labels
        .into_iter()
        .map(|label| {
            let (lm, ln) = per_run(local, &label);
            let (sm, sn) = per_run(ssh, &label);
            (label, lm, ln, sm, sn)
        })
        .collect()
}
