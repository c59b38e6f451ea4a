//! `edgelb run` with `edge_resources:` against the fake API server: the edges are EdgeNode
//! resources, their pools come from EdgePools, an invalid EdgeNode gets a Warning Event and
//! an `InvalidSpec` condition while the others are deployed to, each EdgeNode's status carries
//! what `kubectl get edgenodes` shows (the CRD's printer columns resolved against the stored
//! objects), and adding or removing an EdgeNode changes the running pipeline's edges.
//!
//! The edges' SSH port is closed (no root, no testbed needed): every deploy fails to connect,
//! which the status reports (result `failed`, failures counted, `InSync` False with
//! `DeployFailed`, health `Unhealthy` with the probe's reason). The successful paths of the
//! status are unit-tested in edgelb-kube (`crd::node_status`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly on a failed step

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use edgelb_tests::controller::{Controller, edgelb_binary, free_port};
use edgelb_tests::fake_apiserver::FakeApiServer;
use serde_json::{Value, json};

const NS: &str = "edgelb";

/// An EdgeNode as `kubectl apply` sends it.
fn edge_node(name: &str, labels: Value, ssh_port: u16, address: &str) -> Value {
    json!({
        "apiVersion": "edgelb.io/v1alpha1",
        "kind": "EdgeNode",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "ssh": {"host": "127.0.0.1", "port": ssh_port, "user": "edgelb"},
            "publicAddresses": [address],
        },
    })
}

fn edge_pool(name: &str, match_labels: Value) -> Value {
    json!({
        "apiVersion": "edgelb.io/v1alpha1",
        "kind": "EdgePool",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"nodeSelector": {"matchLabels": match_labels}},
    })
}

/// A closed port on loopback: bound, then released.
fn closed_port() -> u16 {
    free_port()
}

fn write_files(dir: &Path, api: &FakeApiServer) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let key = dir.join("id_ed25519");
    let _ = std::fs::remove_file(&key);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "edgelb-test", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen runs (openssh-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A host key pinned for some other host: the edges' own are not known (and never reached).
    let public = std::fs::read_to_string(dir.join("id_ed25519.pub")).unwrap();
    let mut parts = public.split_whitespace();
    let (kind, blob) = (parts.next().unwrap(), parts.next().unwrap());
    std::fs::write(
        dir.join("known_hosts"),
        format!("[192.0.2.1]:22 {kind} {blob}\n"),
    )
    .unwrap();
    api.write_kubeconfig(&dir.join("kubeconfig")).unwrap();
    let config = json!({
        "source": {"kubernetes": {"load_balancer": {}}},
        "edge_resources": {"namespace": NS, "restart_debounce": "300ms"},
        "deployer": {"ssh": {
            "key": key,
            "known_hosts": "known_hosts",
            "connect_timeout": "1s",
            "step_timeout": "5s",
        }},
        "pipeline": {"debounce": "50ms", "resync": "3s", "backoff_initial": "300ms", "backoff_max": "1s"},
        "health": {"interval": "300ms", "timeout": "1s", "fall": 1, "rise": 1},
    });
    let path = dir.join("edgelb.yaml");
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    path
}

fn start_controller(dir: &Path, config: &Path) -> Controller {
    let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let kubeconfig = dir.join("kubeconfig");
    Controller::start(
        config,
        http,
        &dir.join("edgelb.log"),
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("HTTPS_PROXY", ""),
            ("https_proxy", ""),
            ("POD_NAME", "edgelb-0"),
            ("POD_NAMESPACE", NS),
        ],
    )
}

