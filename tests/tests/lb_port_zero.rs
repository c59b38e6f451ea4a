//! Issue 19 item 5: in LoadBalancer mode a Service port numbered 0 is skipped with a Warning
//! Event (`InvalidPort`) on the Service, and the Service's other ports are still served and
//! its status written. Real `edgelb run` with a local haproxy, the project's fake API server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly on a failed step

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use edgelb_tests::controller::{Controller, free_port};
use edgelb_tests::fake_apiserver::FakeApiServer;
use edgelb_tests::local_haproxy::{StopHaproxy, TempDir, haproxy_or_skip};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

const CLASS: &str = "edgelb.io/haproxy";

fn write_config(dir: &Path) -> std::path::PathBuf {
    let state = dir.display();
    let config = json!({
        "source": {"kubernetes": {"load_balancer": {"class": CLASS}}},
        "edges": [{"name": "local", "public_addresses": ["127.0.0.1"]}],
        "deployer": {"local": {"config_path": format!("{state}/haproxy.cfg"),
                               "master_socket": format!("{state}/master.sock"),
                               "start_haproxy": true}},
        "haproxy": {"stats_socket": format!("{state}/admin.sock"), "socket_dirs": [state.to_string()]},
        "pipeline": {"debounce": "50ms", "resync": "5s"},
        "health": {"enabled": false},
        "edge_stats": {"enabled": false},
    });
    let path = dir.join("edgelb.yaml");
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    path
}

/// `web` with a usable port `http` on `listen` and a port `zero` numbered 0, as an API server
/// that skipped validation (or a client that bypassed it) would hand it out.
fn service(listen: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "type": "LoadBalancer", "loadBalancerClass": CLASS, "clusterIP": "10.43.0.20",
            "ports": [
                {"name": "http", "protocol": "TCP", "port": listen, "targetPort": 8080},
                {"name": "zero", "protocol": "TCP", "port": 0, "targetPort": 9090},
            ],
            "selector": {"app": "web"},
        },
    })
}

fn slice(backend: SocketAddr) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-x1", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [backend.ip().to_string()], "conditions": {"ready": true}}],
        "ports": [
            {"name": "http", "protocol": "TCP", "port": backend.port()},
            {"name": "zero", "protocol": "TCP", "port": 9090},
        ],
    })
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_zero_warns_and_the_other_ports_are_served() {
    if !haproxy_or_skip("port_zero_warns_and_the_other_ports_are_served") {
        return;
    }
    let dir = TempDir::new("port-zero").unwrap();
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
    api.apply_service(service(listen)).unwrap();
    api.apply_slice(slice(backend)).unwrap();
    let config = write_config(dir.path());
    let _stop = StopHaproxy(format!("{}/haproxy.cfg", dir.path().display()));
    let kubeconfig = dir.path().join("kubeconfig");
    let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let controller = Controller::start(
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

    // The usable port is served and the Service gets its status.
    let front: SocketAddr = ([127, 0, 0, 1], listen).into();
    let start = Instant::now();
    loop {
        let ingress = api
            .service("shop", "web")
            .map(|s| s["status"]["loadBalancer"]["ingress"].clone());
        if ask(front).await.as_deref() == Some("alpha")
            && ingress == Some(json!([{"ip": "127.0.0.1", "ipMode": "Proxy"}]))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "web:http never served with its status written ({ingress:?}); log:\n{}",
            controller.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Port 0 is not in the config, and the Service carries a Warning saying why.
    let cfg = std::fs::read_to_string(dir.path().join("haproxy.cfg")).unwrap();
    assert!(cfg.contains(&format!(":{listen}")), "{cfg}");
    assert!(
        cfg.contains("backend be_shop_web_http") && !cfg.contains("port zero"),
        "only port http is rendered, port 0 is not:\n{cfg}"
    );
    assert_eq!(cfg.matches("\nfrontend ").count(), 1, "{cfg}");
    let start = Instant::now();
    let warning = loop {
        let found = api
            .events()
            .into_iter()
            .find(|e| e["reason"] == "InvalidPort");
        if let Some(event) = found {
            break event;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no InvalidPort Event; events {:?}; log:\n{}",
            api.events(),
            controller.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(warning["type"], "Warning", "{warning}");
    assert_eq!(warning["regarding"]["kind"], "Service", "{warning}");
    assert_eq!(warning["regarding"]["name"], "web", "{warning}");
    let uid = api.service("shop", "web").unwrap()["metadata"]["uid"].clone();
    assert_eq!(warning["regarding"]["uid"], uid, "{warning}");
    let note = warning["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("zero") && note.contains("number 0"),
        "the note names the port and its number: {note}"
    );
    // Logged too, once.
    let log = controller.log();
    assert_eq!(log.matches("InvalidPort").count(), 1, "{log}");
}
