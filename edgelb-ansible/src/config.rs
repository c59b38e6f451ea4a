//! The Ansible deployer's settings, as the `edgelb` config file spells them
//! (`deployer: {ansible: {...}}`).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use edgelb_haproxy::HaproxyLayout;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::paths::check_plain_path;

/// Settings of an [`AnsibleDeployer`](crate::AnsibleDeployer). Every field has a default;
/// host keys must be pinned (`known_hosts` or `known_hosts_file`).
///
/// ```
/// let config: edgelb_ansible::AnsibleDeployerConfig = serde_yaml_ng::from_str(
///     "private_key_file: /etc/edgelb/id_ed25519\n\
///      known_hosts_file: /etc/edgelb/known_hosts\n\
///      reload_timeout: 15s\n",
/// )?;
/// assert_eq!(config.reload_timeout, std::time::Duration::from_secs(15));
/// assert_eq!(config.config_path, "/etc/haproxy/haproxy.cfg");
/// # Ok::<(), serde_yaml_ng::Error>(())
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnsibleDeployerConfig {
    /// `ansible-playbook` to run: a path, or a name looked up on `PATH` (default
    /// `ansible-playbook` on `PATH`).
    pub ansible_playbook: Option<PathBuf>,
    /// The SSH private key to log in with (default: none; ssh's own defaults and agent).
    /// ssh refuses a key file others can read; keep it 0600.
    pub private_key_file: Option<PathBuf>,
    /// The private key's bytes, written to a 0600 file in the deployer's private directory
    /// (for keys that come from a Kubernetes Secret in memory). Not read from config files;
    /// set it in code. Mutually exclusive with `private_key_file`.
    #[serde(skip)]
    pub private_key: Option<PrivateKey>,
    /// A `known_hosts` file with the edges' pinned host keys (the same file the native SSH
    /// deployer reads).
    pub known_hosts_file: Option<PathBuf>,
    /// Pinned host keys as `known_hosts` lines (`[203.0.113.10]:2222 ssh-ed25519 AAAA…`),
    /// added to those of `known_hosts_file`.
    pub known_hosts: Vec<String>,
    /// The live haproxy.cfg on the edges (default `/etc/haproxy/haproxy.cfg`).
    pub config_path: String,
    /// HAProxy's master socket on the edges, its `-S` argument (default
    /// `/run/haproxy/master.sock`). Reloads are confirmed through it.
    pub master_socket: String,
    /// The haproxy binary on the edges (default `haproxy` on `PATH`).
    pub haproxy_bin: String,
    /// Reload with this command instead of the master socket's `reload`, e.g.
    /// `[systemctl, reload, haproxy]` (default: none).
    pub reload_command: Option<Vec<String>>,
    /// How long a reload may take to show in `show proc` (default 10s).
    #[serde(with = "edgelb_core::duration")]
    pub reload_timeout: Duration,
    /// Run the remote steps with Ansible's `become` (sudo), for a non-root login user
    /// (default false).
    #[serde(rename = "become")]
    pub r#become: bool,
    /// The Python on the edges (`ansible_python_interpreter`); saves Ansible's interpreter
    /// discovery (default: discovered).
    pub python_interpreter: Option<String>,
    /// Most hosts Ansible works on at once (`--forks` is the batch size up to this; default 50).
    pub max_forks: usize,
    /// Longest a whole `ansible-playbook` run may take before it is killed (default 5m).
    #[serde(with = "edgelb_core::duration")]
    pub run_timeout: Duration,
    /// SSH connect timeout (default 10s).
    #[serde(with = "edgelb_core::duration")]
    pub connect_timeout: Duration,
    /// How long an idle SSH master connection stays open for the next run (ControlPersist;
    /// default 60s; `0s` turns connection reuse off).
    #[serde(with = "edgelb_core::duration")]
    pub control_persist: Duration,
    /// Ansible pipelining: fewer SSH round trips per task (default true).
    pub pipelining: bool,
    /// Where the deployer creates its private working directory (control sockets, inventory,
    /// playbook copy). Default: the system temp dir, or `/tmp` when that path is too long
    /// for SSH's control sockets.
    pub work_dir: Option<PathBuf>,
    /// Keep each run's inventory, configs and results for debugging (default false).
    pub keep_run_dirs: bool,
}

impl Default for AnsibleDeployerConfig {
    fn default() -> Self {
        let layout = HaproxyLayout::default();
        Self {
            ansible_playbook: None,
            private_key_file: None,
            private_key: None,
            known_hosts_file: None,
            known_hosts: Vec::new(),
            config_path: layout.config_path,
            master_socket: layout.master_socket,
            haproxy_bin: layout.haproxy_bin,
            reload_command: layout.reload_command,
            reload_timeout: layout.reload_timeout,
            r#become: false,
            python_interpreter: None,
            max_forks: 50,
            run_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            control_persist: Duration::from_secs(60),
            pipelining: true,
            work_dir: None,
            keep_run_dirs: false,
        }
    }
}

impl AnsibleDeployerConfig {
    /// The HAProxy layout these settings describe.
    pub fn layout(&self) -> HaproxyLayout {
        HaproxyLayout {
            config_path: self.config_path.clone(),
            haproxy_bin: self.haproxy_bin.clone(),
            master_socket: self.master_socket.clone(),
            reload_command: self.reload_command.clone(),
            reload_timeout: self.reload_timeout,
        }
    }

