//! `edgelb check`'s look at what the SSH and Ansible deployers log in with: the deploy key
//! must be readable, parse and be usable without a prompt; the known_hosts file must parse and
//! pin a key for every edge's `[host]:port`. Otherwise `plan` and `run` fail at once.

use std::path::Path;

use edgelb_core::EdgeNode;
use edgelb_haproxy::ssh::{ClientKey, KnownHosts};

use crate::config::{DeployerConfig, LoadedConfig};

/// One line of `check`'s report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Checked and fine.
    Ok(String),
    /// Not checkable here (said why).
    Skip(String),
    /// Broken: `plan` and `run` would fail.
    Fail(String),
}

/// Checks the deployer's key and pinned host keys against the edges.
pub fn check(loaded: &LoadedConfig) -> Vec<Finding> {
    let edges = &loaded.config.edges;
    let mut findings = Vec::new();
    match &loaded.config.deployer {
        DeployerConfig::Local(_) => {}
        DeployerConfig::Ssh(ssh) => {
            if let Some(skip) = in_pod(loaded, &ssh.key) {
                findings.push(skip);
            } else {
                findings.push(match ssh.client_key() {
                    Ok(key) => key_ok(&ssh.key, &key),
                    Err(e) => Finding::Fail(format!("deploy key: {e}")),
                });
            }
            if let Some(skip) = in_pod(loaded, &ssh.known_hosts) {
                findings.push(skip);
            } else {
                findings.extend(pins(
                    KnownHosts::from_file(&ssh.known_hosts),
                    &ssh.known_hosts,
                    edges,
                ));
            }
        }
        DeployerConfig::Ansible(ansible) => {
            match &ansible.private_key_file {
                None => findings.push(Finding::Skip(
                    "deploy key: none set (ansible_private_key_file); ssh's own defaults and agent are used".into(),
                )),
                Some(path) => findings.push(in_pod(loaded, path).unwrap_or_else(|| {
                    match ClientKey::from_file(path, None) {
                        Ok(key) => key_ok(path, &key),
                        Err(e) => Finding::Fail(format!(
                            "deploy key: {e} (Ansible's ssh runs without a prompt: the key must be unencrypted)"
                        )),
                    }
                })),
            }
            let mut text = String::new();
            let mut from = Vec::new();
            let mut skipped = false;
            if let Some(path) = &ansible.known_hosts_file {
                if let Some(skip) = in_pod(loaded, path) {
                    findings.push(skip);
                    skipped = true;
                } else {
                    match std::fs::read_to_string(path) {
                        Ok(t) => text.push_str(&t),
                        Err(e) => {
                            findings.push(Finding::Fail(format!(
                                "known_hosts {}: cannot read it: {e}",
                                path.display()
                            )));
                            return findings;
                        }
                    }
                    from.push(path.display().to_string());
                }
            }
            if !ansible.known_hosts.is_empty() {
                text.push('\n');
                text.push_str(&ansible.known_hosts.join("\n"));
                from.push("known_hosts lines".into());
            }
            if !skipped {
                let label = from.join(" + ");
                findings.extend(pins(KnownHosts::parse(&text), Path::new(&label), edges));
            }
        }
    }
    findings
}

/// A skip when `path` is missing here but the config came from a ConfigMap manifest (the
/// file lives in the pod's Secret).
fn in_pod(loaded: &LoadedConfig, path: &Path) -> Option<Finding> {
    (loaded.from_manifest && !path.exists()).then(|| {
        Finding::Skip(format!(
            "{}: read in the pod (from the Secret); not on this machine",
            path.display()
        ))
    })
}

fn key_ok(path: &Path, key: &ClientKey) -> Finding {
    Finding::Ok(format!(
        "deploy key {} ({} {})",
        path.display(),
        key.algorithm(),
        key.fingerprint()
    ))
}

/// One finding per edge: is a host key pinned for its `[host]:port`?
fn pins(
    parsed: edgelb_haproxy::Result<KnownHosts>,
    path: &Path,
    edges: &[EdgeNode],
) -> Vec<Finding> {
    let pins = match parsed {
        Ok(p) => p,
        Err(e) => return vec![Finding::Fail(format!("known_hosts: {e}"))],
    };
    edges
        .iter()
        .filter_map(|edge| edge.ssh.as_ref().map(|ssh| (edge, ssh)))
        .map(|(edge, ssh)| {
            let n = pins.pinned_algorithms(&ssh.host, ssh.port).len();
            if n > 0 {
                Finding::Ok(format!(
                    "known_hosts {}: a key is pinned for {} [{}]:{}",
                    path.display(),
                    edge.name,
                    ssh.host,
                    ssh.port
                ))
            } else {
                Finding::Fail(format!(
                    "known_hosts {}: no key is pinned for {} [{}]:{}; pin it with `ssh-keyscan -p {} -t ed25519 {} >> {}` and check the fingerprint out of band",
                    path.display(),
                    edge.name,
                    ssh.host,
                    ssh.port,
                    ssh.port,
                    ssh.host,
                    path.display()
                ))
            }
        })
        .collect()
}
