//! The deployer conformance suite (`edgelb_tests::conformance`): every scenario against
//! every deployer, on the network-namespace testbed. A new deployer gets the whole suite with
//! one `DeployerUnderTest` factory and one `conformance!` line below.
//!
//! Needs root and the testbed's packages; the Ansible part also `ansible-playbook` (on `PATH`
//! or in `target/venv`). Skipped with a message without them, failed when `CI` is set.
//!
//! The local deployer runs the scenarios that apply to one local host (`local` at the end;
//! see `edgelb_tests::conformance::local` for why the others do not apply).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use edgelb_tests::conformance::{
    AnsibleAsArbitraryUid, AnsibleUnderTest, DeployerUnderTest, Scenario, run,
};
use edgelb_tests::testbed_tools;

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDGELB_TEST_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

async fn check(dut: &dyn DeployerUnderTest, scenario: Scenario) {
    init_logs();
    run(dut, scenario, testbed_tools!()).await;
}

/// A new scenario does not compile until it has a test in `conformance!` below (add it there,
/// then here).
fn _every_scenario_has_a_test(scenario: Scenario) {
    match scenario {
        Scenario::RealClientIp
        | Scenario::EndpointChangesUnderLoad
        | Scenario::RejectedConfig
        | Scenario::SshdDown
        | Scenario::WrongKeys
        | Scenario::FailedReloadRolledBack => {}
    }
}

/// One module per deployer, one test per scenario (so each runs on a testbed of its own and
/// fails on its own).
macro_rules! conformance {
    ($deployer:ident, $factory:expr) => {
        mod $deployer {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn real_client_ip_through_three_edges() {
                check(&$factory, Scenario::RealClientIp).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn endpoint_changes_under_load_drop_nothing() {
                check(&$factory, Scenario::EndpointChangesUnderLoad).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rejected_config_changes_nothing() {
                check(&$factory, Scenario::RejectedConfig).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn edge_with_sshd_down_converges_after_it_returns() {
                check(&$factory, Scenario::SshdDown).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn wrong_host_key_or_client_key_is_refused() {
                check(&$factory, Scenario::WrongKeys).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn failed_reload_is_rolled_back() {
                check(&$factory, Scenario::FailedReloadRolledBack).await;
            }
        }
    };
}

conformance!(ssh, edgelb_tests::conformance::SshUnderTest);
conformance!(ansible, AnsibleUnderTest::default());
// Ansible from a pod with a random UID: no passwd entry, nothing writable but its own directory.
conformance!(ansible_arbitrary_uid, AnsibleAsArbitraryUid::default());

/// The local deployer ([`edgelb_haproxy::LocalDeployer`]) against an HAProxy it starts in a
/// temporary directory: the scenarios that apply to one local host.
mod local {
    use edgelb_tests::conformance::local;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rejected_config_changes_nothing() {
        super::init_logs();
        local::rejected_config("conformance::local::rejected_config_changes_nothing").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_reload_is_rolled_back() {
        super::init_logs();
        local::failed_reload_rolled_back("conformance::local::failed_reload_is_rolled_back").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hand_edit_between_deploys_is_repaired() {
        super::init_logs();
        local::hand_edit_between_deploys_repaired(
            "conformance::local::a_hand_edit_between_deploys_is_repaired",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_start_carries_haproxys_reason() {
        super::init_logs();
        local::start_failure_says_why("conformance::local::a_failed_start_carries_haproxys_reason")
            .await;
    }
}
