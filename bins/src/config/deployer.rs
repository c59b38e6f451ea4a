use std::path::{Path, PathBuf};
use std::time::Duration;

use edgelb_ansible::AnsibleDeployerConfig;
use edgelb_core::EdgeNode;
use edgelb_haproxy::HaproxyLayout;
use edgelb_haproxy::ssh::{
    ClientKey, KnownHosts, SshCredentials, SshDeployer, SshDeployerConfig, SshOptions,
};
use serde::Deserialize;

/// `deployer:` — how configs reach the edges. Exactly one key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum DeployerConfig {
    /// `local: {...}` — HAProxy on the machine edgelb runs on (one edge).
    Local(LocalDeployerConfig),
    /// `ssh: {...}` — the native SSH deployer: one persistent session per edge.
    Ssh(SshDeployerSettings),
    /// `ansible: {...}` — one `ansible-playbook` run per change, for every edge at once.
    Ansible(Box<AnsibleDeployerConfig>),
}

/// `deployer.ssh`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshDeployerSettings {
    /// The deploy key (ed25519, ECDSA or RSA; e.g. a mounted Secret).
    pub key: PathBuf,
    /// A file holding the deploy key's passphrase, when the key is encrypted (its first line
    /// counts; e.g. another key of the mounted Secret).
    #[serde(default)]
    pub key_passphrase_file: Option<PathBuf>,
    /// The edges' pinned host keys, known_hosts format. An edge whose key is not here is
    /// refused; there is no trust on first use.
    pub known_hosts: PathBuf,
    /// The live haproxy.cfg on the edges (default `/etc/haproxy/haproxy.cfg`).
    #[serde(default = "default_config_path")]
    pub config_path: String,
    /// HAProxy's master socket on the edges (default `/run/haproxy/master.sock`).
    #[serde(default = "default_master_socket")]
    pub master_socket: String,
    /// The haproxy binary on the edges (default `haproxy`).
    #[serde(default = "default_haproxy_bin")]
    pub haproxy_bin: String,
    /// Reload with this command instead of the master socket, e.g. `[systemctl, reload, haproxy]`.
    #[serde(default)]
    pub reload_command: Option<Vec<String>>,
    /// How long a reload may take to show in `show proc` (default 10s).
    #[serde(default = "default_reload_timeout", with = "edgelb_core::duration")]
    pub reload_timeout: Duration,
    /// Connect, handshake and login (default 10s).
    #[serde(default = "default_connect_timeout", with = "edgelb_core::duration")]
    pub connect_timeout: Duration,
    /// Each remote step (default 30s).
    #[serde(default = "default_step_timeout", with = "edgelb_core::duration")]
    pub step_timeout: Duration,
}

fn default_config_path() -> String {
    HaproxyLayout::default().config_path
}
fn default_master_socket() -> String {
    HaproxyLayout::default().master_socket
}
fn default_haproxy_bin() -> String {
    HaproxyLayout::default().haproxy_bin
}
fn default_reload_timeout() -> Duration {
    HaproxyLayout::default().reload_timeout
}
fn default_connect_timeout() -> Duration {
    SshOptions::default().connect_timeout
}
fn default_step_timeout() -> Duration {
    SshOptions::default().step_timeout
}

impl SshDeployerSettings {
    /// The HAProxy layout on the edges.
    pub fn layout(&self) -> HaproxyLayout {
        HaproxyLayout {
            config_path: self.config_path.clone(),
            haproxy_bin: self.haproxy_bin.clone(),
            master_socket: self.master_socket.clone(),
            reload_command: self.reload_command.clone(),
            reload_timeout: self.reload_timeout,
        }
    }

    /// Loads the key and pinned host keys and builds the deployer.
    pub fn deployer(&self) -> edgelb_haproxy::Result<SshDeployer> {
        let key = self.client_key()?;
        let known_hosts = KnownHosts::from_file(&self.known_hosts)?;
        SshDeployer::new(SshDeployerConfig {
            default_credentials: Some(SshCredentials::new(key, known_hosts)),
            layout: self.layout(),
            options: SshOptions {
                connect_timeout: self.connect_timeout,
                step_timeout: self.step_timeout,
                ..SshOptions::default()
            },
            ..SshDeployerConfig::default()
        })
    }
}

