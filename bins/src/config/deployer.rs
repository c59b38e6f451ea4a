use std::path::Path;
use std::time::Duration;

use edgelb_core::EdgeNode;
use edgelb_haproxy::HaproxyLayout;
use serde::Deserialize;

/// `deployer:` — how configs reach the edges. Exactly one key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum DeployerConfig {
    /// `local: {...}` — HAProxy on the machine edgelb runs on (one edge).
    Local(LocalDeployerConfig),
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
    /// Start haproxy when no master answers (default false; the quick start sets it).
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
        }
    }

    pub(super) fn validate(&self, edges: &[EdgeNode]) -> Result<(), String> {
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
        }
    }

    /// Nodes per deploy call.
    pub fn batch_size(&self) -> usize {
        1
    }
}
