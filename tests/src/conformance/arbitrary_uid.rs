//! The Ansible deployer with `ansible-playbook` (and so Ansible's ssh) run as an arbitrary UID
//! that has no passwd entry, as in a pod with an OpenShift-style random UID: what the deployer
//! does for such a process (its own HOME, USER, an ssh wrapper with nss_wrapper) must be
//! enough.
//!
//! The testbed needs root, so the deployer runs as root here and only `ansible-playbook`
//! switches UID, through a wrapper that first hands the deployer's work directory to that UID
//! (the deployer, run as that UID in a pod, owns it there).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use edgelb_ansible::{AnsibleDeployer, AnsibleDeployerConfig, PrivateKey};
use edgelb_core::{Applied, Deployer};

use super::{AnsibleUnderTest, DeployerUnderTest};
use crate::testbed::{KeyPair, Testbed};

/// The UID `ansible-playbook` runs as: not in `/etc/passwd`.
pub const ARBITRARY_UID: u32 = 12345;

/// [`AnsibleUnderTest`] with `ansible-playbook` run as [`ARBITRARY_UID`].
#[derive(Debug, Clone, Default)]
pub struct AnsibleAsArbitraryUid {
    inner: AnsibleUnderTest,
    wrapper: OnceLock<PathBuf>,
}

impl AnsibleAsArbitraryUid {
    fn build(&self, config: AnsibleDeployerConfig) -> Arc<dyn Deployer> {
        Arc::new(AnsibleDeployer::new(config).expect("ansible deployer config is valid"))
    }

    /// The testbed's config with the wrapper as `ansible-playbook` and `key` given as bytes
    /// (a key file of root's cannot be read by the UID; the deployer writes the bytes into
    /// its own directory, as it does for a key from a Secret).
    fn config(&self, tb: &Testbed, key: &Path) -> AnsibleDeployerConfig {
        let mut config = self.inner.config(tb);
        config.ansible_playbook = self.wrapper.get().cloned();
        config.private_key_file = None;
        config.private_key = Some(PrivateKey::new(
            std::fs::read(key).expect("the testbed's deploy key is readable"),
        ));
        config
    }
}

/// Writes the wrapper that runs `real` as [`ARBITRARY_UID`]; `None` after reporting why that
/// cannot work here.
fn wrapper_or_skip(test: &str, real: &Path) -> Option<PathBuf> {
    let uid = ARBITRARY_UID.to_string();
    let has_entry = Command::new("getent")
        .args(["passwd", &uid])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        !has_entry,
        "uid {uid} has a passwd entry here; the test needs one without"
    );
    let runs = Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            "--",
        ])
        .arg(real)
        .arg("--version")
        .env("HOME", "/tmp")
        .output()
        .is_ok_and(|o| o.status.success());
    if !runs {
        // Where the checkout lives decides this (a clone under a 0700 directory such as /root
        // cannot be entered by the UID), not edgelb: said loudly, never a failure.
        println!(
            "{test} skipped: uid {uid} cannot run {} (a virtualenv of Debian's python in a checkout other users can enter, as scripts/test makes, is needed)",
            real.display()
        );
        return None;
    }
    let dir = std::env::temp_dir().join(format!("edgelb-arbitrary-uid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("wrapper directory");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .expect("wrapper directory mode");
    let wrapper = dir.join("ansible-playbook");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n\
             # ansible-playbook as uid {uid} (no passwd entry). It runs in WORK/runs/run-*: hand\n\
             # WORK to the UID first, as if the deployer ran as it.\n\
             set -e\n\
             chown -R {uid}:{uid} \"$(cd ../.. && pwd)\"\n\
             exec setpriv --reuid={uid} --regid={uid} --clear-groups -- '{}' \"$@\"\n",
            real.display()
        ),
    )
    .expect("wrapper written");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        .expect("wrapper mode");
    Some(wrapper)
}

impl DeployerUnderTest for AnsibleAsArbitraryUid {
    fn name(&self) -> &'static str {
        "ansible-arbitrary-uid"
    }

    fn available_or_skip(&self, test: &str) -> bool {
        if !self.inner.available_or_skip(test) {
            return false;
        }
        let real = self
            .inner
            .playbook
            .get()
            .cloned()
            .expect("found by available_or_skip");
        match wrapper_or_skip(test, &real) {
            Some(wrapper) => {
                let _ = self.wrapper.set(wrapper);
                true
            }
            None => false,
        }
    }

    fn deployer(&self, tb: &Testbed) -> Arc<dyn Deployer> {
        self.build(self.config(tb, &tb.key.private))
    }

    fn with_known_hosts(&self, tb: &Testbed, known_hosts: &[String]) -> Arc<dyn Deployer> {
        self.build(AnsibleDeployerConfig {
            known_hosts: known_hosts.to_vec(),
            ..self.config(tb, &tb.key.private)
        })
    }

    fn with_client_key(&self, tb: &Testbed, key: &KeyPair) -> Arc<dyn Deployer> {
        self.build(self.config(tb, &key.private))
    }

    fn batch_size(&self) -> usize {
        self.inner.batch_size()
    }

    fn endpoint_change_outcomes(&self) -> &'static [Applied] {
        self.inner.endpoint_change_outcomes()
    }

    fn deploy_time(&self) -> Duration {
        self.inner.deploy_time()
    }

    fn load_interval_ms(&self) -> u64 {
        self.inner.load_interval_ms()
    }
}
