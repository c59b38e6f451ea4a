//! The deployer conformance suite: the end-to-end scenarios of the SSH deployer (real client
//! IP through 3 edges, endpoint changes under load, a rejected config, an edge whose sshd is
//! down, a wrong host or client key, a failed reload rolled back) written once, generic over
//! the deployer, and run on the network-namespace [`testbed`](crate::testbed).
//!
//! A deployer joins the suite with one [`DeployerUnderTest`] factory (how to build it for a
//! testbed, with the right keys and with wrong ones) and one line in
//! `tests/tests/conformance.rs`; every [`Scenario`] then runs against it. Outcomes are
//! compared as the typed [`DeployError`](edgelb_core::DeployError)s every deployer must
//! return; where deployers legitimately differ (how an endpoint-only change goes live) the
//! factory says what it does and the scenario accepts that.

mod arbitrary_uid;
pub mod local;
mod outcomes;
mod scenarios;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use edgelb_ansible::AnsibleDeployer;
use edgelb_core::{Applied, Deployer};
use edgelb_haproxy::SshDeployer;
use edgelb_haproxy::ssh::{ClientKey, KnownHosts, SshCredentials};

use crate::testbed::ansible::ansible_playbook_or_skip;
use crate::testbed::{KeyPair, Testbed, Tools};

pub use arbitrary_uid::{ARBITRARY_UID, AnsibleAsArbitraryUid};
pub use scenarios::Scenario;

/// A deployer the suite can run against: how to build it for a testbed, and what it does
/// where deployers may differ.
pub trait DeployerUnderTest: Sync {
    /// A short name for messages (`ssh`, `ansible`).
    fn name(&self) -> &'static str;

    /// Whether the deployer can run here beyond what the testbed needs; prints why not (and
    /// panics when `CI` is set). Called before the testbed is built.
    fn available_or_skip(&self, _test: &str) -> bool {
        true
    }

    /// The deployer for `tb`'s edges: our client key, every edge's host key pinned.
    fn deployer(&self, tb: &Testbed) -> Arc<dyn Deployer>;

    /// The same, but pinning exactly `known_hosts` (known_hosts lines).
    fn with_known_hosts(&self, tb: &Testbed, known_hosts: &[String]) -> Arc<dyn Deployer>;

    /// The same, logging in with `key` (e.g. [`Testbed::stranger_key`]).
    fn with_client_key(&self, tb: &Testbed, key: &KeyPair) -> Arc<dyn Deployer>;

    /// Nodes per `deploy()` call to give the pipeline.
    fn batch_size(&self) -> usize;

    /// How an endpoint-only change may go live. The native deployers apply it through the
    /// runtime API (`RuntimeUpdated`) and fall back to a validated reload when the runtime
    /// state does not match; Ansible always reloads.
    fn endpoint_change_outcomes(&self) -> &'static [Applied];

    /// A generous bound on one `deploy()` over a few edges, for the scenarios' waits.
    fn deploy_time(&self) -> Duration;

    /// The interval of the load loop of the endpoint-changes scenario, in ms: a modest rate
    /// for slow deployers keeps the number of connections (and the run time) bounded.
    fn load_interval_ms(&self) -> u64;
}

/// The native SSH deployer ([`SshDeployer`]) with [`Testbed::deployer_config`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SshUnderTest;

impl SshUnderTest {
    fn with_credentials(tb: &Testbed, credentials: SshCredentials) -> Arc<dyn Deployer> {
        let mut config = tb.deployer_config();
        config.default_credentials = Some(credentials);
        Arc::new(SshDeployer::new(config).expect("ssh deployer config is valid"))
    }
}

