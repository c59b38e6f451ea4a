//! Runs every example program, as CI must: each exits non-zero when what it shows does not
//! happen. Each run is bounded in time; the haproxy ones are skipped without haproxy, except
//! in CI (`CI` set), where a missing haproxy fails them.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Far above what any example needs (a few seconds), on a loaded 2-core machine too.
const LIMIT: Duration = Duration::from_secs(120);

fn run(name: &str, program: &str) {
    let started = Instant::now();
    let mut child = Command::new(program)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: cannot start {program}: {e}"));
    // Drained on threads of their own, so a chatty program never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => panic!("{name}: cannot wait for it: {e}"),
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (stdout.join(), stderr.join());
    assert!(
        status.success(),
        "{name} failed: {status}\n--- stdout\n{}\n--- stderr\n{}",
        stdout.unwrap_or_default(),
        stderr.unwrap_or_default()
    );
}

/// Whether a haproxy example can run here; panics in CI when it cannot.
fn haproxy_or_skip(name: &str) -> bool {
    if edgelb_examples::haproxy_installed() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{name}: haproxy is missing (apt-get install haproxy)"
    );
    eprintln!("SKIP {name}: haproxy is not installed (apt-get install haproxy)");
    false
}

#[test]
fn own_source() {
    run("own_source", env!("CARGO_BIN_EXE_own_source"));
}

#[test]
fn mocked_deployer() {
    run("mocked_deployer", env!("CARGO_BIN_EXE_mocked_deployer"));
}

#[test]
fn simulated_edges() {
    run("simulated_edges", env!("CARGO_BIN_EXE_simulated_edges"));
}

#[test]
fn local_deployer() {
    if haproxy_or_skip("local_deployer") {
        run("local_deployer", env!("CARGO_BIN_EXE_local_deployer"));
    }
}

#[test]
fn own_edge_host() {
    if haproxy_or_skip("own_edge_host") {
        run("own_edge_host", env!("CARGO_BIN_EXE_own_edge_host"));
    }
}
