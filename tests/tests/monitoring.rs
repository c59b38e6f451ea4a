//! deploy/monitoring/: promtool checks the PrometheusRule's rules and runs their unit tests
//! (tests/prometheus/), the optional kustomization lists every manifest, and a real
//! Prometheus (Debian's) scrapes `edgelb run` driving the testbed's edges: it sees the
//! sessions and bytes the client sent through each edge, and the unhealthy-edge alert firing
//! once an edge's HAProxy hangs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly on a failed step

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use edgelb_tests::controller::{Controller, free_port, wait_for_backends};
use edgelb_tests::prometheus::{Prometheus, repo_root, tool_or_skip, write_rules};
use edgelb_tests::testbed::scenario::LISTEN_PORT;
use edgelb_tests::testbed::{Probe, Testbed, TestbedConfig};
use edgelb_tests::testbed_tools;

fn scratch(name: &str) -> tempdir::Dir {
    tempdir::Dir::new(name)
}

/// A scratch directory removed on drop.
mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("edgelb-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn promtool(args: &[&str], cwd: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_checks_the_alert_rules() {
    if tool_or_skip("promtool", "promtool_checks_the_alert_rules").is_none() {
        return;
    }
    let dir = scratch("promtool-check");
    let rules = write_rules(dir.path(), None);
    let text = promtool(&["check", "rules", rules.to_str().unwrap()], dir.path());
    assert!(text.contains("SUCCESS: 7 rules found"), "{text}");
}

#[test]
fn promtool_runs_the_alert_rules_unit_tests() {
    if tool_or_skip("promtool", "promtool_runs_the_alert_rules_unit_tests").is_none() {
        return;
    }
    let dir = scratch("promtool-test");
    write_rules(dir.path(), None);
    let tests = dir.path().join("edgelb-rules.test.yaml");
    std::fs::copy(
        repo_root().join("tests/prometheus/edgelb-rules.test.yaml"),
        &tests,
    )
    .unwrap();
    let text = promtool(&["test", "rules", "edgelb-rules.test.yaml"], dir.path());
    assert!(text.contains("SUCCESS"), "{text}");
    // Every alert has a unit test.
    let rules =
        std::fs::read_to_string(repo_root().join("deploy/monitoring/prometheusrule.yaml")).unwrap();
    let unit = std::fs::read_to_string(&tests).unwrap();
    for alert in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            unit.contains(&format!("alertname: {alert}")),
            "{alert} has no unit test"
        );
    }
}

#[test]
fn the_monitoring_kustomization_lists_every_manifest() {
    let dir = repo_root().join("deploy/monitoring");
    let kustomization = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
    let k: serde_yaml_ng::Value = serde_yaml_ng::from_str(&kustomization).unwrap();
    let listed: Vec<&str> = k["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            assert!(listed.contains(&name.as_str()), "{name} is not listed");
        }
    }
    for name in listed {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(
            doc["apiVersion"].as_str(),
            Some("monitoring.coreos.com/v1"),
            "{name}"
        );
    }
}

