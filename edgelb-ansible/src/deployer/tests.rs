//! The deployer end to end with a stand-in `ansible-playbook` (a shell script that records
//! its arguments, inventory and configs, and replays results captured from real runs), so
//! everything but Ansible itself is exercised without ansible-core installed.

use std::os::unix::fs::PermissionsExt;

use edgelb_core::{Applied, RenderedConfig};
use serde_json::Value;

use super::*;
use crate::plan::PlannedChange;

const PIN: &str = "[127.0.0.1]:22022 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHmCZmOO7eh5G3xHbBRlFUK6kH2XnZbC6yq4n6+7a2kO";

/// A fake `ansible-playbook` writing what it saw into `out/` and `results` (a fixture) to
/// the callback's results file, then running `tail` (shell) and exiting with `exit`.
struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new(results: &str, tail: &str, exit: i32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(dir.path().join("results.jsonl"), results).unwrap();
        let script = format!(
            "#!/bin/sh\n\
             out={out}\n\
             echo \"$@\" > $out/args\n\
             cp \"$2\" $out/inventory.json\n\
             cp -r \"$(dirname \"$2\")/configs\" $out/ 2>/dev/null\n\
             echo \"ANSIBLE_CONFIG=$ANSIBLE_CONFIG\" > $out/env\n\
             cat {results} >> \"$EDGELB_ANSIBLE_RESULTS\"\n\
             {tail}\n\
             exit {exit}\n",
            out = out.display(),
            results = dir.path().join("results.jsonl").display(),
        );
        let program = dir.path().join("ansible-playbook");
        std::fs::write(&program, script).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self { dir }
    }

    fn deployer(&self) -> AnsibleDeployer {
        self.deployer_with(AnsibleDeployerConfig::default())
    }

    fn deployer_with(&self, config: AnsibleDeployerConfig) -> AnsibleDeployer {
        AnsibleDeployer::new(AnsibleDeployerConfig {
            ansible_playbook: Some(self.dir.path().join("ansible-playbook")),
            known_hosts: vec![PIN.into()],
            ..config
        })
        .unwrap()
    }

    fn seen(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("out").join(file)).unwrap_or_default()
    }
}

fn node_config(name: &str, port: u16, body: &str) -> NodeConfig {
    let mut ssh = SshTarget::new("127.0.0.1");
    ssh.port = port;
    NodeConfig {
        node: EdgeNode::new(name).with_ssh(ssh),
        config: RenderedConfig::from_body(body.to_owned()),
    }
}

#[tokio::test]
async fn one_run_for_the_whole_batch_and_one_outcome_per_node() {
    let fake = Fake::new(
        include_str!("../../testdata/deploy-two-hosts-one-down.jsonl"),
        "",
        4,
    );
    let deployer = fake.deployer();
    let batch = [
        node_config("edge-1", 22022, "global\n"),
        node_config("edge-2", 22999, "global\n    maxconn 10\n"),
    ];
    let outcomes = deployer.deploy(&batch).await;
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0], NodeOutcome::ok("edge-1", Applied::Unchanged));
    assert!(
        matches!(&outcomes[1].result, Err(DeployError::Connect { node, .. }) if node == "edge-2"),
        "{outcomes:?}"
    );

    let args = fake.seen("args");
    assert!(args.starts_with("-i "), "{args}");
    assert!(args.contains(" --forks 2 "), "{args}");
    assert!(args.trim_end().ends_with("/ansible/deploy.yml"), "{args}");
    assert!(!args.contains("--check"), "{args}");
    assert_eq!(
        fake.seen("env").trim(),
        format!(
            "ANSIBLE_CONFIG={}/ansible.cfg",
            deployer.work_dir().display()
        )
    );

    let inventory: Value = serde_json::from_str(&fake.seen("inventory.json")).unwrap();
    let hosts = &inventory["all"]["children"]["edgelb_edges"]["hosts"];
    assert_eq!(hosts["edge-2"]["ansible_port"], 22999);
    assert_eq!(
        hosts["edge-2"]["edgelb_config_sha256"],
        Digest::of(batch[1].config.text.as_bytes()).to_string()
    );
    assert_eq!(fake.seen("configs/edge-2.cfg"), batch[1].config.text);
}

