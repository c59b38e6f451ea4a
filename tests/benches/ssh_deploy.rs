//! Time from `deploy()` to confirmed-live on the testbed, native SSH deployer against the
//! OpenSSH command line doing the same steps, in one run. Prints a table; asserts nothing.
//!
//! ```text
//! cargo bench -p edgelb-tests --bench ssh_deploy            # root, haproxy, sshd, ssh, socat
//! EDGELB_BENCH_RUNS=15 cargo bench -p edgelb-tests --bench ssh_deploy
//! ```
//!
//! Every measured deploy is a real change (two snapshots alternate), so each one uploads,
//! validates (`haproxy -c`), swaps, reloads and waits for the master's `show proc` to show the
//! new worker. Rows:
//! * local: the same transaction (`apply_config` with `LocalHost`) run inside an edge;
//! * native cold: a new `SshDeployer` per deploy (TCP, handshake, login, SFTP start included);
//! * native warm: one deployer whose sessions stay open across deploys (SFTP and exec file
//!   transfer);
//! * OpenSSH one-shot: one `ssh` per edge running a script that does the same steps
//!   (config on stdin, `haproxy -c`, cp, mv, `reload` and `show proc` through socat);
//! * OpenSSH multiplexed: the same script over an already-open ControlMaster connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgelb_core::{Applied, Deployer, NodeConfig, RenderedConfig, Renderer, Snapshot};
use edgelb_haproxy::SshDeployer;
use edgelb_haproxy::ssh::FileTransfer;
use edgelb_tests::testbed::scenario::{renderer, web_snapshot};
use edgelb_tests::testbed::{Testbed, TestbedConfig, prereq};
use edgelb_tests::testbed_tools;

/// The steps one-shot OpenSSH runs on an edge: the config arrives on stdin.
const OPENSSH_SCRIPT: &str = r#"set -e
cfg=/etc/haproxy/haproxy.cfg
sock=/run/haproxy/master.sock
master() { echo 'show proc' | socat stdio "$sock" 2>/dev/null | awk '$2 == "master" { print $3, $5 }'; }
cat > "$cfg.edgelb-new"
haproxy -c -q -f "$cfg.edgelb-new"
before=$(master)
cp "$cfg" "$cfg.edgelb-prev"
mv "$cfg.edgelb-new" "$cfg"
echo reload | socat stdio "$sock" > /dev/null
i=0
# The master re-executes itself on reload: its socket refuses connections for a moment.
while now=$(master); [ -z "$now" ] || [ "$now" = "$before" ]; do
  i=$((i + 1)); [ "$i" -gt 500 ] && { echo 'reload not seen' >&2; exit 9; }
  sleep 0.02
