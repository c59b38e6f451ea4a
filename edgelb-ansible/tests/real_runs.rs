//! Real `ansible-playbook` runs of the shipped playbook against real sshd and HAProxy on
//! loopback (see `support`). Skipped without root, sshd, haproxy or ansible-core; failed
//! instead when `CI` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly on a failed step

mod support;

use std::time::{Duration, Instant};

use edgelb_ansible::{AnsibleDeployer, AnsibleDeployerConfig, PlannedChange};
use edgelb_core::{Applied, DeployError, Deployer, NodeConfig, NodeOutcome};
use support::{EDGE_DIR, Edge, Tools, free_port, keygen, tools_or_skip};

fn one(edge: &Edge, name: &str, config: edgelb_core::RenderedConfig) -> Vec<NodeConfig> {
    vec![NodeConfig {
        node: edge.node(name),
        config,
    }]
}

async fn deploy_one(
    deployer: &AnsibleDeployer,
    edge: &Edge,
    config: edgelb_core::RenderedConfig,
) -> Result<Applied, DeployError> {
    let mut outcomes = deployer.deploy(&one(edge, "edge-1", config)).await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    outcomes.remove(0).result
}

#[tokio::test]
async fn first_deploy_reloads_the_same_config_is_unchanged_and_drift_is_repaired() {
    let Some(tools) = tools_or_skip("first_deploy_reloads") else {
        return;
    };
    let edge = Edge::start();
    let deployer = AnsibleDeployer::new(edge.deployer_config(&tools)).unwrap();
    let node = edge.node("edge-1");
    let a = edge.config("A");
    let bootstrap = edge.live();

    assert_eq!(deployer.live_digest(&node).await, Ok(None));
    let before = edge.show_proc();
    assert_eq!(
        deploy_one(&deployer, &edge, a.clone()).await,
        Ok(Applied::Reloaded)
    );
    assert_eq!(edge.live(), a.text);
    assert_eq!(edge.http_body(), "A");
    assert_eq!(edge.show_proc().reloads, before.reloads + 1);
    assert_eq!(
        std::fs::read_to_string(edge.dir.path().join("haproxy.cfg.edgelb-prev")).unwrap(),
        bootstrap
    );
    assert!(!edge.has(".edgelb-new"));
    assert_eq!(deployer.live_digest(&node).await, Ok(Some(a.digest)));

    // The same config again: nothing moves.
    let reloads = edge.show_proc().reloads;
    assert_eq!(
        deploy_one(&deployer, &edge, a.clone()).await,
        Ok(Applied::Unchanged)
    );
    assert_eq!(edge.show_proc().reloads, reloads);

    // Someone edits the body by hand and keeps the digest line: seen as drift, repaired.
    std::fs::write(edge.config_path(), format!("{}    # hand edit\n", a.text)).unwrap();
    let drifted = deployer.live_digest(&node).await.unwrap();
    assert!(drifted.is_some_and(|d| d != a.digest), "{drifted:?}");
    assert_eq!(
        deploy_one(&deployer, &edge, a.clone()).await,
        Ok(Applied::Reloaded)
    );
    assert_eq!(edge.live(), a.text);
}

#[tokio::test]
async fn a_rejected_config_or_a_silent_master_changes_nothing() {
    let Some(tools) = tools_or_skip("a_config_haproxy_rejects_changes_nothing") else {
        return;
    };
    let edge = Edge::start();
    let deployer = AnsibleDeployer::new(edge.deployer_config(&tools)).unwrap();
    let a = edge.config("A");
    assert_eq!(
        deploy_one(&deployer, &edge, a.clone()).await,
        Ok(Applied::Reloaded)
    );
    let reloads = edge.show_proc().reloads;

    let outcome = deploy_one(&deployer, &edge, edge.config_rejected()).await;
    let Err(DeployError::ConfigRejected { haproxy_output, .. }) = &outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        haproxy_output.contains("unknown keyword 'bogus_keyword'"),
        "{haproxy_output}"
    );
    assert_eq!(edge.live(), a.text);
    assert!(
        !edge.has(".edgelb-new"),
        "the rejected file was left behind"
    );
    assert_eq!(
        edge.show_proc().reloads,
        reloads,
        "a rejected config reloaded"
    );
    assert_eq!(edge.http_body(), "A");

    // A master socket that does not answer: checked before the swap, so nothing changes.
    let no_master = AnsibleDeployer::new(AnsibleDeployerConfig {
        master_socket: format!("{EDGE_DIR}/no-such.sock"),
        ..edge.deployer_config(&tools)
    })
    .unwrap();
    let outcome = deploy_one(&no_master, &edge, edge.config("B")).await;
    let Err(DeployError::Step { step, .. }) = &outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        step.contains("master socket (nothing was changed)"),
        "{step}"
    );
    assert_eq!(edge.live(), a.text);
    assert!(!edge.has(".edgelb-new"));
    assert_eq!(edge.show_proc().reloads, reloads);
}

