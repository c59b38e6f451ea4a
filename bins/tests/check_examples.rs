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

/// `edgelb check` on hostile endpoints files: each is refused, with a clear single-line
/// error naming the file, where `run` used to hang, exhaust memory or misbehave later.
#[test]
fn check_refuses_hostile_endpoints_files_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let eps = dir.path().join("eps.yaml");
    let fifo = dir.path().join("eps.fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let bomb = {
        let list: Vec<String> = (0..20_000)
            .map(|i| format!("\"10.0.{}.{}:80\"", i / 250, i % 250 + 1))
            .collect();
        let mut text = format!(
            "services:\n  - name: s0\n    ports:\n      - {{name: p0, listen: 1, endpoints: &a [{}]}}\n",
            list.join(", ")
        );
        for j in 1..=500 {
            text.push_str(&format!(
                "      - {{name: p{j}, listen: {}, endpoints: *a}}\n",
                j + 1
            ));
        }
        text
    };
    let cases: Vec<(&str, Option<String>, PathBuf, &str)> = vec![
        ("empty", Some(String::new()), eps.clone(), "the file is empty"),
        ("alias bomb", Some(bomb), eps.clone(), "alias replay limit"),
        (
            "nesting",
            Some(format!("services: {}\n", "[".repeat(160_000))),
            eps.clone(),
            "32 levels",
        ),
        (
            "same port name twice",
            Some("services:\n  - name: web\n    ports:\n      - {name: http, listen: 80}\n      - {name: http, listen: 81}\n".into()),
            eps.clone(),
            "is used twice",
        ),
        ("FIFO", None, fifo, "not a regular file"),
        ("device", None, PathBuf::from("/dev/zero"), "not a regular file"),
    ];
    let config = dir.path().join("edgelb.yaml");
    for (what, content, file, expected) in cases {
        if let Some(text) = content {
            std::fs::write(&file, text).unwrap();
        }
        std::fs::write(
            &config,
            format!(
                "source: {{file: {}}}\nedges: [{{name: local}}]\ndeployer: {{local: {{}}}}\n",
                file.display()
            ),
        )
        .unwrap();
        let out = edgelb()
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: check passed");
        let line = stderr
            .lines()
            .find(|l| l.contains(expected))
            .unwrap_or_else(|| panic!("{what}: expected {expected:?} in: {stderr}"));
        assert!(line.contains(&file.display().to_string()), "{what}: {line}");
    }
}
