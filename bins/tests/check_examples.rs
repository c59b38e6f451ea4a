//! `edgelb check` and `edgelb render` on the shipped examples and on broken configs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly on a failed step

mod support;

use std::path::{Path, PathBuf};

use support::*;

/// The shipped examples, copied into `dir` with a generated deploy key and a known_hosts file
/// that pins a key for every edge they name (the examples' `keys/` is the user's to fill).
/// `None` without ssh-keygen (outside CI).
fn examples_with_keys(dir: &Path) -> Option<Vec<PathBuf>> {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let public = keygen(&keys.join("id_ed25519"))?;
    let mut known_hosts = String::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue; // examples/embedding: the Rust embedding examples, not configs
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let copy = dir.join(&name);
        std::fs::copy(&path, &copy).unwrap();
        if name.ends_with(".yaml") && !name.contains("endpoints") {
            let doc: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            for edge in doc["edges"].as_sequence().unwrap() {
                let ssh = &edge["ssh"];
                if let Some(host) = ssh["host"].as_str() {
                    // As ssh-keyscan writes them: the bare host for port 22.
                    match ssh["port"].as_u64().unwrap_or(22) {
                        22 => known_hosts.push_str(&format!("{host} {public}\n")),
                        port => known_hosts.push_str(&format!("[{host}]:{port} {public}\n")),
                    }
                }
            }
            files.push(copy);
        }
    }
    std::fs::write(keys.join("known_hosts"), known_hosts).unwrap();
    files.sort();
    assert!(!files.is_empty());
    Some(files)
}

#[test]
fn every_example_passes_check_including_haproxy_c() {
    let with_haproxy = haproxy_or_skip("every_example_passes_check_including_haproxy_c");
    let dir = tempfile::tempdir().unwrap();
    let Some(files) = examples_with_keys(dir.path()) else {
        return;
    };
    for file in files {
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
fn check_fails_on_a_missing_key_or_an_unpinned_edge() {
    let dir = tempfile::tempdir().unwrap();
    let Some(files) = examples_with_keys(dir.path()) else {
        return;
    };
    let ssh = files
        .iter()
        .find(|f| f.ends_with("ssh-edges.yaml"))
        .unwrap();
    let check = || {
        let out = edgelb()
            .args(["check", "--haproxy", "/nonexistent/haproxy", "--config"])
            .arg(ssh)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, text) = check();
    assert!(ok, "{text}");
    assert!(
        text.contains("ok    deploy key")
            && text.contains("a key is pinned for edge-2 [192.0.2.12]:2222"),
        "{text}"
    );

    // edge-2's line goes: check names the edge and says how to pin it.
    let known_hosts = dir.path().join("keys/known_hosts");
    let pins = std::fs::read_to_string(&known_hosts).unwrap();
    let without: String = pins
        .lines()
        .filter(|l| !l.starts_with("[192.0.2.12]:2222 "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&known_hosts, without).unwrap();
    let (ok, text) = check();
    assert!(!ok, "{text}");
    assert!(
        text.contains("FAIL  known_hosts")
            && text.contains("no key is pinned for edge-2 [192.0.2.12]:2222")
            && text.contains("ssh-keyscan -p 2222 -t ed25519 192.0.2.12"),
        "{text}"
    );

    // The key goes: check says so instead of "all is well".
    std::fs::remove_file(dir.path().join("keys/id_ed25519")).unwrap();
    let (ok, text) = check();
    assert!(!ok, "{text}");
    assert!(
        text.contains("FAIL  deploy key") && text.contains("id_ed25519"),
        "{text}"
    );
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
    // The quick start listens on loopback only, not on every interface.
    assert!(
        text.contains("bind 127.0.0.1:8080") && !text.contains("bind :8080"),
        "{text}"
    );
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
    // The key and known_hosts are the pod's (its Secret), not this machine's.
    assert!(
        stdout.contains("skip  /etc/edgelb/ssh/id_ed25519: read in the pod")
            && stdout.contains("skip  /etc/edgelb/ssh/known_hosts: read in the pod"),
        "{stdout}"
    );
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
