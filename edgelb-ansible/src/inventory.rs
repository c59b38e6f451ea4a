//! The temporary inventory: one host per edge node with its SSH address and rendered config,
//! and the group's HAProxy layout. Written as JSON (YAML's subset, read by Ansible's `yaml`
//! inventory plugin) into the run's directory.

use std::path::PathBuf;

use edgelb_core::SshTarget;
use edgelb_haproxy::HaproxyLayout;
use serde_json::{Map, Value, json};

/// The inventory group the playbooks run on.
pub const GROUP: &str = "edgelb_edges";

/// One host of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InventoryHost {
    /// Inventory name: the node's name.
    pub name: String,
    /// Where to log in.
    pub ssh: SshTarget,
    /// The rendered config on this machine (deploy and plan runs).
    pub config_src: Option<PathBuf>,
    /// SHA-256 (hex) of the whole rendered file, digest line included.
    pub config_sha256: Option<String>,
}

/// Settings shared by every host of a run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GroupSettings<'a> {
    /// Where HAProxy lives.
    pub layout: &'a HaproxyLayout,
    /// `ansible_python_interpreter`.
    pub python_interpreter: Option<&'a str>,
    /// Ansible `become`.
    pub r#become: bool,
}

/// The inventory document.
pub(crate) fn inventory(hosts: &[InventoryHost], group: &GroupSettings<'_>) -> Value {
    let mut host_map = Map::new();
    for host in hosts {
        let mut vars = Map::new();
        vars.insert("ansible_host".into(), json!(host.ssh.host));
        vars.insert("ansible_port".into(), json!(host.ssh.port));
        vars.insert("ansible_user".into(), json!(host.ssh.user));
        if let Some(src) = &host.config_src {
            vars.insert("edgelb_config_src".into(), json!(src.display().to_string()));
        }
        if let Some(sha) = &host.config_sha256 {
            vars.insert("edgelb_config_sha256".into(), json!(sha));
        }
        host_map.insert(host.name.clone(), Value::Object(vars));
    }

    let layout = group.layout;
    let mut vars = Map::new();
    vars.insert("ansible_connection".into(), json!("ssh"));
    vars.insert("edgelb_config_path".into(), json!(layout.config_path));
    vars.insert("edgelb_haproxy_bin".into(), json!(layout.haproxy_bin));
    vars.insert("edgelb_master_socket".into(), json!(layout.master_socket));
    vars.insert(
        "edgelb_reload_command".into(),
        json!(layout.reload_command.clone().unwrap_or_default()),
    );
    vars.insert(
        "edgelb_reload_timeout".into(),
        json!(layout.reload_timeout.as_secs_f64()),
    );
    vars.insert("edgelb_become".into(), json!(group.r#become));
    if let Some(python) = group.python_interpreter {
        vars.insert("ansible_python_interpreter".into(), json!(python));
    }

    json!({
        "all": {
            "children": {
                GROUP: {
                    "hosts": Value::Object(host_map),
                    "vars": Value::Object(vars),
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn hosts_carry_address_and_config_and_the_group_carries_the_layout() {
        let layout = HaproxyLayout {
            config_path: "/etc/haproxy/haproxy.cfg".into(),
            haproxy_bin: "/usr/sbin/haproxy".into(),
            master_socket: "/run/haproxy/master.sock".into(),
            reload_command: Some(vec!["systemctl".into(), "reload".into(), "haproxy".into()]),
            reload_timeout: Duration::from_millis(7500),
        };
        let hosts = [
            InventoryHost {
                name: "edge-1".into(),
                ssh: SshTarget::new("203.0.113.10"),
                config_src: Some("/tmp/run/configs/edge-1.cfg".into()),
                config_sha256: Some("ab".repeat(32)),
            },
            InventoryHost {
                name: "edge-2".into(),
                ssh: SshTarget {
                    host: "2001:db8::2".into(),
                    port: 2222,
                    user: "deploy".into(),
                },
                config_src: None,
                config_sha256: None,
            },
        ];
        let doc = inventory(
            &hosts,
            &GroupSettings {
                layout: &layout,
                python_interpreter: Some("/usr/bin/python3"),
                r#become: true,
            },
        );
        let expected = json!({"all": {"children": {"edgelb_edges": {
            "hosts": {
                "edge-1": {
                    "ansible_host": "203.0.113.10", "ansible_port": 22, "ansible_user": "root",
                    "edgelb_config_src": "/tmp/run/configs/edge-1.cfg",
                    "edgelb_config_sha256": "ab".repeat(32),
                },
                "edge-2": {"ansible_host": "2001:db8::2", "ansible_port": 2222, "ansible_user": "deploy"},
            },
            "vars": {
                "ansible_connection": "ssh",
                "ansible_python_interpreter": "/usr/bin/python3",
                "edgelb_become": true,
                "edgelb_config_path": "/etc/haproxy/haproxy.cfg",
                "edgelb_haproxy_bin": "/usr/sbin/haproxy",
                "edgelb_master_socket": "/run/haproxy/master.sock",
                "edgelb_reload_command": ["systemctl", "reload", "haproxy"],
                "edgelb_reload_timeout": 7.5,
            },
        }}}});
        assert_eq!(doc, expected);
    }

    #[test]
    fn no_reload_command_means_an_empty_list() {
        let layout = HaproxyLayout::default();
        let doc = inventory(
            &[],
            &GroupSettings {
                layout: &layout,
                python_interpreter: None,
                r#become: false,
            },
        );
        let vars = &doc["all"]["children"][GROUP]["vars"];
        assert_eq!(vars["edgelb_reload_command"], json!([]));
        assert_eq!(vars["edgelb_reload_timeout"], json!(10.0));
        assert!(vars.get("ansible_python_interpreter").is_none());
    }
}
