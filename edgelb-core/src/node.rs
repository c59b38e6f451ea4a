//! Edge nodes: the hosts that run HAProxy outside the cluster.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::names::validate_name;

/// The longest node name: names become parts of file names (`NAME.cfg` and the like), which
/// may have at most 255 bytes, and of host names, whose labels have at most 63.
pub const MAX_NODE_NAME_LEN: usize = 63;

/// How to reach a node over SSH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshTarget {
    /// Host name or IP address.
    pub host: String,
    /// TCP port (default 22).
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// Login user (default `root`).
    #[serde(default = "default_ssh_user")]
    pub user: String,
}

fn default_ssh_port() -> u16 {
    22
}

fn default_ssh_user() -> String {
    "root".to_owned()
}

impl SshTarget {
    /// `host:22` as `root`.
    pub fn new(host: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            port: default_ssh_port(),
            user: default_ssh_user(),
        }
    }
}

/// One edge node.
///
/// ```
/// use edgelb_core::EdgeNode;
/// let node = EdgeNode::new("edge-1")
///     .with_public_address("203.0.113.10")
///     .with_bind(443, "ipv6@:443");
/// node.validate()?;
/// assert_eq!(node.binds_for(443), vec![":443".to_string(), "ipv6@:443".to_string()]);
/// # Ok::<(), edgelb_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeNode {
    /// Unique node name (used in logs, status and file names).
    pub name: String,
    /// SSH address; `None` for a node the controller runs on itself (local deployer).
    #[serde(default)]
    pub ssh: Option<SshTarget>,
    /// Addresses clients use to reach this node (IPs or host names), reported in Service status.
    #[serde(default)]
    pub public_addresses: Vec<String>,
    /// Extra `bind` lines per listen port, beside the default `:PORT`
    /// (e.g. `ipv6@:443`, `203.0.113.10:443`).
    #[serde(default)]
    pub extra_binds: BTreeMap<u16, Vec<String>>,
    /// Replace the default `:PORT` bind with `extra_binds` only.
    #[serde(default)]
    pub replace_default_bind: bool,
    /// The pools whose services this node serves (YAML `pools`); empty means the default
    /// pool only ([`DEFAULT_POOL`](crate::DEFAULT_POOL)). See [`crate::placement`].
    #[serde(default)]
    pub pools: Vec<String>,
}

impl EdgeNode {
    /// A node with no SSH target (local) and default binds.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ssh: None,
            public_addresses: Vec::new(),
            extra_binds: BTreeMap::new(),
            replace_default_bind: false,
            pools: Vec::new(),
        }
    }

    /// Sets the SSH target.
    pub fn with_ssh(mut self, ssh: SshTarget) -> Self {
        self.ssh = Some(ssh);
        self
    }

    /// Adds a public address.
    pub fn with_public_address(mut self, addr: impl Into<String>) -> Self {
        self.public_addresses.push(addr.into());
        self
    }

    /// Adds an extra bind for a listen port.
    pub fn with_bind(mut self, listen_port: u16, bind: impl Into<String>) -> Self {
        self.extra_binds
            .entry(listen_port)
            .or_default()
            .push(bind.into());
        self
    }

    /// The `bind` addresses for a listen port, in order.
    pub fn binds_for(&self, listen_port: u16) -> Vec<String> {
        let extra = self.extra_binds.get(&listen_port);
        let mut binds = Vec::new();
        if !self.replace_default_bind || extra.is_none_or(|e| e.is_empty()) {
            binds.push(format!(":{listen_port}"));
        }
        binds.extend(extra.into_iter().flatten().cloned());
        binds
    }

    /// Checks the name, addresses and binds for anything that could break or inject config.
    pub fn validate(&self) -> Result<()> {
        validate_name("node name", &self.name)?;
        if self.name.len() > MAX_NODE_NAME_LEN {
            return Err(Error::InvalidName {
                kind: "node name",
                value: self.name.clone(),
                reason: format!(
                    "it is longer than {MAX_NODE_NAME_LEN} characters (node names become parts of file names)"
                ),
            });
        }
        let bad = |what: &str, value: &str, why: &str| Error::InvalidName {
            kind: "node setting",
            value: value.to_owned(),
            reason: format!("{what} of node {}: {why}", self.name),
        };
        for bind in self.extra_binds.values().flatten() {
            if bind.is_empty()
                || !bind.chars().all(|c| {
                    c.is_ascii_alphanumeric()
                        || matches!(c, '@' | ':' | '.' | '[' | ']' | '-' | '_' | '/' | '*')
                })
            {
                return Err(bad(
                    "bind address",
                    bind,
                    "use an address like ':443', '203.0.113.10:443' or 'ipv6@:443' (letters, digits and @ : . [ ] - _ / * only)",
                ));
            }
        }
        for pool in &self.pools {
            validate_name("pool name", pool).map_err(|e| {
                bad(
                    "pool",
                    pool,
                    &format!("{e}; pool names are like Kubernetes names"),
                )
            })?;
        }
        for addr in &self.public_addresses {
            if addr.is_empty()
                || !addr
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-'))
            {
                return Err(bad(
                    "public address",
                    addr,
                    "use an IP address or a DNS name",
                ));
            }
        }
        if let Some(ssh) = &self.ssh {
            if ssh.host.is_empty()
                || !ssh
                    .host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-'))
            {
                return Err(bad(
                    "ssh host",
                    &ssh.host,
                    "use an IP address or a DNS name",
                ));
            }
            if ssh.user.is_empty()
                || !ssh
                    .user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            {
                return Err(bad("ssh user", &ssh.user, "use a plain user name"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bind_and_replacement() {
        let node = EdgeNode::new("e1");
        assert_eq!(node.binds_for(80), vec![":80"]);
        let mut node = node.with_bind(80, "10.0.0.1:80");
        node.replace_default_bind = true;
        assert_eq!(node.binds_for(80), vec!["10.0.0.1:80"]);
        assert_eq!(node.binds_for(443), vec![":443"]);
    }

    #[test]
    fn rejects_injection_in_binds_and_addresses() {
        assert!(
            EdgeNode::new("e1")
                .with_bind(80, ":80 ssl crt /x")
                .validate()
                .is_err()
        );
        assert!(
            EdgeNode::new("e1")
                .with_bind(80, ":80\n")
                .validate()
                .is_err()
        );
        assert!(
            EdgeNode::new("e1")
                .with_public_address("1.2.3.4 #")
                .validate()
                .is_err()
        );
        assert!(EdgeNode::new("e 1").validate().is_err());
        let long = EdgeNode::new("e".repeat(252)).validate().unwrap_err();
        assert!(long.to_string().contains("longer than 63"), "{long}");
        EdgeNode::new("e".repeat(63)).validate().unwrap();
        let mut ssh = SshTarget::new("10.0.0.1");
        ssh.user = "root;rm".into();
        assert!(EdgeNode::new("e1").with_ssh(ssh).validate().is_err());
    }
}
