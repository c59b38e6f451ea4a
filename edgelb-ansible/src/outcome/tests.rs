//! Outcome mapping against results captured from real runs (`testdata/`, written by the
//! shipped callback plugin against a real sshd and HAProxy 2.6) and variations of them.

use edgelb_core::Digest;
use serde_json::json;

use super::*;
use crate::results::RunResults;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn ctx<'a>(node: &'a str, run: &'a RunSummary) -> HostContext<'a> {
    HostContext {
        node,
        user: "root",
        connect_timeout: CONNECT_TIMEOUT,
        run,
    }
}

fn deploy(fixture: &str) -> Result<Applied, DeployError> {
    deploy_host(fixture, "edge-1", &RunSummary::default())
}

fn deploy_host(fixture: &str, host: &str, run: &RunSummary) -> Result<Applied, DeployError> {
    let results = RunResults::parse(fixture);
    deploy_outcome(&ctx(host, run), results.host(host))
}

/// The fixture with the result of `step` changed by `edit`.
fn edit_step(fixture: &str, step: &str, edit: impl Fn(&mut Value)) -> String {
    fixture
        .lines()
        .map(|line| {
            let mut value: Value = serde_json::from_str(line).unwrap();
            if value["step"] == json!(step) {
                edit(&mut value);
            }
            value.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The fixture up to (not including) the first result of `step`: a run killed there.
fn cut_before(fixture: &str, step: &str) -> String {
    fixture
        .lines()
        .take_while(|line| serde_json::from_str::<Value>(line).unwrap()["step"] != json!(step))
        .collect::<Vec<_>>()
        .join("\n")
}

const RELOADED: &str = include_str!("../../testdata/deploy-reloaded.jsonl");
const UNCHANGED: &str = include_str!("../../testdata/deploy-unchanged.jsonl");
const REJECTED: &str = include_str!("../../testdata/deploy-rejected.jsonl");
const ROLLED_BACK: &str = include_str!("../../testdata/deploy-reload-failed-rolled-back.jsonl");

#[test]
fn a_real_first_deploy_is_reloaded_and_a_repeat_is_unchanged() {
    assert_eq!(deploy(RELOADED), Ok(Applied::Reloaded));
    assert_eq!(deploy(UNCHANGED), Ok(Applied::Unchanged));
}

#[test]
fn a_failed_validation_is_config_rejected_with_haproxys_words() {
    let Err(DeployError::ConfigRejected {
        node,
        haproxy_output,
    }) = deploy(REJECTED)
    else {
        panic!("{:?}", deploy(REJECTED));
    };
    assert_eq!(node, "edge-1");
    assert!(
        haproxy_output
            .contains("parsing [/tmp/eadev/haproxy.cfg.edgelb-new:6] : unknown keyword 'bogus_keyword' in 'defaults' section"),
        "{haproxy_output}"
    );
    assert!(!haproxy_output.contains("non-zero return code"));
}

#[test]
fn a_failed_reload_that_was_rolled_back() {
    let Err(DeployError::ReloadFailed {
        message,
        rolled_back,
        ..
    }) = deploy(ROLLED_BACK)
    else {
        panic!("{:?}", deploy(ROLLED_BACK));
    };
    assert!(rolled_back);
    assert!(message.contains("could not start a worker"), "{message}");
}

#[test]
fn a_failed_reload_whose_rollback_failed_or_had_nothing_to_restore() {
    let rollback_failed = edit_step(ROLLED_BACK, "rollback", |v| {
        v["status"] = json!("failed");
        v["result"]["msg"] = json!("no reload showed up in the master's `show proc` within 10.0s");
    });
    let Err(DeployError::ReloadFailed {
        message,
        rolled_back: false,
        ..
    }) = deploy(&rollback_failed)
    else {
        panic!("{:?}", deploy(&rollback_failed));
    };
    assert!(
        message.contains("reloading the previous config failed too: no reload showed up"),
        "{message}"
    );

    let restore_failed = edit_step(ROLLED_BACK, "restore", |v| {
        v["status"] = json!("failed");
        v["result"]["stderr"] = json!("cp: cannot stat 'x': No such file or directory");
        v["result"]["msg"] = json!("non-zero return code");
    });
    let restore_failed = cut_before(&restore_failed, "rollback");
    let Err(DeployError::ReloadFailed {
        message,
        rolled_back: false,
        ..
    }) = deploy(&restore_failed)
    else {
        panic!("{:?}", deploy(&restore_failed));
    };
    assert!(message.contains("restoring the previous config failed too: cp: cannot stat"));

    let nothing_to_restore = edit_step(ROLLED_BACK, "restore", |v| {
        v["status"] = json!("skipped");
    });
    let nothing_to_restore = edit_step(&nothing_to_restore, "rollback", |v| {
        v["status"] = json!("skipped");
    });
    let Err(DeployError::ReloadFailed {
        message,
        rolled_back: false,
        ..
    }) = deploy(&nothing_to_restore)
    else {
        panic!("{:?}", deploy(&nothing_to_restore));
    };
    assert!(message.contains("no previous file to restore"), "{message}");
}

#[test]
fn ssh_refusals_are_typed() {
    let changed = deploy(include_str!("../../testdata/deploy-host-key-changed.jsonl"));
    assert_eq!(
        changed,
        Err(DeployError::HostKeyMismatch {
            node: "edge-1".into(),
            fingerprint: "SHA256:5Ran5XO44CcsFapPshQEibrgK8dr+7y0/qZsb5obDX0".into(),
        })
    );
    assert_eq!(
        deploy(include_str!("../../testdata/deploy-host-key-unknown.jsonl")),
        Err(DeployError::HostKeyUnknown {
            node: "edge-1".into(),
            host: "127.0.0.1".into(),
            port: 22022,
            fingerprint: None,
        })
    );
    let no_user = ssh_failure(
        "edge-1",
        "root",
        "Failed to connect to the host via ssh: No user exists for uid 12345",
        CONNECT_TIMEOUT,
    );
    assert_eq!(no_user.kind(), "step");
    assert!(no_user.to_string().contains("libnss-wrapper"), "{no_user}");
    let unknown = ssh_failure(
        "edge-2",
        "root",
        "No ED25519 host key is known for edge-2.example and you have requested strict checking.",
        CONNECT_TIMEOUT,
    );
    assert_eq!(unknown.kind(), "host-key-unknown");
    assert!(
        unknown
            .to_string()
            .contains("ssh-keyscan -p 22 -t ed25519 edge-2.example"),
        "{unknown}"
    );
    assert_eq!(
        deploy(include_str!("../../testdata/deploy-auth-failed.jsonl")),
        Err(DeployError::Auth {
            node: "edge-1".into(),
            user: "root".into(),
        })
    );
    let timeout = ssh_failure(
        "edge-1",
        "root",
        "ssh: connect to host 192.0.2.1 port 22: Connection timed out",
        CONNECT_TIMEOUT,
    );
    assert!(
        matches!(timeout, DeployError::Timeout { seconds: 10, .. }),
        "{timeout:?}"
    );
}

#[test]
fn one_unreachable_host_does_not_touch_the_others() {
    let two = include_str!("../../testdata/deploy-two-hosts-one-down.jsonl");
    let run = RunSummary::default();
    assert_eq!(deploy_host(two, "edge-1", &run), Ok(Applied::Unchanged));
    assert_eq!(
        deploy_host(two, "edge-2", &run),
        Err(DeployError::Connect {
            node: "edge-2".into(),
            message: "ssh: connect to host 127.0.0.1 port 22999: Connection refused".into(),
        })
    );
}

#[test]
fn a_lost_connection_during_the_swap_says_so() {
    let lost = edit_step(RELOADED, "reload", |v| {
        v["status"] = json!("unreachable");
        v["result"] = json!({"unreachable": true, "msg": "Task failed: Failed to connect to the host via ssh: Connection closed by 127.0.0.1 port 22022"});
    });
    let Err(DeployError::Connect { message, .. }) = deploy(&lost) else {
        panic!("{:?}", deploy(&lost));
    };
    assert!(message.contains("may be the new one"), "{message}");
}

#[test]
fn a_killed_or_crashed_run_leaves_timeouts_or_step_errors() {
    let killed = cut_before(RELOADED, "reload");
    let timed_out = RunSummary {
        timed_out: Some(Duration::from_secs(300)),
        exit: "killed by a signal".into(),
        stderr_tail: String::new(),
    };
    let Err(DeployError::Timeout { seconds, step, .. }) =
        deploy_host(&killed, "edge-1", &timed_out)
    else {
        panic!("not a timeout");
    };
    assert_eq!(seconds, 300);
    assert!(step.contains("killed"), "{step}");

    let crashed = RunSummary {
        timed_out: None,
        exit: "exit status 1".into(),
        stderr_tail: "ERROR! the role 'edgelb_haproxy' was not found".into(),
    };
    let Err(DeployError::Step { message, .. }) = deploy_host("", "edge-1", &crashed) else {
        panic!("not a step error");
    };
    assert!(message.contains("no result for this node"), "{message}");
    assert!(message.contains("exit status 1") && message.contains("was not found"));

    let rollback_cut = cut_before(ROLLED_BACK, "restore");
    let Err(DeployError::ReloadFailed {
        rolled_back: false,
        message,
        ..
    }) = deploy_host(&rollback_cut, "edge-1", &timed_out)
    else {
        panic!("not a reload failure");
    };
    assert!(message.contains("the rollback did not finish"), "{message}");
}

#[test]
fn a_master_socket_that_does_not_answer_changes_nothing() {
    let outcome = deploy(include_str!("../../testdata/deploy-no-master-socket.jsonl"));
    let Err(DeployError::Step { step, message, .. }) = &outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(
        step,
        "reaching haproxy's master socket (nothing was changed)"
    );
    assert!(message.contains("master-worker mode"), "{message}");
    assert!(message.contains("gone.sock"), "{message}");
}

#[test]
fn a_failed_swap_or_upload_is_a_step_error() {
    let swap_failed = edit_step(RELOADED, "reload", |v| {
        v["status"] = json!("failed");
        v["result"] = json!({"failed": true, "stage": "swap", "swapped": false, "sent": false,
            "msg": "keeping /etc/haproxy/haproxy.cfg as /etc/haproxy/haproxy.cfg.edgelb-prev and renaming /etc/haproxy/haproxy.cfg.edgelb-new over it failed: [Errno 30] Read-only file system"});
    });
    let Err(DeployError::Step { step, message, .. }) = deploy(&swap_failed) else {
        panic!("{:?}", deploy(&swap_failed));
    };
    assert!(step.starts_with("keeping the previous config"), "{step}");
    assert!(message.contains("Read-only file system"), "{message}");

    let upload_failed = edit_step(RELOADED, "upload", |v| {
        v["status"] = json!("failed");
        v["result"] =
            json!({"failed": true, "msg": "Destination directory /etc/haproxy does not exist"});
    });
    let upload_failed = cut_before(&upload_failed, "validate");
    let Err(DeployError::Step { step, message, .. }) = deploy(&upload_failed) else {
        panic!("{:?}", deploy(&upload_failed));
    };
    assert_eq!(step, "uploading the new config");
    assert!(message.contains("does not exist"), "{message}");
}

#[test]
fn plans_from_real_check_runs() {
    let run = RunSummary::default();
    let results = RunResults::parse(include_str!("../../testdata/plan-changed.jsonl"));
    let Ok(PlannedChange::Change { diff }) =
        plan_outcome(&ctx("edge-1", &run), results.host("edge-1"))
    else {
        panic!("no change planned");
    };
    assert!(
        diff.starts_with("--- live /tmp/eadev/haproxy.cfg\n+++ rendered\n"),
        "{diff}"
    );
    assert!(
        diff.contains("\n-    bind 127.0.0.1:28080\n+    bind 192.0.2.1:28080\n"),
        "{diff}"
    );

    let results = RunResults::parse(include_str!("../../testdata/plan-unchanged.jsonl"));
    assert_eq!(
        plan_outcome(&ctx("edge-1", &run), results.host("edge-1")),
        Ok(PlannedChange::Unchanged)
    );

    let results = RunResults::parse(include_str!("../../testdata/deploy-host-key-changed.jsonl"));
    assert!(matches!(
        plan_outcome(&ctx("edge-1", &run), results.host("edge-1")),
        Err(DeployError::HostKeyMismatch { .. })
    ));
}

/// The digest of the live file a read-back run returned, as the deployer computes it.
fn digest_outcome(
    ctx: &HostContext<'_>,
    results: &[TaskResult],
) -> Result<Option<Digest>, DeployError> {
    Ok(live_file_outcome(ctx, results)?
        .as_deref()
        .and_then(edgelb_core::live_digest_of))
}

#[test]
fn live_digests_from_a_real_read_back() {
    let run = RunSummary::default();
    let fixture = include_str!("../../testdata/live-digest.jsonl");
    let results = RunResults::parse(fixture);
    let digest = digest_outcome(&ctx("edge-1", &run), results.host("edge-1")).unwrap();
    assert_eq!(
        digest.map(|d| d.to_string()).as_deref(),
        Some("699241d843e3d48deed59eb23e891b6fdb211ae5ae1eb01f2051088cfe51ac00")
    );

    let missing = edit_step(fixture, "digest_stat", |v| {
        v["result"]["stat"] = json!({"exists": false});
    });
    let missing = cut_before(&missing, "digest_read");
    let results = RunResults::parse(&missing);
    assert_eq!(
        digest_outcome(&ctx("edge-1", &run), results.host("edge-1")),
        Ok(None)
    );

    // A hand-edited body: the digest line no longer matches, so the live digest is the
    // whole file's and never equals a rendered config's.
    let edited = edit_step(fixture, "digest_read", |v| {
        let text = "# edgelb-digest: sha256:699241d843e3d48deed59eb23e891b6fdb211ae5ae1eb01f2051088cfe51ac00\nglobal\n    maxconn 1\n";
        v["result"]["content"] = json!(data_encoding::BASE64.encode(text.as_bytes()));
    });
    let results = RunResults::parse(&edited);
    let digest = digest_outcome(&ctx("edge-1", &run), results.host("edge-1"))
        .unwrap()
        .unwrap();
    assert_ne!(
        digest.to_string(),
        "699241d843e3d48deed59eb23e891b6fdb211ae5ae1eb01f2051088cfe51ac00"
    );
}
