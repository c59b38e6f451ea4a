//! From one host's task results to its typed outcome: what the deploy did, what a plan would
//! do, or which digest is live. The tasks are told apart by their `edgelb_step` variable.

use std::time::Duration;

use edgelb_core::{Applied, DeployError};
use serde_json::Value;

use crate::plan::PlannedChange;
use crate::results::{Status, TaskResult, clean_ansible_msg, truncate};

/// The `edgelb_step` of every deploy task whose result decides an outcome.
#[cfg(test)]
pub(crate) const DEPLOY_STEPS: &[&str] = &[
    "read", "upload", "validate", "reload", "cleanup", "restore", "rollback", "report",
];

/// How the `ansible-playbook` run as a whole ended, for hosts with no final result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RunSummary {
    /// Killed after this long.
    pub timed_out: Option<Duration>,
    /// "exit status 2", "killed by a signal", …
    pub exit: String,
    /// The end of ansible-playbook's error output.
    pub stderr_tail: String,
}

impl RunSummary {
    fn describe(&self) -> String {
        let mut text = format!("ansible-playbook ended ({})", self.exit);
        if !self.stderr_tail.is_empty() {
            text.push_str(": ");
            text.push_str(&self.stderr_tail);
        }
        text
    }
}

/// Who a host is, for errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostContext<'a> {
    /// Node name.
    pub node: &'a str,
    /// SSH login user.
    pub user: &'a str,
    /// ssh's connect timeout.
    pub connect_timeout: Duration,
    /// The run.
    pub run: &'a RunSummary,
}

impl HostContext<'_> {
    fn step_error(&self, step: &str, message: impl Into<String>) -> DeployError {
        DeployError::Step {
            node: self.node.to_owned(),
            step: step.to_owned(),
            message: message.into(),
        }
    }

    /// The error for a host the run has no (final) result for.
    fn no_result(&self, doing: &str) -> DeployError {
        match self.run.timed_out {
            Some(limit) => DeployError::Timeout {
                node: self.node.to_owned(),
                step: format!("{doing} (ansible-playbook was killed)"),
                seconds: limit.as_secs(),
            },
            None => self.step_error(
                doing,
                format!("no result for this node; {}", self.run.describe()),
            ),
        }
    }

    /// The error for a host Ansible could not reach: ssh's own words decide the kind.
    pub(crate) fn unreachable(&self, result: &TaskResult) -> DeployError {
        let msg = clean_ansible_msg(result.str_field("msg").unwrap_or_default());
        ssh_failure(self.node, self.user, &msg, self.connect_timeout)
    }
}

/// Classifies ssh's message for an unreachable host.
pub(crate) fn ssh_failure(
    node: &str,
    user: &str,
    message: &str,
    connect_timeout: Duration,
) -> DeployError {
    let node = node.to_owned();
    if !message.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        && let Some((host, port)) = unpinned_host(message)
    {
        return DeployError::HostKeyUnknown {
            node,
            host,
            port,
            fingerprint: message
                .contains("SHA256:")
                .then(|| seen_fingerprint(message)),
        };
    }
    if message.contains("Host key verification failed")
        || message.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || message.contains("host key is known for")
    {
        return DeployError::HostKeyMismatch {
            node,
            fingerprint: seen_fingerprint(message),
        };
    }
    if message.contains("No user exists for uid") {
        return DeployError::Step {
            node,
            step: "starting ssh".into(),
            message: format!(
                "{}; ssh needs a passwd entry for its UID: install libnss-wrapper (the deployer then provides one) or run as a user in /etc/passwd",
                truncate(message, 300)
            ),
        };
    }
    if message.contains("Permission denied (") || message.contains("Too many authentication") {
        return DeployError::Auth {
            node,
            user: user.to_owned(),
        };
    }
    if message.contains("timed out") {
        return DeployError::Timeout {
            node,
            step: format!("connecting ({})", truncate(message, 300)),
            seconds: connect_timeout.as_secs(),
        };
    }
    DeployError::Connect {
        node,
        message: truncate(message, 1000),
    }
}

