//! The start every harness-less benchmark shares: the `--list` probe, its knobs from the
//! environment, the runtime it measures on and its testbed; and the timed deploy they all
//! measure.

use std::time::Instant;

use edgelb_core::{Applied, Deployer, NodeConfig};

use crate::testbed::{Testbed, TestbedConfig, Tools, prereq};

/// Whether cargo only asks for the bench's tests (`cargo test --benches` runs harness-less
/// benches with `--list`): a bench then returns at once.
pub fn listing_only() -> bool {
    std::env::args().any(|a| a == "--list")
}

/// The number in the environment variable `name`; `default` when it is unset or not a number.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The Tokio runtime the benches measure on: two workers, as the controller runs.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A testbed of `config`'s size; `None` after printing `{what} skipped: missing …` when this
/// machine lacks what a testbed needs (a bench is not a CI gate, so it skips, never fails).
pub fn testbed_or_skip(what: &str, config: TestbedConfig, tools: Tools) -> Option<Testbed> {
    let missing = prereq::missing();
    if !missing.is_empty() {
        println!("{what} skipped: missing {}", missing.join("; "));
        return None;
    }
    Some(Testbed::start(config, tools).unwrap())
}

/// One `deploy()` of `batch`, in ms; every outcome must be one of `expected`.
pub async fn timed_deploy(
    deployer: &dyn Deployer,
    batch: &[NodeConfig],
    expected: &[Applied],
) -> f64 {
    let started = Instant::now();
    let outcomes = deployer.deploy(batch).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(outcomes.len(), batch.len());
    for outcome in &outcomes {
        assert!(
            outcome
                .result
                .as_ref()
                .is_ok_and(|applied| expected.contains(applied)),
            "{outcome:?}"
        );
    }
    ms
}
