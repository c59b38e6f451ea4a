//! Helpers for tests that run `edgelb run` with the local deployer's `start_haproxy`: a temp
//! directory of their own, a guard that stops the haproxy started on its config file, and a
//! skip when haproxy is not installed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh directory under the system's temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// `<tmp>/edgelb-<what>-<pid>-<nanos>`, created.
    pub fn new(what: &str) -> std::io::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("edgelb-{what}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Stops, when dropped, every process whose command line names this config file (a unique
/// temp path): the haproxy edgelb started, which outlives edgelb by design.
pub struct StopHaproxy(pub String);

impl Drop for StopHaproxy {
    fn drop(&mut self) {
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in procs.flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if args.contains(&self.0.as_bytes()) {
                let _ = Command::new("kill").args(["-TERM", &pid]).status();
            }
        }
    }
}

/// Whether haproxy is installed; without it the test `name` is skipped (with a line on
/// stderr), except under CI, where it fails.
pub fn haproxy_or_skip(name: &str) -> bool {
    if Command::new("haproxy")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "haproxy is not installed; run scripts/test (it installs it)"
    );
    eprintln!("SKIP {name}: haproxy is not installed");
    false
}