/// The `[host]:port` of ssh's "No ED25519 host key is known for [10.0.0.1]:2222 and you have
/// requested strict checking." (port 22 when ssh prints the bare host).
fn unpinned_host(message: &str) -> Option<(String, u16)> {
    let (_, rest) = message.split_once("host key is known for ")?;
    let name = rest.split_whitespace().next()?;
    if let Some(bracketed) = name.strip_prefix('[') {
        let (host, port) = bracketed.split_once("]:")?;
        return Some((host.to_owned(), port.parse().ok()?));
    }
    Some((name.to_owned(), 22))
}

/// The fingerprint ssh printed for the key it was shown, or what it said instead.
fn seen_fingerprint(message: &str) -> String {
    if let Some(at) = message.find("SHA256:") {
        let fingerprint: String = message[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '+' | '/' | '='))
            .collect();
        return fingerprint;
    }
    // "No ED25519 host key is known for [10.0.0.1]:2222 and you have requested strict checking."
    if let Some(line) = message
        .lines()
        .find(|l| l.contains("host key is known for"))
    {
        let line = line.split(" and you have requested").next().unwrap_or(line);
        return format!("(not shown by ssh: {})", line.trim().trim_end_matches('.'));
    }
    "(not shown by ssh)".to_owned()
}

/// The first result of `step`.
fn find<'r>(results: &'r [TaskResult], step: &str) -> Option<&'r TaskResult> {
    results.iter().find(|r| r.is(step))
}

/// What a deploy did on one host.
pub(crate) fn deploy_outcome(
    ctx: &HostContext<'_>,
    results: &[TaskResult],
) -> Result<Applied, DeployError> {
    // The first thing that went wrong decides: a lost connection, or a failed task (whose
    // rescue tasks may have lost the connection afterwards).
    let first_bad = results
        .iter()
        .find(|r| r.status == Status::Unreachable || (r.status == Status::Failed && !r.ignored));
    if let Some(bad) = first_bad {
        if bad.status == Status::Failed {
            return Err(failure(ctx, results, bad));
        }
        let error = ctx.unreachable(bad);
        // Lost during the step that swaps and reloads: the new config may be in place.
        let swapped = bad.is("reload");
        return match (error, swapped) {
            (DeployError::Connect { node, message }, true) => Err(DeployError::Connect {
                node,
                message: format!(
                    "{message} (the connection was lost while the new config was being swapped in and reloaded; the live config may be the new one; the next deploy repairs it)"
                ),
            }),
            (error, _) => Err(error),
        };
    }

    if find(results, "reload").is_some_and(|r| r.status == Status::Ok) {
        return Ok(Applied::Reloaded);
    }
    let read_ok = find(results, "read").is_some_and(|r| r.status == Status::Ok);
    let upload_skipped = find(results, "upload").is_some_and(|r| r.status == Status::Skipped);
    if read_ok && upload_skipped {
        return Ok(Applied::Unchanged);
    }
    Err(ctx.no_result("deploying"))
}

/// The error of the first failed task.
fn failure(ctx: &HostContext<'_>, results: &[TaskResult], failed: &TaskResult) -> DeployError {
    let node = ctx.node.to_owned();
    match failed.step.as_deref() {
        Some("validate") => DeployError::ConfigRejected {
            node,
            haproxy_output: failed.message(),
        },
        Some("reload") => {
            // The module says how far it got; before the swap nothing was changed.
            let swapped = failed.result.get("swapped").and_then(Value::as_bool);
            match (swapped, failed.str_field("stage")) {
                (Some(false), Some("preflight")) => ctx.step_error(
                    "reaching haproxy's master socket (nothing was changed)",
                    failed.message(),
                ),
                (Some(false), _) => ctx.step_error(
                    "keeping the previous config and swapping in the new one (nothing was changed)",
                    failed.message(),
                ),
                _ => reload_failure(ctx, results, failed),
            }
        }
        Some("read") => ctx.step_error("reading the live config", failed.message()),
        Some("upload") => ctx.step_error("uploading the new config", failed.message()),
        _ => ctx.step_error(
            failed.task.as_deref().unwrap_or("an Ansible task"),
            failed.message(),
        ),
    }
}

