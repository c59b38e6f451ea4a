//! The kind suite (tests/kind/run.sh): edgelb in a real cluster, deploying to an edge
//! container, with a request checked for its client address. Needs Docker with a running
//! engine, kind and kubectl (and network access to pull Traefik, whoami and curl images), so
//! it is `#[ignore]`d; run it with
//!
//! ```text
//! cargo test -p edgelb-tests --test kind -- --ignored --nocapture
//! ```
//!
//! Asked for explicitly (`--ignored`), it fails when a prerequisite is missing, naming it: a
//! suite that did not run must not read as passed. The edge image's `sshd_config` is checked
//! against the SSH deployer's prerequisites on every `cargo test` (it needs nothing).

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
    let buildkit = Command::new("docker").args(["buildx", "version"]).output();
    if !buildkit.is_ok_and(|o| o.status.success()) {
        return Some(
            "BuildKit (docker buildx) is missing; the Dockerfile's cache mounts need it".to_owned(),
        );
    }
    None
}

#[test]
#[ignore = "needs Docker with a running engine, kind and kubectl; see tests/kind/README.md"]
fn kind_suite() {
    if let Some(why) = missing_prerequisite() {
        panic!("the kind suite cannot run: {why}; see tests/kind/README.md");
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("kind/run.sh");
    let status = Command::new("bash")
        .arg(&script)
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    match status.code() {
        Some(0) => {}
        Some(77) => panic!(
            "the kind suite did not run: {} reported a missing prerequisite (above)",
            script.display()
        ),
        _ => panic!("the kind suite failed ({status}); its output is above"),
    }
}

/// The edge image's sshd must allow what the SSH deployer needs (UNIX-socket forwarding only
/// works with TCP forwarding allowed too): `AllowTcpForwarding no` once made the suite
/// unpassable.
#[test]
fn the_kind_edge_sshd_config_meets_the_deployers_prerequisites() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("kind/edge/sshd_config");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let problems = edgelb_haproxy::ssh::sshd_config_problems(&text);
    assert!(problems.is_empty(), "{}: {problems:#?}", path.display());
}

/// `run.sh` parses as bash (it cannot be run here: no Docker).
#[test]
fn the_kind_script_parses() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("kind/run.sh");
    let status = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap_or_else(|e| panic!("running bash -n: {e}"));
    assert!(status.success(), "bash -n {}: {status}", script.display());
}

/// The image reference run.sh is given becomes kustomize's `images:` fields: a registry's
/// `:port` is not a tag, no tag means `latest`, a digest stays a digest.
#[test]
fn image_references_split_into_name_and_tag() {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("kind/lib.sh");
    let fields = |image: &str| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(". \"$0\" && image_fields \"$1\"")
            .arg(&lib)
            .arg(image)
            .output()
            .unwrap_or_else(|e| panic!("running bash: {e}"));
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for (image, name, rest) in [
        ("edgelb:kind", "edgelb", "newTag: \"kind\""),
        ("edgelb", "edgelb", "newTag: \"latest\""),
        (
            "localhost:5000/edgelb",
            "localhost:5000/edgelb",
            "newTag: \"latest\"",
        ),
        (
            "localhost:5000/edgelb:dev",
            "localhost:5000/edgelb",
            "newTag: \"dev\"",
        ),
        (
            "ghcr.io/o/edgelb@sha256:0123",
            "ghcr.io/o/edgelb",
            "digest: \"sha256:0123\"",
        ),
    ] {
        assert_eq!(
            fields(image),
            format!("    newName: {name}\n    {rest}\n"),
            "{image}"
        );
    }
}

/// The shell scripts (quick start, test runner, kind suite) pass shellcheck, which
/// scripts/test installs; elsewhere the test is skipped without it.
#[test]
fn the_shell_scripts_pass_shellcheck() {
    if !on_path("shellcheck") {
        assert!(
            std::env::var_os("CI").is_none(),
            "shellcheck is missing; run scripts/test (it installs it)"
        );
        eprintln!("SKIP: shellcheck is not installed (apt-get install shellcheck)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("shellcheck")
        .current_dir(&root)
        .args([
            "-x",
            "scripts/quickstart",
            "scripts/test",
            "tests/kind/run.sh",
            "tests/kind/lib.sh",
            "tests/kind/edge/entrypoint.sh",
        ])
        .output()
        .unwrap_or_else(|e| panic!("running shellcheck: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
