//! `edgelb run` with the file source and the local deployer against a real HAProxy: the quick
//! start's promise, checked end to end.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly on a failed step

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::*;
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_keeps_a_local_haproxy_in_sync_with_the_endpoints_file() {
    if !haproxy_or_skip("run_keeps_a_local_haproxy_in_sync_with_the_endpoints_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut backends = Vec::new();
    for name in ["alpha", "beta"] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        backends.push(listener.local_addr().unwrap());
        tokio::spawn(edgelb_haproxy::demo_backend::serve(listener, name.into()));
    }
    let listen = free_port();
    let http = free_port();
    let front: SocketAddr = ([127, 0, 0, 1], listen).into();
    let endpoints = dir.path().join("endpoints.yaml");
    write_endpoints(&endpoints, listen, &backends[..1]);
    let state = dir.path().display();
    let config = dir.path().join("edgelb.yaml");
    std::fs::write(
        &config,
        format!(
            "source: {{file: endpoints.yaml}}\n\
             edges: [{{name: local}}]\n\
             deployer:\n  local: {{config_path: {state}/haproxy.cfg, master_socket: {state}/master.sock, start_haproxy: true}}\n\
             haproxy: {{stats_socket: {state}/admin.sock, socket_dirs: [{state}]}}\n\
             pipeline: {{debounce: 50ms, resync: 5s}}\n\
             http: {{listen: \"127.0.0.1:{http}\"}}\n"
        ),
    )
    .unwrap();

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_edgelb"))
        .args(["run", "--config"])
        .arg(&config)
        .env("EDGELB_LOG", "info")
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // If the test fails half-way, take the haproxy that edgelb started down with it.
    let _group = KillGroupOnDrop(child.id().unwrap());

    // Traffic flows, and the backend sees our own address through PROXY v2.
    let first = wait_for_backend(front, "alpha", Duration::from_secs(20)).await;
    let (_, client, proxy, local) = ask(front).await.unwrap();
    assert_eq!((client, proxy.as_str()), (local, "v2"));
    eprintln!("first config live and serving after {first:?}");

    // Health, readiness and metrics.
    let get = |path: &'static str| http_get(([127, 0, 0, 1], http).into(), path);
    assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
    let ready = get("/readyz").await;
    assert!(
        ready.starts_with("HTTP/1.1 200") && ready.contains("1/1 edges"),
        "{ready}"
    );
    let metrics = get("/metrics").await;
    for series in [
        "edgelb_deploys_total{node=\"local\",result=\"reloaded\"} 1",
        "edgelb_node_in_sync{node=\"local\"} 1",
        "edgelb_endpoints{service=\"demo/web\",port=\"tcp\"} 1",
        "edgelb_convergence_seconds_count{node=\"local\"} 1",
        "edgelb_leader 1",
    ] {
        assert!(metrics.contains(series), "missing {series} in\n{metrics}");
    }

    // An edit re-routes traffic.
    let edited = Instant::now();
    write_endpoints(&endpoints, listen, &backends[1..]);
    let rerouted = wait_for_backend(front, "beta", Duration::from_secs(5)).await;
    eprintln!(
        "endpoints edit → traffic on the new backend in {rerouted:?} (edit at {:?})",
        edited.elapsed()
    );

    // A broken edit is refused; the running config keeps serving.
    std::fs::write(&endpoints, "services:\n  - name: web\n    ports: [{name: tcp, listen: 1, endpoints: [\"not-an-ip:80\"]}]\n").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(ask(front).await.map(|a| a.0).as_deref(), Some("beta"));
    let live = std::fs::read_to_string(dir.path().join("haproxy.cfg")).unwrap();
    assert!(
        !live.contains("not-an-ip"),
        "a bad edit must never be written"
    );

    // Back to a good file (the same state as before the broken edit).
    write_endpoints(&endpoints, listen, &backends[1..]);

    // `plan`: nothing to do; a hand edit shows as a diff (exit 2) until the resync repairs it.
    let plan = || {
        edgelb()
            .args(["plan", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let out = plan();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let live_path = dir.path().join("haproxy.cfg");
    let edited = std::fs::read_to_string(&live_path)
        .unwrap()
        .replace("balance roundrobin", "balance leastconn");
    std::fs::write(&live_path, edited).unwrap();
    let out = plan();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("=== local: would change")
            && text.contains("-    balance leastconn")
            && text.contains("+    balance roundrobin"),
        "{text}"
    );
    let repaired = Instant::now();
    while plan().status.code() != Some(0) {
        assert!(
            repaired.elapsed() < Duration::from_secs(15),
            "the resync did not repair the hand edit"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "hand edit repaired by the resync after {:?}",
        repaired.elapsed()
    );

    // SIGTERM: a clean exit, and the haproxy it started goes with it.
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "edgelb exited with {status}");
    let gone = Instant::now();
    while ask(front).await.is_some() {
        assert!(
            gone.elapsed() < Duration::from_secs(5),
            "haproxy still serves after edgelb exited"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Ctrl-C or a closed terminal signals the whole foreground process group (edgelb, and
/// whatever shares its group): edgelb stops cleanly and so does the haproxy it started, which
/// takes SIGHUP as a reload and would otherwise keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_or_ctrl_c_to_the_terminal_group_stops_edgelb_and_its_haproxy() {
    if !haproxy_or_skip("sighup_or_ctrl_c_to_the_terminal_group_stops_edgelb_and_its_haproxy") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(edgelb_haproxy::demo_backend::serve(
        listener,
        "alpha".into(),
    ));
    for signal in ["-HUP", "-INT"] {
        let dir = tempfile::tempdir().unwrap();
        let (config, front) = local_config(dir.path(), backend);
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_edgelb"))
            .args(["run", "--config"])
            .arg(&config)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let group = child.id().unwrap();
        let _cleanup = KillGroupOnDrop(group);
        wait_for_backend(front, "alpha", Duration::from_secs(20)).await;

        // As the terminal does: the signal goes to the whole process group.
        assert!(
            std::process::Command::new("kill")
                .args([signal, "--", &format!("-{group}")])
                .status()
                .unwrap()
                .success()
        );
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .unwrap_or_else(|_| panic!("edgelb did not exit after {signal}"))
            .unwrap();
        assert!(status.success(), "{signal}: edgelb exited with {status}");
        wait_until_nothing_answers(front, signal).await;
    }
}

/// The terminal or the log collector went away (the log pipe's reader closed): edgelb must
/// still stop on SIGTERM, and take its haproxy with it. tracing-subscriber reports a failed
/// write with a panicking `eprintln!`, which killed the task that logged, the signal
/// handler included, so edgelb ran on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_log_pipe_never_keeps_edgelb_from_stopping() {
    if !haproxy_or_skip("a_closed_log_pipe_never_keeps_edgelb_from_stopping") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(edgelb_haproxy::demo_backend::serve(
        listener,
        "alpha".into(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let (config, front) = local_config(dir.path(), backend);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_edgelb"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let _cleanup = KillGroupOnDrop(child.id().unwrap());
    wait_for_backend(front, "alpha", Duration::from_secs(20)).await;
    drop(child.stdout.take());
    drop(child.stderr.take()); // nobody reads the log any more

    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().unwrap().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap_or_else(|_| panic!("edgelb did not exit on SIGTERM with its log pipe closed"))
        .unwrap();
    assert!(status.success(), "edgelb exited with {status}");
    wait_until_nothing_answers(front, "SIGTERM").await;
}

/// A quick start-like config in `dir`: the file source with `backend` on a free port, the
/// local deployer starting its own haproxy. Returns the config and the front address.
fn local_config(dir: &std::path::Path, backend: SocketAddr) -> (std::path::PathBuf, SocketAddr) {
    let listen = free_port();
    write_endpoints(&dir.join("endpoints.yaml"), listen, &[backend]);
    let state = dir.display();
    let config = dir.join("edgelb.yaml");
    std::fs::write(
        &config,
        format!(
            "source: {{file: endpoints.yaml}}\n\
             edges: [{{name: local}}]\n\
             deployer:\n  local: {{config_path: {state}/haproxy.cfg, master_socket: {state}/master.sock, start_haproxy: true}}\n\
             haproxy: {{stats_socket: {state}/admin.sock, socket_dirs: [{state}]}}\n"
        ),
    )
    .unwrap();
    (config, ([127, 0, 0, 1], listen).into())
}

/// Waits (at most 10 s) until nothing answers on `front` once edgelb exited after `signal`.
async fn wait_until_nothing_answers(front: SocketAddr, signal: &str) {
    let gone = Instant::now();
    while ask(front).await.is_some() {
        assert!(
            gone.elapsed() < Duration::from_secs(10),
            "{signal}: haproxy still serves after edgelb exited"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