impl SshDeployerSettings {
    /// Reads the deploy key, with the passphrase of `key_passphrase_file` if set.
    pub fn client_key(&self) -> edgelb_haproxy::Result<ClientKey> {
        let Some(file) = &self.key_passphrase_file else {
            return ClientKey::from_file(&self.key, None);
        };
        let text = std::fs::read_to_string(file).map_err(|e| {
            edgelb_haproxy::Error::io(
                format!(
                    "reading the deploy key's passphrase file {}",
                    file.display()
                ),
                e,
            )
        })?;
        let passphrase = text.lines().next().unwrap_or_default();
        ClientKey::from_file(&self.key, Some(passphrase))
    }
}

/// `deployer.local`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalDeployerConfig {
    /// The live haproxy.cfg (default `/etc/haproxy/haproxy.cfg`).
    pub config_path: String,
    /// HAProxy's master socket, its `-S` argument (default `/run/haproxy/master.sock`).
    pub master_socket: String,
    /// The haproxy binary (default `haproxy` on PATH).
    pub haproxy_bin: String,
    /// Reload with this command instead of the master socket, e.g.
    /// `[systemctl, reload, haproxy]`.
    pub reload_command: Option<Vec<String>>,
    /// How long a reload may take to show in `show proc` (default 10s).
    #[serde(with = "edgelb_core::duration")]
    pub reload_timeout: Duration,
    /// Start haproxy when no master answers (default false; the quick start sets it). SIGTERM
    /// or Ctrl-C stops it with edgelb; an exit on an error (a lost Lease) leaves it serving
    /// its last config for the next run to deploy to.
    pub start_haproxy: bool,
}

impl Default for LocalDeployerConfig {
    fn default() -> Self {
        let layout = HaproxyLayout::default();
        Self {
            config_path: layout.config_path,
            master_socket: layout.master_socket,
            haproxy_bin: layout.haproxy_bin,
            reload_command: layout.reload_command,
            reload_timeout: layout.reload_timeout,
            start_haproxy: false,
        }
    }
}

impl LocalDeployerConfig {
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
}

impl DeployerConfig {
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        match self {
            Self::Local(local) => {
                for path in [&mut local.config_path, &mut local.master_socket] {
                    if !path.starts_with('/') {
                        *path = base.join(&*path).display().to_string();
                    }
                }
            }
            Self::Ssh(ssh) => {
                ssh.key = base.join(&ssh.key);
                if let Some(file) = &mut ssh.key_passphrase_file {
                    *file = base.join(&*file);
                }
                ssh.known_hosts = base.join(&ssh.known_hosts);
            }
            Self::Ansible(ansible) => {
                for path in [&mut ansible.private_key_file, &mut ansible.known_hosts_file]
                    .into_iter()
                    .flatten()
                {
                    *path = base.join(&*path);
                }
            }
        }
    }

    pub(super) fn validate(&self, edges: &[EdgeNode]) -> Result<(), String> {
        let need_ssh = |kind: &str| match edges.iter().find(|e| e.ssh.is_none()) {
            Some(edge) => Err(format!(
                "{kind}: edge {:?} has no ssh: {{host, port, user}}; the {kind} deployer reaches every edge over SSH",
                edge.name
            )),
            None => Ok(()),
        };
        match self {
            Self::Local(local) => {
                if edges.len() != 1 {
                    return Err(format!(
                        "local: the local deployer serves exactly one edge (this machine), but {} are listed; use the ssh deployer for remote edges",
                        edges.len()
                    ));
                }
                local.layout().validate().map_err(|e| format!("local: {e}"))
            }
            Self::Ssh(ssh) => {
                need_ssh("ssh")?;
                ssh.layout().validate().map_err(|e| format!("ssh: {e}"))
            }
            Self::Ansible(_) => need_ssh("ansible"),
        }
    }

    /// Nodes per deploy call: Ansible runs every edge in one playbook; the others fan out.
    pub fn batch_size(&self) -> usize {
        match self {
            Self::Ansible(_) => usize::MAX,
            Self::Local(_) | Self::Ssh(_) => 1,
        }
    }
}