done
[ "${now#* }" = "${before#* }" ] || { echo "reload failed: $now" >&2; exit 8; }
"#;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks harness-less benches to list tests
    }
    let missing = prereq::missing();
    if !missing.is_empty() {
        println!("ssh_deploy bench skipped: missing {}", missing.join("; "));
        return;
    }
    let runs: usize = std::env::var("EDGELB_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(9);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tb = Testbed::start(
        TestbedConfig {
            edges: 3,
            backends: 2,
        },
        testbed_tools!(),
    )
    .unwrap();
    let snapshots = [
        web_snapshot(&[&tb.cluster.backends[0]]),
        web_snapshot(&[&tb.cluster.backends[1]]),
    ];
    let mut flip = Flip::new(&tb, &snapshots);
    let mut table: Vec<(String, Option<f64>, Option<f64>)> = Vec::new();

    // Local: the same transaction inside edge1, LocalHost, no SSH.
    let local = median(
        (0..runs)
            .map(|_| {
                let cfg = flip.next_for(0);
                let file = tb.dir.join("bench-local.cfg");
                std::fs::write(&file, &cfg.text).unwrap();
                let out = tb.edges[0]
                    .command(&tb.tools.tb_client)
                    .args(["local-apply", &file.to_string_lossy(), "edge1"])
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(text.contains("outcome=reloaded"), "local apply: {text}");
                text.split_whitespace()
                    .find_map(|f| f.strip_prefix("ms="))
                    .unwrap()
                    .parse::<f64>()
                    .unwrap()
            })
            .collect(),
    );
    table.push((
        "local on an edge (same steps, LocalHost)".into(),
        Some(local),
        None,
    ));

    // Native, cold: a fresh deployer (new sessions) for every deploy.
    let cold = |edges: usize, flip: &mut Flip<'_>| {
        median(
            (0..runs)
                .map(|_| {
                    let deployer = SshDeployer::new(tb.deployer_config()).unwrap();
                    let batch = flip.batch(edges);
                    let ms = rt.block_on(timed_deploy(&deployer, &batch));
                    rt.block_on(deployer.disconnect_all());
                    ms
                })
                .collect(),
        )
    };
    let cold1 = cold(1, &mut flip);
    let cold3 = cold(3, &mut flip);
    table.push((
        "native SSH, cold (new sessions)".into(),
        Some(cold1),
        Some(cold3),
    ));

    // Native, warm: sessions (and the SFTP channel) stay open between deploys.
    let warm = |transfer: FileTransfer, flip: &mut Flip<'_>| {
        let mut cfg = tb.deployer_config();
        cfg.options.file_transfer = transfer;
        let deployer = SshDeployer::new(cfg).unwrap();
        rt.block_on(timed_deploy(&deployer, &flip.batch(3))); // opens the sessions
        let one = median(
            (0..runs)
                .map(|_| rt.block_on(timed_deploy(&deployer, &flip.batch(1))))
                .collect(),
        );
        let three = median(
            (0..runs)
                .map(|_| rt.block_on(timed_deploy(&deployer, &flip.batch(3))))
                .collect(),
        );
        rt.block_on(deployer.disconnect_all());
        (one, three)
    };
    let (warm1, warm3) = warm(FileTransfer::Sftp, &mut flip);
    table.push((
        "native SSH, warm (open sessions, SFTP)".into(),
        Some(warm1),
        Some(warm3),
    ));
    let (exec1, exec3) = warm(FileTransfer::Exec, &mut flip);
    table.push((
        "native SSH, warm (open sessions, cat over exec)".into(),
        Some(exec1),
        Some(exec3),
    ));

    // OpenSSH.
    let known_hosts = tb.dir.join("bench_known_hosts");
    let lines: String = tb
        .edges
        .iter()
        .map(|e| format!("{}\n", e.known_hosts_line()))
        .collect();
    std::fs::write(&known_hosts, lines).unwrap();
    let ssh = OpenSsh {
        key: tb.key.private.to_string_lossy().into_owned(),
        known_hosts: known_hosts.to_string_lossy().into_owned(),
        control_dir: tb.dir.clone(),
    };
    let has_socat = Command::new("sh")
        .args(["-c", "command -v socat"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let (mut oneshot1, mut oneshot3, mut mux1, mut mux3) = (None, None, None, None);
    if has_socat {
        let oneshot = |edges: usize, flip: &mut Flip<'_>, control: bool| {
            median(
                (0..runs)
                    .map(|_| {
                        let batch = flip.batch(edges);
                        let started = Instant::now();
                        let children: Vec<_> = batch
                            .iter()
                            .enumerate()
                            .map(|(i, c)| {
                                ssh.spawn(&tb.edges[i].ip.to_string(), control, &c.config.text)
                            })
                            .collect();
                        for (i, child) in children.into_iter().enumerate() {
                            let out = child.wait_with_output().unwrap();
                            assert!(
                                out.status.success(),
                                "ssh to edge{}: {}",
                                i + 1,
                                String::from_utf8_lossy(&out.stderr)
                            );
                        }
                        started.elapsed().as_secs_f64() * 1000.0
                    })
                    .collect(),
            )
        };
        oneshot1 = Some(oneshot(1, &mut flip, false));
        oneshot3 = Some(oneshot(3, &mut flip, false));
        for edge in &tb.edges {
            ssh.start_master(&edge.ip.to_string());
        }
        mux1 = Some(oneshot(1, &mut flip, true));
        mux3 = Some(oneshot(3, &mut flip, true));
        for edge in &tb.edges {
            ssh.stop_master(&edge.ip.to_string());
        }
    } else {
        println!("socat is not installed: the OpenSSH rows are skipped (apt-get install -y socat)");
    }
    table.push((
        "OpenSSH one-shot (one ssh per edge)".into(),
        oneshot1,
        oneshot3,
    ));
    table.push((
        "OpenSSH multiplexed (open ControlMaster)".into(),
        mux1,
        mux3,
    ));

    println!();
    println!(
        "deploy() → confirmed live, median of {runs} runs, ms (testbed {}, HAProxy in master-worker mode)",
        tb.id()
    );
    println!("{:<50} {:>10} {:>10}", "path", "1 edge", "3 edges");
    for (name, one, three) in &table {
        let cell = |v: &Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
        println!("{name:<50} {:>10} {:>10}", cell(one), cell(three));
    }
    println!();
    println!("ratios:");
    println!(
        "  native warm, 3 edges / local on one edge   = {:.2}",
        warm3 / local
    );
    println!(
        "  native warm, 1 edge  / local on one edge   = {:.2}",
        warm1 / local
    );
    if let (Some(o1), Some(o3)) = (oneshot1, oneshot3) {
        println!(
            "  OpenSSH one-shot / native warm, 1 edge     = {:.2}",
            o1 / warm1
        );
        println!(
            "  OpenSSH one-shot / native warm, 3 edges    = {:.2}",
            o3 / warm3
        );
        println!(
            "  OpenSSH one-shot / native cold, 3 edges    = {:.2}",
            o3 / cold3
        );
    }
    if let (Some(m1), Some(m3)) = (mux1, mux3) {
        println!(
            "  OpenSSH multiplexed / native warm, 1 edge  = {:.2}",
            m1 / warm1
        );
        println!(
            "  OpenSSH multiplexed / native warm, 3 edges = {:.2}",
            m3 / warm3
        );
    }
    println!(
        "  cat-over-exec / SFTP, warm 3 edges         = {:.2}",
        exec3 / warm3
    );
    drop(tb);
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

async fn timed_deploy(deployer: &SshDeployer, batch: &[NodeConfig]) -> f64 {
    let started = Instant::now();
    let outcomes = deployer.deploy(batch).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    for o in outcomes {
        assert_eq!(o.result, Ok(Applied::Reloaded), "{}", o.node);
    }
    ms
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct OpenSsh {
    key: String,
    known_hosts: String,
    control_dir: std::path::PathBuf,
}

impl OpenSsh {
    fn base(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args([
            "-i",
            &self.key,
            "-o",
            &format!("UserKnownHostsFile={}", self.known_hosts),
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-l",
            "root",
        ]);
        cmd
    }

    fn control_path(&self, host: &str) -> String {
        format!("ControlPath={}", self.control(host).display())
    }

    fn control(&self, host: &str) -> std::path::PathBuf {
        self.control_dir.join(format!("cm-{host}"))
    }

    fn spawn(&self, host: &str, control: bool, config: &str) -> std::process::Child {
        let mut cmd = self.base();
        if control {
            cmd.args(["-o", "ControlMaster=no", "-o", &self.control_path(host)]);
        } else {
            cmd.args(["-o", "ControlPath=none"]);
        }
        let mut child = cmd
            .arg(host)
            .arg(OPENSSH_SCRIPT)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(config.as_bytes())
            .unwrap();
        child
    }

    fn start_master(&self, host: &str) {
        let status = self
            .base()
            .args(["-o", &self.control_path(host), "-o", "ControlMaster=yes"])
            .args(["-o", "ControlPersist=yes", "-N", "-f", host])
            .status()
            .unwrap();
        assert!(status.success(), "ssh ControlMaster to {host}");
        let path = self.control(host);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !Path::new(&path).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop_master(&self, host: &str) {
        let _ = self
            .base()
            .args(["-o", &self.control_path(host), "-O", "exit", host])
            .stderr(Stdio::null())
            .status();
    }
}
