//! The kind suite (tests/kind/run.sh): edgelb in a real cluster, deploying to an edge
//! container, with a request checked for its client address. Needs Docker with a running
//! engine, kind and kubectl (and network access to pull Traefik, whoami and curl images), so
//! it is `#[ignore]`d; run it with
//!
//! ```text
//! cargo test -p edgelb-tests --test kind -- --ignored --nocapture
//! ```
//!
//! Where a prerequisite is missing it prints why and passes without running.

use std::path::Path;
use std::process::Command;

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// Why the suite cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    for tool in ["docker", "kind", "kubectl", "ssh-keygen"] {
        if !on_path(tool) {
            return Some(format!("{tool} is not installed"));
        }
    }
    let engine = Command::new("docker").arg("info").output();
    if !engine.is_ok_and(|o| o.status.success()) {
        return Some("no Docker engine answers (`docker info` failed)".to_owned());
    }
    None
}

#[test]
#[ignore = "needs Docker with a running engine, kind and kubectl; see tests/kind/README.md"]
fn kind_suite() {
    if let Some(why) = missing_prerequisite() {
        println!("SKIPPED kind suite: {why}; see tests/kind/README.md");
        eprintln!("SKIPPED kind suite: {why}; see tests/kind/README.md");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("kind/run.sh");
    let status = Command::new("bash")
        .arg(&script)
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    match status.code() {
        Some(0) => {}
        Some(77) => println!(
            "SKIPPED kind suite: {} reported a missing prerequisite",
            script.display()
        ),
        _ => panic!("the kind suite failed ({status}); its output is above"),
    }
}