/// A reload that did not take, and what the rescue tasks managed.
fn reload_failure(
    ctx: &HostContext<'_>,
    results: &[TaskResult],
    failed: &TaskResult,
) -> DeployError {
    let message = failed.message();
    let restore = find(results, "restore");
    let rollback = find(results, "rollback");
    let (rolled_back, note) = match (restore.map(|r| r.status), rollback.map(|r| r.status)) {
        (_, Some(Status::Ok)) => (true, String::new()),
        (Some(Status::Unreachable), _) | (_, Some(Status::Unreachable)) => (
            false,
            format!(
                "; the connection was lost before the previous config was restored: {}",
                restore
                    .into_iter()
                    .chain(rollback)
                    .find(|r| r.status == Status::Unreachable)
                    .map(|r| clean_ansible_msg(r.str_field("msg").unwrap_or_default()))
                    .unwrap_or_default()
            ),
        ),
        (Some(Status::Skipped), _) => (false, "; there was no previous file to restore".to_owned()),
        (Some(Status::Failed), _) => (
            false,
            format!(
                "; restoring the previous config failed too: {}",
                restore.map(TaskResult::message).unwrap_or_default()
            ),
        ),
        (_, Some(Status::Failed)) => (
            false,
            format!(
                "; reloading the previous config failed too: {}",
                rollback.map(TaskResult::message).unwrap_or_default()
            ),
        ),
        _ => (
            false,
            format!(
                "; the rollback did not finish: {}",
                ctx.no_result("rolling back")
            ),
        ),
    };
    DeployError::ReloadFailed {
        node: ctx.node.to_owned(),
        message: format!("{message}{note}"),
        rolled_back,
    }
}

/// What a check-mode run says would change on one host.
pub(crate) fn plan_outcome(
    ctx: &HostContext<'_>,
    results: &[TaskResult],
) -> Result<PlannedChange, DeployError> {
    if let Some(lost) = results.iter().find(|r| r.status == Status::Unreachable) {
        return Err(ctx.unreachable(lost));
    }
    let Some(plan) = find(results, "plan") else {
        return Err(ctx.no_result("comparing with the live config"));
    };
    match plan.status {
        Status::Ok if !plan.changed() => Ok(PlannedChange::Unchanged),
        Status::Ok => Ok(PlannedChange::Change {
            diff: unified_diff(&plan.result),
        }),
        _ => Err(ctx.step_error("comparing with the live config", plan.message())),
    }
}

/// A unified diff from the `diff` Ansible's `copy` returns in check mode
/// (`{before, after, before_header, after_header}`, alone or in a list).
fn unified_diff(result: &Value) -> String {
    let entries: Vec<&Value> = match result.get("diff") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    };
    let Some(entry) = entries
        .into_iter()
        .find(|e| e.get("after").is_some_and(Value::is_string))
    else {
        return "(Ansible gave no diff: the files differ but could not be compared as text)"
            .to_owned();
    };
    let text = |key: &str| entry.get(key).and_then(Value::as_str).unwrap_or_default();
    let before_header = format!("live {}", text("before_header"));
    let after_header = "rendered".to_owned();
    similar::TextDiff::from_lines(text("before"), text("after"))
        .unified_diff()
        .context_radius(3)
        .header(before_header.trim(), &after_header)
        .to_string()
}

/// The live config file read back on one host, `None` when there is none.
pub(crate) fn live_file_outcome(
    ctx: &HostContext<'_>,
    results: &[TaskResult],
) -> Result<Option<Vec<u8>>, DeployError> {
    if let Some(lost) = results.iter().find(|r| r.status == Status::Unreachable) {
        return Err(ctx.unreachable(lost));
    }
    if let Some(failed) = results.iter().find(|r| r.status == Status::Failed) {
        return Err(ctx.step_error("reading the live config", failed.message()));
    }
    let Some(stat) = find(results, "digest_stat") else {
        return Err(ctx.no_result("reading the live config"));
    };
    let exists = stat
        .result
        .pointer("/stat/exists")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !exists {
        return Ok(None);
    }
    let Some(content) = find(results, "digest_read").and_then(|r| r.str_field("content")) else {
        return Err(ctx.no_result("reading the live config"));
    };
    let bytes = data_encoding::BASE64
        .decode(content.as_bytes())
        .map_err(|e| {
            ctx.step_error(
                "reading the live config",
                format!("bad base64 from slurp: {e}"),
            )
        })?;
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests;