#[tokio::test]
async fn nodes_that_cannot_run_get_errors_and_the_rest_still_run() {
    let fake = Fake::new(include_str!("../../testdata/deploy-reloaded.jsonl"), "", 0);
    let deployer = fake.deployer();
    let local = NodeConfig {
        node: EdgeNode::new("local"),
        config: RenderedConfig::from_body("global\n".into()),
    };
    let batch = [
        node_config("edge-1", 22022, "global\n"),
        local,
        node_config("edge-1", 22022, "global\n"),
    ];
    let outcomes = deployer.deploy(&batch).await;
    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes[0], NodeOutcome::ok("edge-1", Applied::Reloaded));
    let Err(DeployError::Step { message, .. }) = &outcomes[1].result else {
        panic!("{outcomes:?}");
    };
    assert!(message.contains("no ssh address"), "{message}");
    let Err(DeployError::Step { message, .. }) = &outcomes[2].result else {
        panic!("{outcomes:?}");
    };
    assert!(message.contains("listed twice"), "{message}");
    let inventory: Value = serde_json::from_str(&fake.seen("inventory.json")).unwrap();
    let hosts = inventory["all"]["children"]["edgelb_edges"]["hosts"]
        .as_object()
        .unwrap();
    assert_eq!(hosts.keys().collect::<Vec<_>>(), ["edge-1"]);

    // No runnable node: no run at all.
    let fake = Fake::new("", "", 0);
    let lone = [NodeConfig {
        node: EdgeNode::new("local"),
        config: RenderedConfig::from_body("global\n".into()),
    }];
    let outcomes = fake.deployer().deploy(&lone).await;
    assert!(outcomes[0].result.is_err());
    assert_eq!(fake.seen("args"), "");
}

#[tokio::test]
async fn a_crashed_run_fails_every_node_with_ansibles_words() {
    let fake = Fake::new(
        "",
        "echo 'ERROR! the role edgelb_haproxy was not found' >&2",
        1,
    );
    let outcomes = fake
        .deployer()
        .deploy(&[
            node_config("edge-1", 22, "a\n"),
            node_config("edge-2", 22, "b\n"),
        ])
        .await;
    for outcome in outcomes {
        let Err(DeployError::Step { message, .. }) = &outcome.result else {
            panic!("{outcome:?}");
        };
        assert!(message.contains("exit status 1"), "{message}");
        assert!(
            message.contains("role edgelb_haproxy was not found"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_hung_run_is_killed_at_run_timeout() {
    let fake = Fake::new("", "sleep 30", 0);
    let deployer = fake.deployer_with(AnsibleDeployerConfig {
        run_timeout: Duration::from_millis(500),
        ..Default::default()
    });
    let started = std::time::Instant::now();
    let outcomes = deployer.deploy(&[node_config("edge-1", 22, "a\n")]).await;
    // Loose: only tells a killed run from one that ran the fake's full 30 s.
    assert!(started.elapsed() < Duration::from_secs(25));
    assert!(
        matches!(&outcomes[0].result, Err(DeployError::Timeout { .. })),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn plan_runs_check_and_diff() {
    let fake = Fake::new(include_str!("../../testdata/plan-changed.jsonl"), "", 0);
    let plans = fake
        .deployer()
        .plan(&[node_config("edge-1", 22022, "global\n")])
        .await;
    assert_eq!(plans.len(), 1);
    let Ok(PlannedChange::Change { diff }) = &plans[0].result else {
        panic!("{plans:?}");
    };
    assert!(diff.contains("+    bind 192.0.2.1:28080"), "{diff}");
    assert!(fake.seen("args").contains("--check --diff"));
}

#[tokio::test]
async fn live_digest_runs_its_own_playbook_without_configs() {
    let fake = Fake::new(include_str!("../../testdata/live-digest.jsonl"), "", 0);
    let node = node_config("edge-1", 22022, "x\n").node;
    let digest = fake.deployer().live_digest(&node).await.unwrap();
    assert_eq!(
        digest.map(|d| d.to_string()).as_deref(),
        Some("699241d843e3d48deed59eb23e891b6fdb211ae5ae1eb01f2051088cfe51ac00")
    );
    assert!(
        fake.seen("args")
            .trim_end()
            .ends_with("/ansible/live_digest.yml")
    );
    let inventory: Value = serde_json::from_str(&fake.seen("inventory.json")).unwrap();
    assert!(
        inventory["all"]["children"]["edgelb_edges"]["hosts"]["edge-1"]
            .get("edgelb_config_src")
            .is_none()
    );
}

#[test]
fn construction_refuses_missing_pins_and_a_missing_program() {
    let err = AnsibleDeployer::new(AnsibleDeployerConfig {
        ansible_playbook: Some("/bin/true".into()),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("pin each edge's host key"), "{err}");
    let err = AnsibleDeployer::new(AnsibleDeployerConfig {
        ansible_playbook: Some("/nonexistent/ansible-playbook".into()),
        known_hosts: vec![PIN.into()],
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("pip install ansible-core"), "{err}");
}