fn sum(series: &[(serde_json::Value, f64)]) -> f64 {
    series.iter().map(|(_, v)| v).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_the_traffic_at_the_edges_and_an_edge_going_down() {
    const TEST: &str = "prometheus_sees_the_traffic_at_the_edges_and_an_edge_going_down";
    let Some(prometheus_bin) = tool_or_skip("prometheus", TEST) else {
        return;
    };
    let Some(tb) = Testbed::start_or_skip(
        TEST,
        TestbedConfig {
            edges: 2,
            backends: 2,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let dir = tb.dir.join("monitoring");
    std::fs::create_dir_all(&dir).unwrap();
    let known_hosts: Vec<String> = tb.edges.iter().map(|e| e.known_hosts_line()).collect();
    std::fs::write(dir.join("known_hosts"), known_hosts.join("\n") + "\n").unwrap();
    let addrs: Vec<String> = tb
        .cluster
        .backends
        .iter()
        .map(|b| format!("\"{}\"", b.addr))
        .collect();
    std::fs::write(
        dir.join("endpoints.yaml"),
        format!(
            "services:\n  - namespace: default\n    name: web\n    ports:\n      - name: http\n        listen: {LISTEN_PORT}\n        endpoints: [{}]\n",
            addrs.join(", ")
        ),
    )
    .unwrap();
    let edges = serde_yaml_ng::to_string(&tb.nodes()).unwrap();
    let config = dir.join("edgelb.yaml");
    std::fs::write(
        &config,
        format!(
            "source: {{file: endpoints.yaml}}\n\
             edges:\n{}\n\
             deployer:\n  ssh: {{key: {}, known_hosts: known_hosts, connect_timeout: 2s, step_timeout: 5s}}\n\
             haproxy: {{hard_stop_after: 10s}}\n\
             pipeline: {{debounce: 50ms, resync: 3s, backoff_initial: 300ms, backoff_max: 2s}}\n\
             health: {{interval: 500ms, timeout: 1s, fall: 2, rise: 1}}\n\
             edge_stats: {{interval: 500ms, timeout: 2s}}\n",
            edges
                .lines()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n"),
            tb.key.private.display()
        ),
    )
    .unwrap();
    let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let controller = Controller::start(&config, http, &dir.join("edgelb.log"), &[]);
    wait_for_backends(&tb, &controller, &[0, 1], LISTEN_PORT, &["b1", "b2"], "v2").await;

    // The alerts as shipped, but firing at once: a test cannot wait their `for`.
    let rules = write_rules(&dir, Some("0s"));
    let prometheus = Prometheus::start(&prometheus_bin, &dir, http, &rules);

    // Traffic through each edge: every probe sends "HELLO\n" (6 bytes) and reads an answer.
    const PROBES: usize = 20;
    for edge in 0..2 {
        for _ in 0..PROBES {
            let probe = tb.client.probe(tb.edge_addr(edge, LISTEN_PORT)).await;
            assert!(matches!(probe, Probe::Ok { .. }), "{probe:?}");
        }
    }
    let frontend = |metric: &str, node: &str| {
        format!(
            "{metric}{{node=\"{node}\",proxy=\"frontend\",service=\"default/web\",port=\"http\"}}"
        )
    };
    for edge in &tb.edges {
        let sessions = frontend("edgelb_edge_sessions_total", &edge.name);
        let bytes_in = frontend("edgelb_edge_bytes_in_total", &edge.name);
        let bytes_out = frontend("edgelb_edge_bytes_out_total", &edge.name);
        // Health probes open empty connections too, and edgelb's own probes (waiting for the
        // backends) sent "HELLO\n" as well: at least the probes' sessions and bytes, in
        // whole "HELLO\n"s (an empty connection sends none).
        let (s, i, o) = prometheus
            .wait_for(
                &format!("the traffic of {}", edge.name),
                Duration::from_secs(60),
                || async {
                    let s = sum(&prometheus.query(&sessions).await);
                    let i = sum(&prometheus.query(&bytes_in).await);
                    let o = sum(&prometheus.query(&bytes_out).await);
                    #[allow(clippy::cast_precision_loss)]
                    (i >= (6 * PROBES) as f64).then_some((s, i, o))
                },
            )
            .await;
        #[allow(clippy::cast_precision_loss)]
        {
            assert!(s >= PROBES as f64, "{}: {s} sessions", edge.name);
            assert!(
                i >= (6 * PROBES) as f64 && i % 6.0 == 0.0,
                "{}: {i} bytes in",
                edge.name
            );
            assert!(o >= (PROBES * 2) as f64, "{}: {o} bytes out", edge.name);
        }
        let up = prometheus
            .query(&format!(
                "edgelb_edge_servers{{node=\"{}\",state=~\"UP|NOCHECK\"}}",
                edge.name
            ))
            .await;
        assert_eq!(sum(&up), 2.0, "{}: servers up: {up:?}", edge.name);
    }
    let unhealthy = |labels: &serde_json::Value, node: &str| {
        labels["alertname"] == "EdgelbEdgeUnhealthy" && labels["node"] == node
    };
    assert!(
        !prometheus
            .firing()
            .await
            .iter()
            .any(|a| a["alertname"] == "EdgelbEdgeUnhealthy"),
        "no edge is unhealthy yet"
    );

    // Edge 2's HAProxy hangs: its health fails, the alert fires, its stats poll fails.
    let down = tb.edges[1].name.clone();
    tb.edges[1].freeze_haproxy(true);
    prometheus
        .wait_for(
            &format!("EdgelbEdgeUnhealthy firing for {down}"),
            Duration::from_secs(60),
            || async {
                prometheus
                    .firing()
                    .await
                    .iter()
                    .any(|a| unhealthy(a, &down))
                    .then_some(())
            },
        )
        .await;
    let stats_up = prometheus
        .wait_for(
            "edgelb_edge_stats_up 0 for the hung edge",
            Duration::from_secs(30),
            || async {
                let v = prometheus
                    .query(&format!("edgelb_edge_stats_up{{node=\"{down}\"}} == 0"))
                    .await;
                (!v.is_empty()).then_some(v)
            },
        )
        .await;
    assert_eq!(stats_up.len(), 1);
    // The other edge stays healthy and unalerted.
    let healthy = &tb.edges[0].name;
    assert!(
        !prometheus
            .firing()
            .await
            .iter()
            .any(|a| unhealthy(a, healthy)),
        "{healthy} alerted"
    );
    tb.edges[1].freeze_haproxy(false);
    drop(prometheus);
    drop(controller);
}
