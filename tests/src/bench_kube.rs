//! The perf suite's `kube` section: `edgelb run` in LoadBalancer mode against the fake API
//! server at scale (issue 19), deploying to a local haproxy it starts itself.
//!
//! Measures, for N Services × 10 endpoints (N = `EDGELB_PERF_KUBE_SERVICES`, default 5,000)
//! with `EDGELB_PERF_KUBE_LATENCY_MS` (default 2) of API latency: the time until every status
//! is written, the controller's CPU in the seconds after, its CPU per change to a slice of a
//! Service outside its class (less the idle CPU of the windows before and after; edge stats
//! polls off, so a 15 s poll of 5,000 proxies cannot land in one window and not the other),
//! its peak RSS once the statuses are written, how long after a 10 s API outage a change made
//! during the outage reaches the controller and the edge's config (with the moment the slice
//! watch is answered again), and its peak RSS over the whole run, the outage's relists and
//! the catch-up deploy included.
// Bench code: a failed step should fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fake_apiserver::FakeApiServer;
use crate::proc_usage::Proc;

const CLASS: &str = "edgelb.example/perf";
const FIRST_PORT: u16 = 20_000;
const PER_SERVICE: u32 = 10;

/// One row: what, figure, note.
pub type Row = (String, String, String);

fn service(name: &str, port: u16, class: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "perf"},
        "spec": {
            "type": "LoadBalancer", "loadBalancerClass": class,
            "ports": [{"name": "http", "protocol": "TCP", "port": port, "targetPort": 8080}],
            "selector": {"app": name}, "clusterIP": "10.43.0.10",
        },
    })
}

fn slice(name: &str, first_ip: u32, count: u32, extra: Option<Ipv4Addr>) -> Value {
    let mut endpoints: Vec<Value> = (0..count)
        .map(|e| {
            let ip = Ipv4Addr::from(first_ip + e);
            json!({"addresses": [ip.to_string()], "conditions": {"ready": true}})
        })
        .collect();
    if let Some(ip) = extra {
        endpoints.push(json!({"addresses": [ip.to_string()], "conditions": {"ready": true}}));
    }
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{name}-abc"), "namespace": "perf",
                     "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
    })
}

