//! What a newcomer meets first: a closed stdout, plain logs in pipes, errors that say what to
//! do, `render` output `haproxy -c` reads, and `plan` showing the empty-backend hold.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly on a failed step

mod support;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use support::*;

/// A config with `edges` local-deployer-free edges (SSH, never reached by these commands)
/// or, with `edges == 0`, one local edge whose live file is `dir/haproxy.cfg`.
fn setup(dir: &Path, edges: usize) -> PathBuf {
    write_endpoints(
        &dir.join("endpoints.yaml"),
        8080,
        &["127.0.0.1:9001".parse().unwrap()],
    );
    let config = dir.join("edgelb.yaml");
    let text = if edges == 0 {
        format!(
            "source: {{file: endpoints.yaml}}\nedges: [{{name: local}}]\n\
             deployer:\n  local: {{config_path: {0}/haproxy.cfg, master_socket: {0}/master.sock}}\n\
             haproxy: {{stats_socket: {0}/admin.sock, socket_dirs: [{0}]}}\n",
            dir.display()
        )
    } else {
        let list: Vec<String> = (1..=edges)
            .map(|i| format!("  - {{name: edge-{i}, ssh: {{host: 192.0.2.{i}}}}}\n"))
            .collect();
        format!(
            "source: {{file: endpoints.yaml}}\nedges:\n{}deployer:\n  ssh: {{key: k, known_hosts: kh}}\n",
            list.concat()
        )
    };
    std::fs::write(&config, text).unwrap();
    config
}

fn mkdir(path: PathBuf) -> PathBuf {
    std::fs::create_dir_all(&path).unwrap();
    path
}

/// Runs edgelb with its stdout a pipe whose reader is already gone.
fn with_closed_stdout(args: &[&str], config: &Path) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    edgelb()
        .args(args)
        .arg("--config")
        .arg(config)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn no_command_panics_on_a_closed_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let local = setup(dir.path(), 0);
    let many = setup(&mkdir(dir.path().join("many")), 2);
    for (args, config) in [
        (&["plan"][..], &local),
        (&["check", "--haproxy", "/nonexistent/haproxy"][..], &local),
        (&["render"][..], &local),
        (&["render"][..], &many),
    ] {
        let out = with_closed_stdout(args, config);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(101), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
    }
}

#[test]
fn logs_carry_no_colour_into_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), 0);
    // A bad log filter makes edgelb log a warning through tracing at once.
    let out = edgelb()
        .args(["--log-level", "[", "render", "--config"])
        .arg(&config)
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid log filter"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in a pipe: {stderr:?}"
    );
}

#[test]
fn render_prints_one_edge_as_a_plain_file_and_names_the_edges_on_a_typo() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), 2);
    let render = |extra: &[&str]| {
        edgelb()
            .arg("render")
            .args(extra)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    let one = render(&["--node", "edge-2"]);
    let text = String::from_utf8(one.stdout).unwrap();
    assert!(text.starts_with("# edgelb-digest: sha256:"), "{text}");
    assert!(!text.contains("### node"), "{text}");

    let all = String::from_utf8(render(&[]).stdout).unwrap();
    assert!(
        all.starts_with("### node edge-1\n") && all.contains("\n### node edge-2\n"),
        "{all}"
    );

    let typo = render(&["--node", "edge-9"]);
    let err = String::from_utf8_lossy(&typo.stderr);
    assert!(!typo.status.success());
    assert!(
        err.contains("no edge named \"edge-9\"") && err.contains("the edges are: edge-1, edge-2"),
        "{err}"
    );

    // A one-edge config needs no --node to be a plain file.
    let single = setup(&mkdir(dir.path().join("single")), 0);
    let out = edgelb()
        .args(["render", "--config"])
        .arg(&single)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("# edgelb-digest: sha256:"), "{text}");
}

#[test]
fn an_endpoints_file_as_config_and_a_host_name_as_address_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), 0);
    let out = edgelb()
        .args(["check", "--config"])
        .arg(dir.path().join("endpoints.yaml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("this looks like an endpoints file"), "{err}");

    let out = edgelb()
        .args(["run", "--http-listen", "localhost:9090", "--config"])
        .arg(dir.path().join("edgelb.yaml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("is not an IP:PORT address"), "{err}");
}

#[test]
fn a_listen_port_claimed_twice_is_reported_once_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), 0);
    let endpoints = dir.path().join("endpoints.yaml");
    std::fs::write(
        &endpoints,
        "services:\n  - name: web\n    ports: [{name: http, listen: 8080}]\n  - name: api\n    ports:\n      - name: http\n        listen: 8080\n",
    )
    .unwrap();
    let out = edgelb()
        .args(["render", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(
        err.trim_end(),
        format!(
            "edgelb: {}: services[1].ports[0] (line 7): listen port 8080 is claimed by both default/web:http and default/api:http; give one of them another listen port",
            endpoints.display()
        )
    );
}

#[test]
fn plan_shows_the_empty_backend_hold_as_run_applies_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), 0);
    // The edge runs the config with 127.0.0.1:9001 (as `run` would have put live).
    let out = edgelb()
        .args(["render", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(dir.path().join("haproxy.cfg"), &out.stdout).unwrap();
    let plan = || {
        let out = edgelb()
            .args(["plan", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(plan().0, Some(0), "{}", plan().1);

    // The source now has no endpoints for the backend: `run` holds them for 10 s.
    write_endpoints(&dir.path().join("endpoints.yaml"), 8080, &[]);
    let (code, text) = plan();
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("=== local: in sync")
            && text.contains("held: demo/web:tcp")
            && text.contains("empty_backend_hold, 10s"),
        "{text}"
    );

    // With the hold off, the removal shows.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}pipeline: {{empty_backend_hold: 0ms}}\n"),
    )
    .unwrap();
    let (code, text) = plan();
    assert_eq!(code, Some(2), "{text}");
    assert!(
        !text.contains("held:") && text.contains("-    server s001 127.0.0.1:9001"),
        "{text}"
    );
}

#[test]
fn render_and_check_agree_on_a_kubernetes_source_without_a_cluster() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/configmap.yaml");
    let out = edgelb()
        .args(["render", "--config"])
        .arg(&manifest)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("no cluster to read from; rendering an empty state"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("# edgelb-digest:"));
}

#[test]
fn a_demo_backend_on_a_taken_port_fails_and_says_where() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = edgelb()
        .args(["demo-backend", "--listen"])
        .arg(addr.to_string())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("listening on {addr}")), "{err}");
}
