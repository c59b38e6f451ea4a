//! Issue 19 item 4: a leader that cannot renew its Lease exits, but the HAProxy it started
//! with the local deployer's `start_haproxy` keeps serving (the data plane does not go down
//! with the controller). Real `edgelb run`, real haproxy, the project's fake API server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly on a failed step

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use edgelb_tests::controller::{Controller, free_port};
use edgelb_tests::fake_apiserver::FakeApiServer;
use edgelb_tests::local_haproxy::{StopHaproxy, TempDir, haproxy_or_skip};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// The backend that answered through `front`, if any.
async fn ask(front: SocketAddr) -> Option<String> {
    let mut stream = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(front),
    )
    .await
    .ok()?
    .ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(3), stream.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    edgelb_haproxy::demo_backend::parse_answer_line(&out).map(|(backend, ..)| backend)
}

fn write_config(dir: &Path, listen: u16, backend: SocketAddr) -> std::path::PathBuf {
    std::fs::write(
        dir.join("endpoints.yaml"),
        format!(
            "services:\n  - namespace: demo\n    name: web\n    ports:\n      - name: tcp\n        listen: {listen}\n        endpoints: [\"{backend}\"]\n"
        ),
    )
    .unwrap();
    let state = dir.display();
    let config = dir.join("edgelb.yaml");
    std::fs::write(
        &config,
        format!(
            "source: {{file: endpoints.yaml}}\n\
             edges: [{{name: local}}]\n\
             deployer:\n  local: {{config_path: {state}/haproxy.cfg, master_socket: {state}/master.sock, start_haproxy: true}}\n\
             haproxy: {{stats_socket: {state}/admin.sock, socket_dirs: [{state}]}}\n\
             pipeline: {{debounce: 50ms, resync: 5s}}\n\
             leader_election: {{lease_duration: 4s, renew_deadline: 3s, retry_period: 500ms}}\n"
        ),
    )
    .unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_leaves_the_local_haproxy_serving() {
    if !haproxy_or_skip("a_lost_lease_leaves_the_local_haproxy_serving") {
        return;
    }
    let dir = TempDir::new("lease").unwrap();
    let api = FakeApiServer::start().unwrap();
    api.write_kubeconfig(&dir.path().join("kubeconfig"))
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(edgelb_haproxy::demo_backend::serve(
        listener,
        "alpha".into(),
    ));
    let listen = free_port();
    let front: SocketAddr = ([127, 0, 0, 1], listen).into();
    let config = write_config(dir.path(), listen, backend);
    let _stop = StopHaproxy(format!("{}/haproxy.cfg", dir.path().display()));
    let kubeconfig = dir.path().join("kubeconfig");
    let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut controller = Controller::start(
        &config,
        http,
        &dir.path().join("edgelb.log"),
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("HTTPS_PROXY", ""),
            ("https_proxy", ""),
            ("POD_NAME", "edgelb-0"),
            ("POD_NAMESPACE", "edgelb"),
        ],
    );

    let start = Instant::now();
    while ask(front).await.as_deref() != Some("alpha") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "haproxy never served alpha; log:\n{}",
            controller.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The API server goes away: the Lease cannot be renewed, the leader exits non-zero.
    api.set_unavailable(true);
    let status = controller.wait_exit(Duration::from_secs(20));
    assert!(!status.success(), "a lost Lease exits non-zero: {status}");
    let log = controller.log();
    assert!(log.contains("lost the leader lease"), "{log}");

    // The data plane stays up: every attempt over two seconds is served.
    let after = Instant::now();
    while after.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            ask(front).await.as_deref(),
            Some("alpha"),
            "haproxy stopped serving after edgelb exited; log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        log.contains("leaving the haproxy edgelb started running"),
        "{log}"
    );
}
