//! The testbed as the Ansible deployer sees it: the same client key and the same pinned host
//! keys as [`Testbed::deployer_config`] gives the native one, and the default HAProxy layout.

use std::path::{Path, PathBuf};
use std::time::Duration;

use edgelb_ansible::AnsibleDeployerConfig;

use super::{Edge, Testbed, prereq};

/// `ansible-playbook`: on `PATH`, else in the virtualenv `scripts/test` creates
/// (`target/venv`).
pub fn find_ansible_playbook() -> Option<PathBuf> {
    edgelb_ansible::find_ansible_playbook(None)
        .ok()
        .or_else(|| {
            let venv =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/venv/bin/ansible-playbook");
            venv.exists().then_some(venv)
        })
}

/// [`find_ansible_playbook`], or `None` after printing why `test` cannot run (a panic when
/// `CI` is set: CI never passes by skipping).
pub fn ansible_playbook_or_skip(test: &str) -> Option<PathBuf> {
    let found = find_ansible_playbook();
    if found.is_none() {
        prereq::report(
            test,
            "ansible-playbook (pip install ansible-core, e.g. into target/venv as scripts/test does)",
        );
    }
    found
}

impl Testbed {
    /// An Ansible deployer config for the testbed's edges: our ed25519 key, every edge's host
    /// key pinned, the default layout, a fixed Python on the edges (no discovery) and short
    /// timeouts.
    pub fn ansible_deployer_config(&self, ansible_playbook: PathBuf) -> AnsibleDeployerConfig {
        AnsibleDeployerConfig {
            ansible_playbook: Some(ansible_playbook),
            private_key_file: Some(self.key.private.clone()),
            known_hosts: self.edges.iter().map(Edge::known_hosts_line).collect(),
            python_interpreter: Some("/usr/bin/python3".into()),
            connect_timeout: Duration::from_secs(5),
            run_timeout: Duration::from_secs(120),
            ..AnsibleDeployerConfig::default()
        }
    }
}
