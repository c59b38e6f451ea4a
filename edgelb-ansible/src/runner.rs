//! Finding and running `ansible-playbook`: its own process group, a clean `ANSIBLE_*`
//! environment (only our `ansible.cfg` decides), output captured, killed on timeout.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::assets::RESULTS_ENV;
use crate::error::{Error, Result};

/// The program looked up when none is configured.
pub const ANSIBLE_PLAYBOOK: &str = "ansible-playbook";

/// Finds `ansible-playbook`: `configured` as a path when it has a `/`, else that name (or
/// `ansible-playbook`) on `PATH`.
pub fn find_ansible_playbook(configured: Option<&Path>) -> Result<PathBuf> {
    let name = configured.unwrap_or(Path::new(ANSIBLE_PLAYBOOK));
    if name.components().count() > 1 || name.is_absolute() {
        return if is_executable(name) {
            std::path::absolute(name)
                .map_err(|e| Error::io(format!("resolving {}", name.display()), e))
        } else {
            Err(Error::AnsibleNotFound {
                searched: format!("{} is not an executable file", name.display()),
            })
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_absolute() && is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(Error::AnsibleNotFound {
        searched: format!(
            "no executable {} on PATH={}",
            name.display(),
            path.to_string_lossy()
        ),
    })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// One `ansible-playbook` invocation.
#[derive(Debug, Clone)]
pub(crate) struct Invocation<'a> {
    /// The program.
    pub program: &'a Path,
    /// The generated `ansible.cfg`.
    pub ansible_cfg: &'a Path,
    /// The playbook file.
    pub playbook: &'a Path,
    /// The inventory file.
    pub inventory: &'a Path,
    /// Where the callback plugin writes its JSON lines.
    pub results: &'a Path,
    /// The working directory.
    pub cwd: &'a Path,
    /// HOME for the run (writable, private).
    pub home: &'a Path,
    /// `--forks`.
    pub forks: usize,
    /// `--check --diff`.
    pub check: bool,
    /// Kill the run after this long.
    pub timeout: Duration,
}

/// How a run ended.
#[derive(Debug)]
pub(crate) struct Finished {
    /// The exit status, `None` when it was killed on timeout.
    pub status: Option<ExitStatus>,
    /// Standard output (the default callback's human-readable log).
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
}

/// Runs `ansible-playbook` and waits for it, at most `inv.timeout`.
pub(crate) async fn run(inv: &Invocation<'_>) -> Result<Finished> {
    let mut cmd = Command::new(inv.program);
    cmd.arg("-i")
        .arg(inv.inventory)
        .arg("--forks")
        .arg(inv.forks.to_string());
    if inv.check {
        cmd.arg("--check").arg("--diff");
    }
    cmd.arg(inv.playbook);
    // Only our ansible.cfg decides: an inherited ANSIBLE_HOST_KEY_CHECKING=False must not
    // turn host key checking off, nor ANSIBLE_STDOUT_CALLBACK change what we read.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ANSIBLE_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("ANSIBLE_CONFIG", inv.ansible_cfg)
        .env(RESULTS_ENV, inv.results)
        .env("PYTHONUNBUFFERED", "1")
        // A writable home of our own: the process may run as an arbitrary UID on a read-only
        // root filesystem, with HOME unset or `/`.
        .env("HOME", inv.home);
    // Python's getpass falls back to the passwd entry, which an arbitrary UID lacks.
    for var in ["USER", "LOGNAME"] {
        if std::env::var_os(var).is_none_or(|v| v.is_empty()) {
            cmd.env(var, "edgelb");
        }
    }
    if !locale_is_utf8() {
        // ansible-core refuses to start under a non-UTF-8 locale.
        cmd.env("LC_ALL", "C.UTF-8");
    }
    cmd.current_dir(inv.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);

    let started = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("starting {}", inv.program.display()), e))?;
    let pid = child.id();
    match tokio::time::timeout(inv.timeout, child.wait_with_output()).await {
        Ok(output) => {
            let output = output
                .map_err(|e| Error::io(format!("waiting for {}", inv.program.display()), e))?;
            Ok(Finished {
                status: Some(output.status),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                elapsed: started.elapsed(),
            })
        }
        Err(_) => {
            // Dropping the child killed ansible-playbook itself; its forks share its process
            // group.
            if let Some(pid) = pid {
                kill_process_group(pid).await;
            }
            Ok(Finished {
                status: None,
                stdout: String::new(),
                stderr: String::new(),
                elapsed: started.elapsed(),
            })
        }
    }
}

/// SIGKILL to the process group `pgid` (the run's own group, created at spawn).
async fn kill_process_group(pgid: u32) {
    let status = Command::new("kill")
        .arg("-KILL")
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if let Err(e) = status {
        tracing::warn!(pgid, error = %e, "could not kill ansible-playbook's process group");
    }
}

/// Whether the inherited locale is UTF-8.
fn locale_is_utf8() -> bool {
    let value = ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .filter_map(std::env::var_os)
        .find(|v| !v.is_empty())
        .unwrap_or_else(OsString::new)
        .to_string_lossy()
        .to_ascii_lowercase();
    value.contains("utf-8") || value.contains("utf8")
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_says_how_to_install_it() {
        let err = find_ansible_playbook(Some(Path::new("/nonexistent/bin/ansible-playbook")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pip install ansible-core"), "{err}");
        assert!(err.contains("/nonexistent/bin/ansible-playbook"), "{err}");
        let err = find_ansible_playbook(Some(Path::new("edgelb-no-such-program")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("on PATH"), "{err}");
        assert!(err.contains("pip install ansible-core"), "{err}");
    }

    #[test]
    fn finds_a_program_by_path_or_name() {
        let sh = find_ansible_playbook(Some(Path::new("/bin/sh"))).unwrap();
        assert_eq!(sh, PathBuf::from("/bin/sh"));
        assert!(
            find_ansible_playbook(Some(Path::new("sh")))
                .unwrap()
                .is_absolute()
        );
    }

    #[test]
    fn tails() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }

    #[tokio::test]
    async fn a_run_past_its_timeout_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("slow");
        let marker = dir.path().join("child-survived");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n(sleep 2; touch {}) &\nsleep 30\n",
                marker.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let p = dir.path();
        let finished = run(&Invocation {
            program: &script,
            ansible_cfg: p,
            playbook: p,
            inventory: p,
            results: p,
            cwd: p,
            home: p,
            forks: 1,
            check: false,
            timeout: Duration::from_millis(300),
        })
        .await
        .unwrap();
        assert!(finished.status.is_none());
        // Loose: only tells a killed run from one that ran the script's full 30 s.
        assert!(finished.elapsed < Duration::from_secs(25));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "a child outlived the killed run");
    }
}
