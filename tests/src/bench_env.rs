//! The start every harness-less benchmark shares: the `--list` probe, its knobs from the
//! environment, the runtime it measures on and its testbed.

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
