//! HAProxy's master CLI (`-S <socket>`): `show proc`, read and parsed, and reload confirmation.
//!
//! A `reload` sent to the master socket answers nothing and reports success even when the new
//! config fails; the outcome only shows in `show proc`: the master's reload counter moves and
//! its `failed` counter moves too when the new worker could not start.

use edgelb_core::DeployError;

use crate::edge_host::EdgeHost;
use crate::error::step_detail;
use crate::layout::HaproxyLayout;

/// Reads the master CLI's `show proc` on `host`.
pub(crate) async fn show_proc(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
) -> Result<MasterProcs, DeployError> {
    let text = host
        .socket_command(&layout.master_socket, "show proc")
        .await
        .map_err(|e| match e {
            // The socket itself failed: say which one and what to check.
            DeployError::Step { .. } => DeployError::Step {
                node: host.node().to_owned(),
                step: format!("reaching haproxy's master socket {}", layout.master_socket),
                message: format!(
                    "{}; is haproxy running in master-worker mode with -S {}?",
                    step_detail(&e),
                    layout.master_socket
                ),
            },
            // The host was unreachable, timed out or refused us: keep that typed outcome.
            other => other,
        })?;
    MasterProcs::parse(host.node(), &text)
}

/// The parts of `show proc` that tell whether a reload took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterProcs {
    /// The master's PID.
    pub master_pid: u32,
    /// Reloads since the master started.
    pub reloads: u32,
    /// Failed reloads since the master started.
    pub failed_reloads: u32,
    /// Current workers: (PID, reloads since it was started). The newest has 0.
    pub workers: Vec<(u32, u32)>,
    /// Workers of earlier generations still finishing their connections.
    pub old_workers: Vec<u32>,
}

impl MasterProcs {
    /// Parses the answer to `show proc`. `node` names the host in errors.
    ///
    /// ```
    /// use edgelb_haproxy::MasterProcs;
    /// let text = [
    ///     "#<PID>  <type>  <reloads>  <uptime>  <version>",
    ///     "10  master  2 [failed: 1]  0d00h00m01s  2.6.12",
    ///     "# workers",
    ///     "12  worker  0  0d00h00m01s  2.6.12",
    ///     "# old workers",
    ///     "11  worker  1  0d00h00m09s  2.6.12",
    ///     "# programs",
    /// ]
    /// .join("\n");
    /// let procs = MasterProcs::parse("edge-1", &text)?;
    /// assert_eq!((procs.reloads, procs.failed_reloads), (2, 1));
    /// assert_eq!(procs.workers, vec![(12, 0)]);
    /// assert_eq!(procs.old_workers, vec![11]);
    /// # Ok::<(), edgelb_core::DeployError>(())
    /// ```
    pub fn parse(node: &str, text: &str) -> Result<Self, DeployError> {
        let bad = |why: &str| DeployError::Step {
            node: node.to_owned(),
            step: "reading the master CLI's `show proc`".into(),
            message: format!(
                "{why}; got: {:?}",
                text.chars().take(300).collect::<String>()
            ),
        };
        #[derive(PartialEq)]
        enum Section {
            Head,
            Workers,
            OldWorkers,
            Other,
        }
        let mut section = Section::Head;
        let mut master = None;
        let mut workers = Vec::new();
        let mut old_workers = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(comment) = line.strip_prefix('#') {
                section = match comment.trim() {
                    "workers" => Section::Workers,
                    "old workers" => Section::OldWorkers,
                    c if c.starts_with("<PID>") => Section::Head,
                    _ => Section::Other,
                };
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let pid = fields.first().and_then(|p| p.parse::<u32>().ok());
            let reloads = fields.get(2).and_then(|r| r.parse::<u32>().ok());
            match (&section, fields.get(1).copied(), pid, reloads) {
                (Section::Head, Some("master"), Some(pid), Some(reloads)) => {
                    let failed = line
                        .split_once("[failed:")
                        .and_then(|(_, rest)| rest.split(']').next())
                        .and_then(|n| n.trim().parse::<u32>().ok())
                        .unwrap_or(0);
                    master = Some((pid, reloads, failed));
                }
                (Section::Workers, Some("worker"), Some(pid), Some(reloads)) => {
                    workers.push((pid, reloads))
                }
                (Section::OldWorkers, Some("worker"), Some(pid), _) => old_workers.push(pid),
                _ => {}
            }
        }
        let (master_pid, reloads, failed_reloads) = master.ok_or_else(|| bad("no master line"))?;
        Ok(Self {
            master_pid,
            reloads,
            failed_reloads,
            workers,
            old_workers,
        })
    }

    /// Whether a reload happened since `before` and succeeded: the reload counter moved, the
    /// failure counter did not grow, and a fresh worker (0 reloads old) serves. (HAProxy 2.6
    /// resets the failure counter to 0 on a successful reload, so "did not grow" it is.)
    pub fn reload_succeeded_since(&self, before: &MasterProcs) -> Option<bool> {
        if self.master_pid != before.master_pid {
            // A restarted master: the counters started over; a fresh worker means it serves.
            return Some(self.workers.iter().any(|(_, r)| *r == 0));
        }
        if self.reloads == before.reloads {
            return None; // not yet
        }
        Some(
            self.failed_reloads <= before.failed_reloads
                && self.workers.iter().any(|(_, r)| *r == 0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL_2_6_OK: &str = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n5433            master          1 [failed: 0]   0d00h00m01s     2.6.12-1+deb12u4\n# workers\n5444            worker          0               0d00h00m01s     2.6.12-1+deb12u4\n# programs\n\n";
    const REAL_2_6_FAILED: &str = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n5433            master          2 [failed: 1]   0d00h00m01s     2.6.12-1+deb12u4\n# workers\n5444            worker          1               0d00h00m01s     2.6.12-1+deb12u4\n# programs\n\n";

    #[test]
    fn a_failed_reload_is_seen_as_failed() {
        let ok = MasterProcs::parse("e", REAL_2_6_OK).unwrap();
        let failed = MasterProcs::parse("e", REAL_2_6_FAILED).unwrap();
        assert_eq!(failed.reload_succeeded_since(&ok), Some(false));
        assert_eq!(ok.reload_succeeded_since(&ok), None);
    }

    #[test]
    fn a_good_reload_is_seen_as_good() {
        let before =
            MasterProcs::parse("e", &REAL_2_6_OK.replace("1 [failed: 0]", "0 [failed: 0]"))
                .unwrap();
        let after = MasterProcs::parse("e", REAL_2_6_OK).unwrap();
        assert_eq!(after.reload_succeeded_since(&before), Some(true));
    }

    #[test]
    fn a_good_reload_after_a_failed_one_resets_the_failure_count() {
        let failed = MasterProcs::parse("e", REAL_2_6_FAILED).unwrap();
        let after = MasterProcs::parse(
            "e",
            &REAL_2_6_OK
                .replace("1 [failed: 0]", "3 [failed: 0]")
                .replace("5444", "5450"),
        )
        .unwrap();
        assert_eq!(after.reload_succeeded_since(&failed), Some(true));
    }

    #[test]
    fn garbage_is_an_error_naming_the_node() {
        let err = MasterProcs::parse("edge-7", "Unknown command.\n").unwrap_err();
        assert!(err.to_string().contains("edge-7"), "{err}");
    }
}
