//! `edgelb check` and `edgelb render` on the shipped examples and on broken configs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly on a failed step

mod support;

use std::path::PathBuf;

use support::*;

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".yaml") && !name.contains("endpoints")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

#[test]
fn every_example_passes_check_including_haproxy_c() {
    let with_haproxy = haproxy_or_skip("every_example_passes_check_including_haproxy_c");
    for file in examples() {
        let out = edgelb()
            .arg("check")
            .arg("--config")
            .arg(&file)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {stdout}{}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        if with_haproxy {
            assert!(stdout.contains("ok    haproxy -c"), "{stdout}");
        }
    }
}

#[test]
fn render_prints_a_config_with_its_digest_line() {
    let out = edgelb()
        .args(["render", "--node", "local", "--config"])
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("# edgelb-digest: sha256:"), "{text}");
    assert!(text.contains("send-proxy-v2"), "{text}");
}

#[test]
fn a_bad_config_fails_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(&cfg, "source: {file: e.yaml}\nedges: [{name: a}]\ndeployer: {local: {}}\nhaproxy:\n  balanse: leastconn\n").unwrap();
    let out = edgelb()
        .arg("check")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml: haproxy.balanse: unknown field") && err.contains("line 5"),
        "{err}"
    );
}

#[test]
fn a_bad_endpoint_address_fails_check_and_renders_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("e.yaml"),
        "services:\n  - name: web\n    ports: [{name: http, listen: 80, endpoints: [\"10.0.0.1:80\\nbind :22\"]}]\n",
    )
    .unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "source: {file: e.yaml}\nedges: [{name: a}]\ndeployer: {local: {}}\n",
    )
    .unwrap();
    for cmd in ["check", "render"] {
        let out = edgelb()
            .arg(cmd)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{cmd} accepted a bad address");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("invalid endpoint address") && err.contains("line 3"),
            "{err}"
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("bind :22"));
    }
}

#[test]
fn check_covers_the_deployment_configmap_offline() {
    let with_haproxy = haproxy_or_skip("check_covers_the_deployment_configmap_offline");
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/configmap.yaml");
    let out = edgelb()
        .arg("check")
        .arg("--config")
        .arg(&manifest)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("skip  source: no cluster"), "{stdout}");
    if with_haproxy {
        assert!(stdout.contains("ok    haproxy -c edge-1"), "{stdout}");
    }
}
