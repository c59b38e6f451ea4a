//! Reading the callback plugin's JSON lines (`callback_plugins/edgelb_json.py`): one object
//! per task result, in the order Ansible reported them.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// The format version the shipped callback plugin writes.
const FORMAT_VERSION: u64 = 1;

/// How a task ended on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    /// It ran (changed or not).
    Ok,
    /// It failed.
    Failed,
    /// Its condition was false.
    Skipped,
    /// The host could not be reached (SSH failed).
    Unreachable,
}

/// One task's result on one host.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct TaskResult {
    /// The task's name.
    #[serde(default)]
    pub task: Option<String>,
    /// The task's `edgelb_step` variable.
    #[serde(default)]
    pub step: Option<String>,
    /// How it ended.
    pub status: Status,
    /// Failed with `ignore_errors`.
    #[serde(default)]
    pub ignored: bool,
    /// The module's result.
    #[serde(default)]
    pub result: Value,
}

impl TaskResult {
    /// Whether this is the result of `step`.
    pub fn is(&self, step: &str) -> bool {
        self.step.as_deref() == Some(step)
    }

    /// A string field of the result.
    pub fn str_field(&self, key: &str) -> Option<&str> {
        self.result.get(key).and_then(Value::as_str)
    }

    /// Whether the module reported a change.
    pub fn changed(&self) -> bool {
        self.result.get("changed").and_then(Value::as_bool) == Some(true)
    }

    /// What went wrong, in the module's words: its `msg`, and the command's or module's
    /// stderr/stdout when it has them.
    pub fn message(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let msg = self.str_field("msg").map(clean_ansible_msg);
        if let Some(msg) = msg.filter(|m| !m.is_empty() && m != "non-zero return code") {
            parts.push(msg);
        }
        for key in ["stderr", "stdout", "module_stderr", "module_stdout"] {
            if let Some(text) = self.str_field(key).map(str::trim).filter(|t| !t.is_empty()) {
                parts.push(text.to_owned());
            }
        }
        if parts.is_empty() {
            if let Some(rc) = self.result.get("rc").and_then(Value::as_i64) {
                parts.push(format!("exit status {rc}"));
            } else {
                parts.push("no message".to_owned());
            }
        }
        parts.join("\n")
    }
}

/// Drops the prefixes Ansible adds to messages and the `\r` of ssh's terminal output.
pub(crate) fn clean_ansible_msg(msg: &str) -> String {
    let mut msg = msg.trim();
    for prefix in ["Task failed: ", "Failed to connect to the host via ssh: "] {
        msg = msg.strip_prefix(prefix).unwrap_or(msg);
    }
    msg.replace('\r', "").trim().to_owned()
}

/// Everything a run reported.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct RunResults {
    /// Task results per host, in order.
    pub hosts: BTreeMap<String, Vec<TaskResult>>,
    /// Whether the final `stats` line was written (the play ran to its end).
    pub finished: bool,
    /// Lines that could not be read (a run killed mid-line, a newer format).
    pub unreadable: Vec<String>,
}

impl RunResults {
    /// Parses the callback plugin's output.
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let parsed: Value = match serde_json::from_str(line) {
                Ok(parsed) => parsed,
                Err(e) => {
                    out.unreadable.push(format!("{e}: {}", truncate(line, 200)));
                    continue;
                }
            };
            let version = parsed.get("v").and_then(Value::as_u64);
            if version != Some(FORMAT_VERSION) {
                out.unreadable.push(format!(
                    "format version {version:?}, expected {FORMAT_VERSION}: {}",
                    truncate(line, 200)
                ));
                continue;
            }
            let host = parsed.get("host").and_then(Value::as_str);
            match (parsed.get("event").and_then(Value::as_str), host) {
                (Some("result"), Some(host)) => match TaskResult::deserialize(&parsed) {
                    Ok(result) => out.hosts.entry(host.to_owned()).or_default().push(result),
                    Err(e) => out.unreadable.push(format!("{e}: {}", truncate(line, 200))),
                },
                (Some("stats"), _) => out.finished = true,
                _ => out.unreadable.push(truncate(line, 200)),
            }
        }
        out
    }

    /// The results of one host (empty when it has none).
    pub fn host(&self, name: &str) -> &[TaskResult] {
        self.hosts.get(name).map_or(&[], Vec::as_slice)
    }
}

/// At most `max` characters of `text`.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_real_run_in_order() {
        let results = RunResults::parse(include_str!("../testdata/deploy-reloaded.jsonl"));
        assert!(results.finished);
        assert!(results.unreadable.is_empty(), "{:?}", results.unreadable);
        let steps: Vec<_> = results
            .host("edge-1")
            .iter()
            .map(|r| (r.step.as_deref(), r.status))
            .collect();
        assert_eq!(
            steps,
            vec![
                (Some("plan"), Status::Skipped),
                (Some("read"), Status::Ok),
                (Some("upload"), Status::Ok),
                (Some("validate"), Status::Ok),
                (Some("reload"), Status::Ok),
            ]
        );
        assert!(results.host("edge-9").is_empty());
    }

    #[test]
    fn a_cut_off_line_and_an_unknown_version_are_reported_not_fatal() {
        let full = include_str!("../testdata/deploy-reloaded.jsonl");
        let first = full.lines().next().unwrap();
        let text = format!(
            "{first}\n{}\n{}\n",
            &first[..40],
            first.replace("\"v\": 1", "\"v\": 9")
        );
        let results = RunResults::parse(&text);
        assert_eq!(results.host("edge-1").len(), 1);
        assert_eq!(results.unreadable.len(), 2);
        assert!(!results.finished);
    }

    #[test]
    fn messages_join_msg_and_command_output() {
        let results = RunResults::parse(include_str!("../testdata/deploy-rejected.jsonl"));
        let validate = results
            .host("edge-1")
            .iter()
            .find(|r| r.is("validate"))
            .unwrap();
        let msg = validate.message();
        assert!(msg.starts_with("[NOTICE]"), "{msg}");
        assert!(msg.contains("unknown keyword 'bogus_keyword'"), "{msg}");
        assert_eq!(
            clean_ansible_msg("Task failed: Failed to connect to the host via ssh: a\r\nb"),
            "a\nb"
        );
        assert_eq!(truncate("héllo", 2), "hé…");
    }
}