#[tokio::test]
async fn a_reload_that_fails_is_rolled_back() {
    let Some(tools) = tools_or_skip("a_reload_that_fails_is_rolled_back") else {
        return;
    };
    let edge = Edge::start();
    let deployer = AnsibleDeployer::new(edge.deployer_config(&tools)).unwrap();
    let a = edge.config("A");
    assert_eq!(
        deploy_one(&deployer, &edge, a.clone()).await,
        Ok(Applied::Reloaded)
    );

    // `haproxy -c` accepts it; the new worker cannot bind 192.0.2.1.
    let outcome = deploy_one(&deployer, &edge, edge.config_that_cannot_bind()).await;
    let Err(DeployError::ReloadFailed {
        message,
        rolled_back,
        ..
    }) = &outcome
    else {
        panic!("{outcome:?}");
    };
    assert!(rolled_back, "{message}");
    assert!(message.contains("could not start a worker"), "{message}");
    assert_eq!(edge.live(), a.text, "the previous config is not back");
    assert_eq!(edge.http_body(), "A");
    let procs = edge.show_proc();
    assert_eq!(
        procs.failed_reloads, 0,
        "the rollback reload did not succeed"
    );
    assert!(procs.workers.iter().any(|(_, r)| *r == 0));
    // And the edge still takes a good config afterwards.
    let b = edge.config("B");
    assert_eq!(deploy_one(&deployer, &edge, b).await, Ok(Applied::Reloaded));
    assert_eq!(edge.http_body(), "B");
}

#[tokio::test]
async fn a_wrong_host_key_is_refused_before_anything_is_written() {
    let Some(tools) = tools_or_skip("a_wrong_host_key_is_refused") else {
        return;
    };
    let edge = Edge::start();
    let other = tempfile::tempdir().unwrap();
    let impostor = keygen(&other.path().join("key"), "someone-else");
    let config = AnsibleDeployerConfig {
        known_hosts: vec![format!("[127.0.0.1]:{} {impostor}", edge.ssh_port)],
        ..edge.deployer_config(&tools)
    };
    let deployer = AnsibleDeployer::new(config).unwrap();
    let bootstrap = edge.live();

    let outcome = deploy_one(&deployer, &edge, edge.config("A")).await;
    assert_eq!(
        outcome,
        Err(DeployError::HostKeyMismatch {
            node: "edge-1".into(),
            fingerprint: edge.host_key_fingerprint(),
        })
    );
    assert_eq!(edge.live(), bootstrap);
    assert!(!edge.has(".edgelb-new") && !edge.has(".edgelb-prev"));
    assert_eq!(edge.show_proc().reloads, 0);
    let plan = deployer.plan(&one(&edge, "edge-1", edge.config("A"))).await;
    assert!(
        matches!(plan[0].result, Err(DeployError::HostKeyMismatch { .. })),
        "{plan:?}"
    );
}

#[tokio::test]
async fn a_client_key_the_edge_does_not_accept_is_auth() {
    let Some(tools) = tools_or_skip("a_client_key_the_edge_does_not_accept_is_auth") else {
        return;
    };
    let edge = Edge::start();
    let other = tempfile::tempdir().unwrap();
    keygen(&other.path().join("key"), "stranger");
    let config = AnsibleDeployerConfig {
        private_key_file: Some(other.path().join("key")),
        ..edge.deployer_config(&tools)
    };
    let deployer = AnsibleDeployer::new(config).unwrap();
    assert_eq!(
        deploy_one(&deployer, &edge, edge.config("A")).await,
        Err(DeployError::Auth {
            node: "edge-1".into(),
            user: "root".into(),
        })
    );
}