/// Polls `check` until it gives a value; panics with its last complaint and edgelb's log.
fn wait_for<T>(
    controller: &Controller,
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if start.elapsed() > limit => panic!(
                "{what}: not within {limit:?}: {e}\nlog:\n{}",
                controller.log()
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The EdgeNode CRD's printer columns (name, JSONPath), from `edgelb crd`.
fn printer_columns() -> Vec<(String, String)> {
    let out = Command::new(edgelb_binary()).arg("crd").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let crd = text
        .split("\n---\n")
        .filter_map(|doc| serde_yaml_ng::from_str::<serde_yaml_ng::Value>(doc).ok())
        .find(|d| d["spec"]["names"]["kind"].as_str() == Some("EdgeNode"))
        .unwrap();
    crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["jsonPath"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Resolves a printer column's JSONPath (`.a.b`, `.a[0]`) as kubectl would; `None` prints as
/// `<none>`.
fn resolve<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for part in path.trim_start_matches('.').split('.') {
        let (key, index) = match part.split_once('[') {
            Some((key, rest)) => (key, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        cur = cur.get(key)?;
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    (!cur.is_null()).then_some(cur)
}

/// One row of `kubectl get edgenodes`, column name → cell.
fn row(obj: &Value, columns: &[(String, String)]) -> Vec<(String, String)> {
    let mut cells = vec![(
        "NAME".to_owned(),
        obj["metadata"]["name"].as_str().unwrap_or("").to_owned(),
    )];
    for (name, path) in columns {
        let cell = match resolve(obj, path) {
            None => "<none>".to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        cells.push((name.clone(), cell));
    }
    cells
}

fn cell<'a>(row: &'a [(String, String)], name: &str) -> &'a str {
    row.iter().find(|(n, _)| n == name).map_or_else(
        || panic!("no column {name} in {row:?}"),
        |(_, v)| v.as_str(),
    )
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// The edges of the last pipeline started, from edgelb's log.
fn last_pipeline_edges(controller: &Controller) -> Option<String> {
    controller
        .log()
        .lines()
        .rev()
        .find(|l| l.contains("pipeline started on the EdgeNode resources"))
        .map(str::to_owned)
}

#[test]
fn edgenodes_and_edgepools_drive_the_pipeline_and_carry_its_status() {
    let api = FakeApiServer::start().unwrap();
    let dir = std::env::temp_dir().join(format!("edgelb-edge-resources-{}", std::process::id()));
    let config = write_files(&dir, &api);
    api.apply(edge_pool("public", json!({"tier": "public"})))
        .unwrap();
    api.apply(edge_node(
        "edge-a",
        json!({"tier": "public"}),
        closed_port(),
        "203.0.113.10",
    ))
    .unwrap();
    api.apply(edge_node(
        "edge-b",
        json!({}),
        closed_port(),
        "203.0.113.11",
    ))
    .unwrap();
    // A real API server refuses this bind already (the CRD's pattern); the fake one stores it,
    // as an object written before the CRD carried the pattern would be stored.
    let mut bad = edge_node(
        "edge-bad",
        json!({"tier": "public"}),
        closed_port(),
        "203.0.113.12",
    );
    bad["spec"]["extraBinds"] = json!([{"port": 443, "addresses": [":443 ssl crt /etc/x"]}]);
    api.apply(bad).unwrap();

    let mut controller = start_controller(&dir, &config);
    let columns = printer_columns();

    // Both valid edges are deployed to (and fail: nothing listens), with their pools.
    let rows = wait_for(
        &controller,
        "EdgeNode status",
        Duration::from_secs(30),
        || {
            let mut rows = Vec::new();
            for name in ["edge-a", "edge-b"] {
                let obj = api.get("EdgeNode", NS, name).ok_or("gone")?;
                let failures = obj["status"]["consecutiveFailures"].as_u64().unwrap_or(0);
                if failures == 0 || obj["status"]["health"] != "Unhealthy" {
                    return Err(format!("{name}: {}", obj["status"]));
                }
                rows.push((obj.clone(), row(&obj, &columns)));
            }
            Ok(rows)
        },
    );
    let (a, a_row) = &rows[0];
    let (_, b_row) = &rows[1];
    println!("kubectl get edgenodes -o wide:\n{a_row:?}\n{b_row:?}");
    assert_eq!(cell(a_row, "Pools"), "public");
    assert_eq!(
        cell(b_row, "Pools"),
        "default",
        "selected by no pool: the default one"
    );
    assert_eq!(cell(a_row, "Address"), "203.0.113.10");
    assert_eq!(cell(a_row, "In-Sync"), "false");
    assert_eq!(cell(a_row, "Health"), "Unhealthy");
    assert_eq!(cell(a_row, "Result"), "failed");
    assert!(cell(a_row, "Failures").parse::<u64>().unwrap() >= 1);
    assert!(cell(a_row, "Last-Deploy").ends_with('Z'), "{a_row:?}");
    assert_ne!(cell(a_row, "Age"), "<none>");
    assert_ne!(cell(a_row, "Reason"), "<none>", "the failed probe's reason");
    assert_eq!(
        cell(a_row, "Digest"),
        "<none>",
        "nothing live on an edge never reached"
    );
    assert!(
        a["status"]["lastError"]
            .as_str()
            .unwrap()
            .contains("edge-a"),
        "{}",
        a["status"]
    );
    let in_sync = condition(a, "InSync").unwrap();
    assert_eq!(in_sync["status"], "False");
    assert_eq!(in_sync["reason"], "DeployFailed");
    assert_eq!(in_sync["observedGeneration"], 1);
    assert!(
        in_sync["lastTransitionTime"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(condition(a, "Ready").unwrap()["status"], "False");

    // The invalid EdgeNode: a Warning Event and an InvalidSpec condition, never deployed to.
    let bad = wait_for(
        &controller,
        "InvalidSpec on edge-bad",
        Duration::from_secs(10),
        || {
            let obj = api.get("EdgeNode", NS, "edge-bad").ok_or("gone")?;
            match condition(&obj, "Ready") {
                Some(c) if c["reason"] == "InvalidSpec" => Ok(obj.clone()),
                _ => Err(obj["status"].to_string()),
            }
        },
    );
    assert!(
        condition(&bad, "Ready").unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("bind address"),
        "{}",
        bad["status"]
    );
    assert_eq!(bad["status"]["consecutiveFailures"], Value::Null);
    let warning = api
        .events()
        .into_iter()
        .find(|e| e["regarding"]["name"] == "edge-bad")
        .expect("a Warning Event on edge-bad");
    assert_eq!(warning["type"], "Warning");
    assert_eq!(warning["reason"], "InvalidSpec");
    assert_eq!(warning["regarding"]["kind"], "EdgeNode");
    assert_eq!(warning["regarding"]["apiVersion"], "edgelb.io/v1alpha1");
    let started = last_pipeline_edges(&controller).unwrap();
    assert!(
        started.contains("edge-a") && started.contains("edge-b") && !started.contains("edge-bad"),
        "{started}"
    );

    // An EdgeNode added and one removed: the pipeline restarts with the new edges.
    api.apply(edge_node(
        "edge-c",
        json!({"tier": "public"}),
        closed_port(),
        "203.0.113.13",
    ))
    .unwrap();
    api.delete("EdgeNode", NS, "edge-b").unwrap();
    wait_for(
        &controller,
        "a pipeline on edge-a and edge-c",
        Duration::from_secs(30),
        || {
            let line = last_pipeline_edges(&controller).ok_or("no pipeline yet")?;
            if line.contains("edge-c") && !line.contains("edge-b") {
                Ok(())
            } else {
                Err(line)
            }
        },
    );
    wait_for(
        &controller,
        "edge-c deployed to",
        Duration::from_secs(30),
        || {
            let obj = api.get("EdgeNode", NS, "edge-c").ok_or("gone")?;
            match obj["status"]["consecutiveFailures"].as_u64() {
                Some(n) if n > 0 && obj["status"]["pools"] == "public" => Ok(()),
                _ => Err(obj["status"].to_string()),
            }
        },
    );
    // /metrics follows the pipelines: the new edge is there, the removed one's series are gone.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    wait_for(
        &controller,
        "/metrics on the new edges",
        Duration::from_secs(10),
        || {
            let (code, body) = runtime.block_on(controller.get("/metrics"));
            let has_c = body.contains("edgelb_node_in_sync{node=\"edge-c\"} 0");
            if code == 200 && has_c && !body.contains("node=\"edge-b\"") {
                Ok(())
            } else {
                Err(format!("{code}: {body}"))
            }
        },
    );
    let restarts = controller
        .log()
        .matches("the edges changed; restarting the pipeline")
        .count();
    assert!(restarts >= 1, "{}", controller.log());

    assert!(controller.terminate(Duration::from_secs(20)).success());
    let unhandled = api.unhandled();
    assert!(
        unhandled.is_empty(),
        "requests the fake API server does not serve: {unhandled:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn render_reads_the_edges_from_the_resources() {
    let api = FakeApiServer::start().unwrap();
    let dir = std::env::temp_dir().join(format!("edgelb-edge-render-{}", std::process::id()));
    let config = write_files(&dir, &api);
    api.apply(edge_pool("public", json!({"tier": "public"})))
        .unwrap();
    let mut a = edge_node("edge-a", json!({"tier": "public"}), 22, "203.0.113.10");
    a["spec"]["extraBinds"] = json!([{"port": 443, "addresses": ["ipv6@:443"]}]);
    api.apply(a).unwrap();
    api.apply(edge_node("edge-b", json!({}), 22, "203.0.113.11"))
        .unwrap();
    let mut bad = edge_node("edge-bad", json!({}), 22, "203.0.113.12");
    bad["spec"]["publicAddresses"] = json!(["203.0.113.12 #"]);
    api.apply(bad).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let out = Command::new(edgelb_binary())
        .args(["render", "--config"])
        .arg(&config)
        .env("KUBECONFIG", &kubeconfig)
        .env("HTTPS_PROXY", "")
        .env("https_proxy", "")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("### node edge-a"), "{stdout}");
    assert!(stdout.contains("### node edge-b"), "{stdout}");
    assert!(!stdout.contains("edge-bad"), "{stdout}");
    assert!(
        stderr.contains("edge-bad") && stderr.contains("public address"),
        "the invalid EdgeNode is named with why: {stderr}"
    );
    // Rendering reads; it writes nothing to the cluster.
    let writes: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| r.line())
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    std::fs::remove_dir_all(&dir).ok();
}