impl DeployerUnderTest for SshUnderTest {
    fn name(&self) -> &'static str {
        "ssh"
    }

    fn deployer(&self, tb: &Testbed) -> Arc<dyn Deployer> {
        Arc::new(SshDeployer::new(tb.deployer_config()).expect("ssh deployer config is valid"))
    }

    fn with_known_hosts(&self, tb: &Testbed, known_hosts: &[String]) -> Arc<dyn Deployer> {
        let key = ClientKey::from_file(&tb.key.private, None).expect("client key loads");
        let pins = KnownHosts::parse(&known_hosts.join("\n")).expect("known_hosts parse");
        Self::with_credentials(tb, SshCredentials::new(key, pins))
    }

    fn with_client_key(&self, tb: &Testbed, key: &KeyPair) -> Arc<dyn Deployer> {
        let key = ClientKey::from_file(&key.private, None).expect("client key loads");
        Self::with_credentials(tb, SshCredentials::new(key, tb.known_hosts()))
    }

    fn batch_size(&self) -> usize {
        1
    }

    fn endpoint_change_outcomes(&self) -> &'static [Applied] {
        &[Applied::RuntimeUpdated, Applied::Reloaded]
    }

    fn deploy_time(&self) -> Duration {
        Duration::from_secs(30)
    }

    fn load_interval_ms(&self) -> u64 {
        5
    }
}

/// The Ansible deployer ([`AnsibleDeployer`]) with [`Testbed::ansible_deployer_config`]:
/// `ansible-playbook` on `PATH` or in `target/venv`.
#[derive(Debug, Clone, Default)]
pub struct AnsibleUnderTest {
    pub(crate) playbook: std::sync::OnceLock<PathBuf>,
}

impl AnsibleUnderTest {
    fn build(&self, config: edgelb_ansible::AnsibleDeployerConfig) -> Arc<dyn Deployer> {
        Arc::new(AnsibleDeployer::new(config).expect("ansible deployer config is valid"))
    }

    pub(crate) fn config(&self, tb: &Testbed) -> edgelb_ansible::AnsibleDeployerConfig {
        let playbook = self
            .playbook
            .get()
            .cloned()
            .or_else(crate::testbed::ansible::find_ansible_playbook)
            .expect("ansible-playbook was found before the testbed started");
        tb.ansible_deployer_config(playbook)
    }
}

impl DeployerUnderTest for AnsibleUnderTest {
    fn name(&self) -> &'static str {
        "ansible"
    }

    fn available_or_skip(&self, test: &str) -> bool {
        match ansible_playbook_or_skip(test) {
            Some(path) => {
                let _ = self.playbook.set(path);
                true
            }
            None => false,
        }
    }

    fn deployer(&self, tb: &Testbed) -> Arc<dyn Deployer> {
        self.build(self.config(tb))
    }

    fn with_known_hosts(&self, tb: &Testbed, known_hosts: &[String]) -> Arc<dyn Deployer> {
        self.build(edgelb_ansible::AnsibleDeployerConfig {
            known_hosts: known_hosts.to_vec(),
            ..self.config(tb)
        })
    }

    fn with_client_key(&self, tb: &Testbed, key: &KeyPair) -> Arc<dyn Deployer> {
        self.build(edgelb_ansible::AnsibleDeployerConfig {
            private_key_file: Some(key.private.clone()),
            ..self.config(tb)
        })
    }

    fn batch_size(&self) -> usize {
        // One playbook run for every node (AnsibleDeployer::batch_size).
        usize::MAX
    }

    fn endpoint_change_outcomes(&self) -> &'static [Applied] {
        &[Applied::Reloaded]
    }

    fn deploy_time(&self) -> Duration {
        Duration::from_secs(60)
    }

    fn load_interval_ms(&self) -> u64 {
        40
    }
}

/// Runs `scenario` against `dut` on a testbed of its own; skipped (with a message) when the
/// testbed or the deployer cannot run here, failed instead when `CI` is set.
pub async fn run(dut: &dyn DeployerUnderTest, scenario: Scenario, tools: Tools) {
    let test = format!("conformance::{}::{}", dut.name(), scenario.name());
    if !dut.available_or_skip(&test) {
        return;
    }
    let Some(tb) = Testbed::start_or_skip(&test, scenario.testbed(), tools) else {
        return;
    };
    let started = std::time::Instant::now();
    scenario.run(dut, tb).await;
    eprintln!("{test}: passed in {:.1}s", started.elapsed().as_secs_f64());
}
