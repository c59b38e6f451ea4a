//! The deployer's private directory (0700), alive as long as the deployer: the playbook
//! copy, `ansible.cfg`, pinned host keys, the key file when the key came as bytes, the SSH
//! control sockets that carry connections from one run to the next, and one directory per
//! run (inventory, rendered configs, results).

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tempfile::TempDir;

use crate::ansible_cfg::{CfgSettings, ansible_cfg};
use crate::assets::export_playbook;
use crate::config::AnsibleDeployerConfig;
use crate::error::{Error, Result};
use crate::paths::{MAX_CONTROL_DIR_LEN, absolute_plain, check_plain_path, text};
use crate::ssh_wrapper::ssh_wrapper;

/// The deployer's private directory.
#[derive(Debug)]
pub(crate) struct WorkDir {
    /// Removed on drop.
    dir: TempDir,
    /// HOME for ansible-playbook and ssh.
    pub home: PathBuf,
    /// The playbooks, role, module and callback plugin.
    pub assets: PathBuf,
    /// The generated `ansible.cfg`.
    pub ansible_cfg: PathBuf,
    /// ssh's control sockets.
    pub control: PathBuf,
    /// Per-run directories.
    runs: PathBuf,
    /// Keep run directories.
    keep_runs: bool,
}

impl WorkDir {
    /// Creates the directory and writes everything a run needs. `known_hosts` is the checked
    /// file contents.
    pub fn create(config: &AnsibleDeployerConfig, known_hosts: &str) -> Result<Self> {
        let parent = match &config.work_dir {
            Some(dir) => absolute_plain("work_dir", dir)?,
            None => default_parent(),
        };
        std::fs::create_dir_all(&parent)
            .map_err(|e| Error::io(format!("creating work_dir {}", parent.display()), e))?;
        let dir = tempfile::Builder::new()
            .prefix("edgelb-ans-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&parent)
            .map_err(|e| {
                Error::io(
                    format!("creating a private directory in {}", parent.display()),
                    e,
                )
            })?;
        let root = dir.path().to_path_buf();
        let control = root.join("cp");
        check_plain_path("work_dir", &control)?;
        if text(&control).len() > MAX_CONTROL_DIR_LEN {
            return Err(Error::invalid(
                format!("work_dir {}", parent.display()),
                format!(
                    "the SSH control socket directory {} would be longer than {MAX_CONTROL_DIR_LEN} bytes, too long for a UNIX socket path; choose a shorter work_dir such as /tmp",
                    control.display()
                ),
            ));
        }
        let assets = root.join("ansible");
        let runs = root.join("runs");
        let local_tmp = root.join("tmp");
        // HOME for ansible-playbook, and for ssh through nss_wrapper when the UID has no
        // passwd entry (ssh_wrapper.rs): the only writable place on a read-only root.
        let home = root.join("home");
        let bin = root.join("bin");
        let nss = root.join("nss");
        for sub in [&control, &runs, &local_tmp, &home, &bin, &nss] {
            std::fs::create_dir(sub)
                .map_err(|e| Error::io(format!("creating {}", sub.display()), e))?;
        }
        export_playbook(&assets)?;
        let ssh = bin.join("ssh");
        write_file(&ssh, ssh_wrapper(&nss, &home).as_bytes(), 0o700)?;

        let known_hosts_path = root.join("known_hosts");
        write_file(&known_hosts_path, known_hosts.as_bytes(), 0o600)?;
        let key_path = match (&config.private_key_file, &config.private_key) {
            (Some(path), _) => Some(absolute_plain("private_key_file", path)?),
            (None, Some(key)) => {
                let path = root.join("id");
                write_file(&path, key.bytes(), 0o600)?;
                Some(path)
            }
            (None, None) => None,
        };

        let cfg = ansible_cfg(&CfgSettings {
            assets_dir: &assets,
            local_tmp: &local_tmp,
            control_dir: &control,
            ssh_executable: &ssh,
            known_hosts: &known_hosts_path,
            private_key: key_path.as_deref(),
            connect_timeout: config.connect_timeout,
            control_persist: config.control_persist,
            pipelining: config.pipelining,
        });
        let ansible_cfg = root.join("ansible.cfg");
        write_file(&ansible_cfg, cfg.as_bytes(), 0o600)?;

        Ok(Self {
            dir,
            home,
            assets,
            ansible_cfg,
            control,
            runs,
            keep_runs: config.keep_run_dirs,
        })
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh directory for one run, removed when dropped (unless run directories are kept).
    pub fn new_run(&self) -> Result<TempDir> {
        tempfile::Builder::new()
            .prefix("run-")
            .disable_cleanup(self.keep_runs)
            .tempdir_in(&self.runs)
            .map_err(|e| {
                Error::io(
                    format!("creating a run directory in {}", self.runs.display()),
                    e,
                )
            })
    }

    /// The control sockets currently open.
    fn control_sockets(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.control)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }

    /// Asks each SSH master connection to exit.
    pub async fn close_masters(&self) {
        for socket in self.control_sockets() {
            let status = tokio::process::Command::new("ssh")
                .args(exit_args(&socket))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
            tracing::debug!(socket = %socket.display(), ?status, "closed SSH master connection");
        }
    }

    /// [`WorkDir::close_masters`] for `Drop`: blocks for a few milliseconds per connection.
    pub fn close_masters_blocking(&self) {
        for socket in self.control_sockets() {
            let _ = std::process::Command::new("ssh")
                .args(exit_args(&socket))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `ssh -O exit` on one control socket, ignoring the user's ssh config.
fn exit_args(socket: &Path) -> Vec<String> {
    vec![
        "-F".into(),
        "/dev/null".into(),
        "-o".into(),
        format!("ControlPath={}", text(socket)),
        "-O".into(),
        "exit".into(),
        "edgelb-control".into(),
    ]
}

/// The system temp dir, or `/tmp` when that is too long for control sockets or not plain.
fn default_parent() -> PathBuf {
    let tmp = std::env::temp_dir();
    // "/edgelb-ans-XXXXXX/cp" adds 21 bytes.
    let fits = text(&tmp).len() + 21 <= MAX_CONTROL_DIR_LEN;
    if fits && check_plain_path("temp dir", &tmp).is_ok() {
        tmp
    } else {
        PathBuf::from("/tmp")
    }
}

/// Creates `path` with `mode` and writes `bytes` (the mode applies from the start).
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    file.write_all(bytes)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PrivateKey;

    #[test]
    fn private_dir_with_assets_config_and_a_0600_key() {
        let parent = tempfile::tempdir_in("/tmp").unwrap();
        let config = AnsibleDeployerConfig {
            work_dir: Some(parent.path().to_path_buf()),
            private_key: Some(PrivateKey::new(b"KEY".to_vec())),
            ..Default::default()
        };
        let work = WorkDir::create(&config, "h ssh-ed25519 AAAA\n").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(work.path()), 0o700);
        assert_eq!(mode(&work.path().join("id")), 0o600);
        assert_eq!(std::fs::read(work.path().join("id")).unwrap(), b"KEY");
        assert!(work.assets.join("deploy.yml").is_file());
        let cfg = std::fs::read_to_string(&work.ansible_cfg).unwrap();
        assert!(cfg.contains(&format!("private_key_file = {}/id", work.path().display())));
        assert!(cfg.contains(&format!("control_path_dir = {}", work.control.display())));

        let run = work.new_run().unwrap();
        let run_path = run.path().to_path_buf();
        drop(run);
        assert!(!run_path.exists());

        let root = work.path().to_path_buf();
        drop(work);
        assert!(!root.exists());
    }

    #[test]
    fn a_work_dir_too_long_for_control_sockets_is_refused() {
        let long = PathBuf::from("/tmp").join("x".repeat(70));
        let config = AnsibleDeployerConfig {
            work_dir: Some(long.clone()),
            ..Default::default()
        };
        let err = WorkDir::create(&config, "").unwrap_err().to_string();
        assert!(err.contains("too long for a UNIX socket path"), "{err}");
        let _ = std::fs::remove_dir_all(long);
    }
}