#[tokio::test]
async fn one_run_deploys_a_batch_and_an_unreachable_node_is_connect() {
    let Some(tools) = tools_or_skip("one_run_deploys_a_batch") else {
        return;
    };
    let edges = [Edge::start(), Edge::start()];
    edges[1].accept_client_key_of(&edges[0]);
    let mut config = edges[0].deployer_config(&tools);
    config.known_hosts.push(edges[1].known_hosts_line());
    let deployer = AnsibleDeployer::new(config).unwrap();
    let mut dead = edges[0].node("edge-dead");
    if let Some(ssh) = dead.ssh.as_mut() {
        ssh.port = free_port();
    }
    let batch = vec![
        NodeConfig {
            node: edges[0].node("edge-1"),
            config: edges[0].config("A1"),
        },
        NodeConfig {
            node: dead,
            config: edges[0].config("never"),
        },
        NodeConfig {
            node: edges[1].node("edge-2"),
            config: edges[1].config("A2"),
        },
    ];
    let started = Instant::now();
    let outcomes = deployer.deploy(&batch).await;
    let elapsed = started.elapsed();
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    assert_eq!(outcomes[0], NodeOutcome::ok("edge-1", Applied::Reloaded));
    assert_eq!(outcomes[2], NodeOutcome::ok("edge-2", Applied::Reloaded));
    let Err(DeployError::Connect { node, message }) = &outcomes[1].result else {
        panic!("{outcomes:?}");
    };
    assert_eq!(node, "edge-dead");
    assert!(message.contains("Connection refused"), "{message}");
    assert_eq!(edges[0].http_body(), "A1");
    assert_eq!(edges[1].http_body(), "A2");
    println!(
        "ansible deploy, one run: 2 live edges + 1 unreachable: {:.2}s",
        elapsed.as_secs_f64()
    );
}

#[tokio::test]
async fn plan_shows_the_diff_and_changes_nothing() {
    let Some(tools) = tools_or_skip("plan_shows_the_diff_and_changes_nothing") else {
        return;
    };
    let edge = Edge::start();
    let deployer = AnsibleDeployer::new(edge.deployer_config(&tools)).unwrap();
    let bootstrap = edge.live();
    let a = edge.config("A");

    let plans = deployer.plan(&one(&edge, "edge-1", a.clone())).await;
    assert_eq!(plans.len(), 1);
    let Ok(PlannedChange::Change { diff }) = &plans[0].result else {
        panic!("{plans:?}");
    };
    assert!(
        diff.starts_with(&format!("--- live {EDGE_DIR}/haproxy.cfg\n+++ rendered\n")),
        "{diff}"
    );
    assert!(
        diff.contains(&format!("+# edgelb-digest: sha256:{}\n", a.digest)),
        "{diff}"
    );
    assert!(
        diff.contains(
            "-    http-request return status 200 content-type text/plain string \"bootstrap\"\n"
        ),
        "{diff}"
    );
    assert!(
        diff.contains("+    http-request return status 200 content-type text/plain string \"A\"\n"),
        "{diff}"
    );
    assert_eq!(edge.live(), bootstrap);
    assert!(!edge.has(".edgelb-new") && !edge.has(".edgelb-prev"));
    assert_eq!(edge.show_proc().reloads, 0);

    assert_eq!(
        deploy_one(&deployer, &edge, a.clone()).await,
        Ok(Applied::Reloaded)
    );
    let plans = deployer.plan(&one(&edge, "edge-1", a)).await;
    assert_eq!(plans[0].result, Ok(PlannedChange::Unchanged));
}

#[tokio::test]
async fn a_configured_reload_command_is_run_and_confirmed() {
    let Some(tools) = tools_or_skip("a_configured_reload_command_is_run_and_confirmed") else {
        return;
    };
    let edge = Edge::start();
    // SIGUSR2 to the master is HAProxy's own reload signal.
    let config = AnsibleDeployerConfig {
        reload_command: Some(vec![
            "kill".into(),
            "-USR2".into(),
            edge.master_pid().to_string(),
        ]),
        ..edge.deployer_config(&tools)
    };
    let deployer = AnsibleDeployer::new(config).unwrap();
    let before = edge.show_proc().reloads;
    assert_eq!(
        deploy_one(&deployer, &edge, edge.config("A")).await,
        Ok(Applied::Reloaded)
    );
    assert_eq!(edge.show_proc().reloads, before + 1);
    assert_eq!(edge.http_body(), "A");
}