fn written(api: &FakeApiServer) -> usize {
    api.objects("Service")
        .iter()
        .filter(|s| {
            s["status"]["loadBalancer"]["ingress"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
        .count()
}

/// Sends SIGTERM (edgelb then stops the haproxy it started) and waits; then stops anything
/// still running this run's haproxy config (a unique path).
fn stop(child: &mut Child, config: &Path) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    let wanted = config.as_os_str().as_encoded_bytes();
    for entry in procs.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cmdline.split(|b| *b == 0).any(|a| a == wanted) {
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
        }
    }
}

/// Starts `edgelb run --config CONFIG --http-listen HTTP` as the benches run it against the fake
/// API server: `DIR/kubeconfig`, no proxy, pod name and namespace set, its log in
/// `DIR/edgelb.log` at `log_level`.
pub fn spawn_kube_controller(
    bin: &Path,
    config: &Path,
    http: SocketAddr,
    dir: &Path,
    log_level: &str,
) -> Result<Child, String> {
    let log = std::fs::File::create(dir.join("edgelb.log")).map_err(|e| e.to_string())?;
    Command::new(bin)
        .args(["run", "--config"])
        .arg(config)
        .arg("--http-listen")
        .arg(http.to_string())
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .env("HTTPS_PROXY", "")
        .env("https_proxy", "")
        .env("POD_NAME", "edgelb-0")
        .env("POD_NAMESPACE", "edgelb")
        .env("EDGELB_LOG", log_level)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| e.to_string())
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs the section with the `edgelb` binary `bin` in `dir`; rows, or why it could not run.
pub async fn kube_scale(bin: &Path, dir: &Path) -> Result<Vec<Row>, String> {
    let services = u16::try_from(env_u64("EDGELB_PERF_KUBE_SERVICES", 5_000))
        .map_err(|_| "EDGELB_PERF_KUBE_SERVICES must be below 45,000")?;
    let latency = Duration::from_millis(env_u64("EDGELB_PERF_KUBE_LATENCY_MS", 2));
    let api = FakeApiServer::start().map_err(|e| e.to_string())?;
    for s in 0..services {
        let name = format!("svc-{s}");
        api.apply_service(service(&name, FIRST_PORT + s, CLASS))
            .map_err(|e| format!("{e:?}"))?;
        api.apply_slice(slice(
            &name,
            0x0a00_0000 + u32::from(s) * 16,
            PER_SERVICE,
            None,
        ))
        .map_err(|e| format!("{e:?}"))?;
    }
    // A Service of another class, whose slice changes while edgelb runs.
    api.apply_service(service("unrelated", 9_999, "example.com/other"))
        .map_err(|e| format!("{e:?}"))?;
    api.apply_slice(slice("unrelated", 0x0b00_0000, PER_SERVICE, None))
        .map_err(|e| format!("{e:?}"))?;
    api.set_latency(latency);

    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    api.write_kubeconfig(&dir.join("kubeconfig"))
        .map_err(|e| e.to_string())?;
    let state = dir.display();
    let haproxy_cfg: PathBuf = dir.join("haproxy.cfg");
    let config = json!({
        "source": {"kubernetes": {"load_balancer": {"class": CLASS}}},
        "edges": [{"name": "local", "public_addresses": ["127.0.0.1"]}],
        "deployer": {"local": {"config_path": haproxy_cfg, "master_socket": format!("{state}/master.sock"),
                               "start_haproxy": true, "reload_timeout": "120s"}},
        "haproxy": {"stats_socket": format!("{state}/admin.sock"), "socket_dirs": [state.to_string()],
                    "hard_stop_after": "10s", "health_check": {"enabled": false},
                    // 5,000 listeners: leave room for them under the usual fd limit.
                    "maxconn": 1000},
        "pipeline": {"debounce": "200ms"},
        // The local probe connects to every listen port: 5,000 connections per round would
        // be the bulk of the controller's idle CPU here.
        "health": {"enabled": false},
        // A stats poll of 5,000 proxies every 15 s (its cost is the edge_stats bench's row)
        // would land in some CPU windows below and not in others.
        "edge_stats": {"enabled": false},
    });
    let config_path = dir.join("edgelb.yaml");
    std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap())
        .map_err(|e| e.to_string())?;
    let http: SocketAddr = (
        [127, 0, 0, 1],
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port(),
    )
        .into();
    let started = Instant::now();
    let mut child = spawn_kube_controller(bin, &config_path, http, dir, "warn")?;
    let pid = child.id();
    let result = measure(&api, &mut child, pid, started, services, &haproxy_cfg, http).await;
    stop(&mut child, &haproxy_cfg);
    let what = format!(
        "{services} Services × {PER_SERVICE} endpoints, {} ms API latency",
        latency.as_millis()
    );
    result.map(|rows| {
        rows.into_iter()
            .map(|(w, f, n)| (format!("kube, {what}: {w}"), f, n))
            .collect()
    })
}