    /// Checks what serde cannot. Host keys are checked when the deployer is built (they may
    /// come from a file).
    pub fn validate(&self) -> Result<()> {
        self.layout().validate()?;
        if self.private_key_file.is_some() && self.private_key.is_some() {
            return Err(Error::invalid(
                "private key",
                "give either private_key_file or the key's bytes, not both",
            ));
        }
        if let Some(path) = &self.private_key_file {
            check_plain_path("private_key_file", path)?;
        }
        if let Some(python) = &self.python_interpreter {
            check_plain_path("python_interpreter", python.as_ref())?;
        }
        if self.max_forks == 0 {
            return Err(Error::invalid("max_forks", "must be at least 1"));
        }
        for (what, value) in [
            ("run_timeout", self.run_timeout),
            ("connect_timeout", self.connect_timeout),
            ("reload_timeout", self.reload_timeout),
        ] {
            if value.is_zero() {
                return Err(Error::invalid(what, "must be more than 0s"));
            }
        }
        if self.connect_timeout < Duration::from_secs(1) {
            return Err(Error::invalid(
                "connect_timeout",
                "ssh counts it in whole seconds; use 1s or more",
            ));
        }
        Ok(())
    }
}

/// Private key bytes (OpenSSH or PEM format). `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey(Vec<u8>);

impl PrivateKey {
    /// Wraps the key's bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The bytes, to write to the key file.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(<{} bytes, redacted>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_native_layout_and_unknown_fields_fail() {
        let config: AnsibleDeployerConfig = serde_yaml_ng::from_str("{}").unwrap();
        assert_eq!(config.layout(), HaproxyLayout::default());
        assert_eq!(config.max_forks, 50);
        assert!(config.pipelining);
        assert!(config.validate().is_ok());
        let err = serde_yaml_ng::from_str::<AnsibleDeployerConfig>("forks: 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `forks`"), "{err}");
        let err = serde_yaml_ng::from_str::<AnsibleDeployerConfig>("run_timeout: 30\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("duration"), "{err}");
    }

    #[test]
    fn full_config_parses() {
        let config: AnsibleDeployerConfig = serde_yaml_ng::from_str(
            "ansible_playbook: /opt/venv/bin/ansible-playbook\n\
             private_key_file: /etc/edgelb/id\n\
             known_hosts: ['[10.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA']\n\
             reload_command: [systemctl, reload, haproxy]\n\
             become: true\n\
             python_interpreter: /usr/bin/python3\n\
             max_forks: 10\n\
             run_timeout: 2m\n\
             control_persist: 0s\n\
             pipelining: false\n\
             keep_run_dirs: true\n",
        )
        .unwrap();
        assert!(config.r#become);
        assert_eq!(config.run_timeout, Duration::from_secs(120));
        assert_eq!(config.control_persist, Duration::ZERO);
        assert_eq!(config.known_hosts.len(), 1);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn rejects_unsafe_or_contradictory_settings() {
        let bad = [
            AnsibleDeployerConfig {
                config_path: "/etc/h a.cfg".into(),
                ..Default::default()
            },
            AnsibleDeployerConfig {
                private_key_file: Some("/k".into()),
                private_key: Some(PrivateKey::new(b"x".to_vec())),
                ..Default::default()
            },
            AnsibleDeployerConfig {
                max_forks: 0,
                ..Default::default()
            },
            AnsibleDeployerConfig {
                python_interpreter: Some("python3 -c evil".into()),
                ..Default::default()
            },
            AnsibleDeployerConfig {
                connect_timeout: Duration::from_millis(500),
                ..Default::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn the_readme_example_parses_and_shows_the_defaults() {
        #[derive(Deserialize)]
        struct File {
            deployer: Deployer,
        }
        #[derive(Deserialize)]
        struct Deployer {
            ansible: AnsibleDeployerConfig,
        }
        let readme = include_str!("../README.md");
        let start = readme.find("```yaml\ndeployer:\n").unwrap() + "```yaml\n".len();
        let len = readme[start..].find("```").unwrap();
        let file: File = serde_yaml_ng::from_str(&readme[start..start + len]).unwrap();
        let shown = file.deployer.ansible;
        let defaults = AnsibleDeployerConfig::default();
        assert_eq!(shown.layout(), defaults.layout());
        assert_eq!(
            (shown.max_forks, shown.run_timeout, shown.connect_timeout),
            (
                defaults.max_forks,
                defaults.run_timeout,
                defaults.connect_timeout
            )
        );
        assert_eq!(
            (shown.control_persist, shown.pipelining, shown.r#become),
            (
                defaults.control_persist,
                defaults.pipelining,
                defaults.r#become
            )
        );
    }

    #[test]
    fn key_bytes_never_show_in_debug() {
        let key = PrivateKey::new(b"-----BEGIN OPENSSH PRIVATE KEY-----secret".to_vec());
        let shown = format!(
            "{:?}",
            AnsibleDeployerConfig {
                private_key: Some(key),
                ..Default::default()
            }
        );
        assert!(
            !shown.contains("secret") && !shown.contains("BEGIN"),
            "{shown}"
        );
    }
}