#[tokio::test]
async fn one_host_deploy_time_cold_and_warm() {
    let Some(tools) = tools_or_skip("one_host_deploy_time_cold_and_warm") else {
        return;
    };
    let edge = Edge::start();
    let config = AnsibleDeployerConfig {
        keep_run_dirs: true,
        ..edge.deployer_config(&tools)
    };
    let deployer = AnsibleDeployer::new(config).unwrap();
    let mut timings = Vec::new();
    for (label, word) in [
        ("cold (new SSH connection)", "A"),
        ("warm (ControlPersist)", "B"),
        ("warm again", "C"),
    ] {
        let started = Instant::now();
        assert_eq!(
            deploy_one(&deployer, &edge, edge.config(word)).await,
            Ok(Applied::Reloaded)
        );
        timings.push((label, started.elapsed()));
    }
    let started = Instant::now();
    assert_eq!(
        deploy_one(&deployer, &edge, edge.config("C")).await,
        Ok(Applied::Unchanged)
    );
    timings.push(("unchanged, warm", started.elapsed()));
    deployer.close_connections().await;
    let started = Instant::now();
    assert_eq!(
        deploy_one(&deployer, &edge, edge.config("D")).await,
        Ok(Applied::Reloaded)
    );
    timings.push(("cold again (connections closed)", started.elapsed()));
    let mut runs: Vec<_> = std::fs::read_dir(deployer.work_dir().join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    runs.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    for ((label, elapsed), run) in timings.iter().zip(&runs) {
        println!(
            "ansible deploy, 1 host, {label}: {:.2}s; per task: {}",
            elapsed.as_secs_f64(),
            task_seconds(&run.join("results.jsonl"))
        );
    }
    // Loose bound: only catches a run that hangs on something (e.g. a prompt).
    assert!(timings.iter().all(|(_, t)| *t < Duration::from_secs(60)));
}

/// `step=seconds` for each task that ran, from a run's results.
fn task_seconds(results: &std::path::Path) -> String {
    let text = std::fs::read_to_string(results).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["status"] != "skipped" && v["event"] == "result")
        .map(|v| {
            format!(
                "{}={}",
                v["step"].as_str().unwrap_or("-"),
                v["seconds"].as_f64().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_reload_module_reads_show_proc_as_haproxy_2_6_writes_it() {
    let Some(tools) = tools_or_skip("the_reload_module_reads_show_proc") else {
        return;
    };
    check_module_logic(&tools);
}

/// Runs the shipped module's parser and verdict on `show proc` answers captured from
/// HAProxy 2.6: a good reload, a failed one, and the good reload after it (which resets
/// `[failed: N]` to 0).
fn check_module_logic(tools: &Tools) {
    let module = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/ansible/roles/edgelb_haproxy/library/edgelb_haproxy_master.py"
    );
    let script = r##"
import importlib.util, sys
spec = importlib.util.spec_from_file_location("m", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
head = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n"
def proc(reloads, failed, worker, worker_reloads):
    return (head + "11949           master          %d [failed: %d]   0d00h00m44s     2.6.12-1+deb12u4\n"
            "# workers\n%d           worker          %d               0d00h00m10s     2.6.12-1+deb12u4\n"
            "# programs\n\n") % (reloads, failed, worker, worker_reloads)
start = m.parse_show_proc(proc(1, 0, 12128, 0))
assert start == {"pid": 11949, "reloads": 1, "failed": 0, "fresh_workers": [12128]}, start
failed = m.parse_show_proc(proc(2, 1, 12128, 1))
assert failed["fresh_workers"] == [] and failed["failed"] == 1, failed
assert m.verdict(start, start) is None
assert m.verdict(start, failed) is False
rolled_back = m.parse_show_proc(proc(3, 0, 12326, 0))
assert m.verdict(failed, rolled_back) is True
assert m.verdict(start, m.parse_show_proc(proc(2, 0, 12200, 0))) is True
try:
    m.parse_show_proc("Unknown command.\n")
    raise SystemExit("garbage parsed")
except m.CliError:
    pass
print("ok")
"##;
    let out = std::process::Command::new(tools.python())
        .arg("-c")
        .arg(script)
        .arg(module)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