async fn measure(
    api: &FakeApiServer,
    child: &mut Child,
    pid: u32,
    started: Instant,
    services: u16,
    haproxy_cfg: &Path,
    http: SocketAddr,
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let total = usize::from(services);
    let mut in_sync_at = None;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("edgelb exited early ({status}); see its log"));
        }
        if in_sync_at.is_none()
            && metric(http, "edgelb_node_in_sync{node=\"local\"} ").await == Some(1)
        {
            in_sync_at = Some(started.elapsed());
        }
        if written(api) >= total {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!(
                "only {} of {total} statuses written after 600 s",
                written(api)
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_written = started.elapsed().as_secs_f64();
    let synced = in_sync_at.map_or(f64::NAN, |t| t.as_secs_f64());
    rows.push((
        "all statuses written, from start".into(),
        format!("{all_written:.1} s"),
        format!("target < 10 s; the edge first ran the config {synced:.1} s after start (render, haproxy start with 5,000 listeners)"),
    ));
    rows.push((
        "all statuses written, from the edge running the config".into(),
        format!("{:.1} s", all_written - synced),
        "the status writer's own share".into(),
    ));
    let cpu = Proc::Pid(pid).cpu_ms();
    tokio::time::sleep(Duration::from_secs(5)).await;
    rows.push((
        "controller CPU in the 5 s after the last status".into(),
        format!("{:.0} ms", Proc::Pid(pid).cpu_ms() - cpu),
        "the echo of its own status writes".into(),
    ));

    // An unrelated slice changes 200 times over 4 s; the CPU of the 4 s before and after
    // (idle: lease renewals, timers) is subtracted.
    let changes = 200u32;
    let window = Duration::from_secs(4);
    let idle_from = Proc::Pid(pid).cpu_ms();
    tokio::time::sleep(window).await;
    let idle_before = Proc::Pid(pid).cpu_ms() - idle_from;
    let busy_from = Proc::Pid(pid).cpu_ms();
    let busy_start = Instant::now();
    for c in 0..changes {
        api.apply_slice(slice(
            "unrelated",
            0x0b00_0000,
            PER_SERVICE,
            Some(Ipv4Addr::from(0x0b01_0000 + c)),
        ))
        .map_err(|e| format!("{e:?}"))?;
        tokio::time::sleep(Duration::from_millis(18)).await;
    }
    tokio::time::sleep(window.saturating_sub(busy_start.elapsed())).await;
    let busy = Proc::Pid(pid).cpu_ms() - busy_from;
    let idle_from = Proc::Pid(pid).cpu_ms();
    tokio::time::sleep(window).await;
    let idle_after = Proc::Pid(pid).cpu_ms() - idle_from;
    let idle = (idle_before + idle_after) / 2.0;
    rows.push((
        "controller CPU per change to a slice of a Service outside the class".into(),
        format!("{:.2} ms", ((busy - idle) / f64::from(changes)).max(0.0)),
        format!(
            "target < 1 ms; {changes} changes; {busy:.0} ms over 4 s less {idle:.0} ms idle (4 s before: {idle_before:.0} ms, after: {idle_after:.0} ms; 10 ms ticks)"
        ),
    ));
    let hwm = Proc::Pid(pid).vm_hwm_kib().ok_or("no VmHWM")?;
    rows.push((
        "edgelb run peak RSS (VmHWM) at start-up, statuses written".into(),
        format!("{:.1} MiB", hwm as f64 / 1024.0),
        "target < 128 MiB".into(),
    ));

    // A 10 s outage; a change to svc-0 made 2 s into it.
    let generation = metric(http, "edgelb_desired_generation ")
        .await
        .ok_or("no edgelb_desired_generation")?;
    api.set_unavailable(true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let marker = Ipv4Addr::new(10, 250, 0, 1);
    api.apply_slice(slice("svc-0", 0x0a00_0000, PER_SERVICE, Some(marker)))
        .map_err(|e| format!("{e:?}"))?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    api.set_unavailable(false);
    let back = Instant::now();
    let needle = format!("{marker}:8080");
    let answered = |api: &FakeApiServer| {
        api.requests()
            .iter()
            .filter(|r| r.code == 200 && r.path.ends_with("/endpointslices"))
            .count()
    };
    let slice_calls = answered(api);
    let mut reconnected = None;
    loop {
        if reconnected.is_none() && answered(api) > slice_calls {
            reconnected = Some(back.elapsed());
        }
        if metric(http, "edgelb_desired_generation ")
            .await
            .is_some_and(|g| g > generation)
        {
            break;
        }
        if back.elapsed() > Duration::from_secs(120) {
            return Err("the change made during the outage never reached the controller".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rows.push((
        "the EndpointSlice watch answered again after the API's return".into(),
        reconnected.map_or("—".into(), |t| format!("{:.1} s", t.as_secs_f64())),
        "the watch's capped backoff (at most 1 s between attempts)".into(),
    ));
    rows.push((
        "a change made during a 10 s API outage, in the controller's desired state after the API's return".into(),
        format!("{:.1} s", back.elapsed().as_secs_f64()),
        "target < 3 s; edgelb_desired_generation moved on".into(),
    ));
    loop {
        let cfg = std::fs::read_to_string(haproxy_cfg).unwrap_or_default();
        if cfg.contains(&needle) {
            break;
        }
        if back.elapsed() > Duration::from_secs(120) {
            return Err("the change made during the outage never reached the edge".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rows.push((
        "a change made during a 10 s API outage, live on the edge after the API's return".into(),
        format!("{:.1} s", back.elapsed().as_secs_f64()),
        "the edge's config file names the new endpoint: the deploy (render, haproxy -c and reload of 5,000 listeners) included".into(),
    ));
    let whole = Proc::Pid(pid).vm_hwm_kib().ok_or("no VmHWM")?;
    rows.push((
        "edgelb run peak RSS (VmHWM) over the whole run, the outage's relists and catch-up deploy included".into(),
        format!("{:.1} MiB", whole as f64 / 1024.0),
        "target < 128 MiB".into(),
    ));
    Ok(rows)
}

/// The value of the series starting with `prefix` in the controller's `/metrics`.
async fn metric(http: SocketAddr, prefix: &str) -> Option<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(http).await.ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: edgelb\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut out = String::new();
        stream.read_to_string(&mut out).await.ok()?;
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
}
