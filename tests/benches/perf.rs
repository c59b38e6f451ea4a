//! edgelb's performance suite: one command, one table, every figure measured in the same run.
//! Prints; asserts nothing about timings.
//!
//! ```text
//! cargo bench -p edgelb-tests --bench perf     # root, haproxy, sshd, ssh, socat, ansible
//! EDGELB_PERF_CHANGES=40 EDGELB_PERF_ANSIBLE_CHANGES=20 cargo bench -p edgelb-tests --bench perf
//! EDGELB_PERF_ONLY=change,fanout cargo bench -p edgelb-tests --bench perf   # some sections
//! ```
//!
//! What it measures (see docs/performance.md for the latest table):
//! * render time of a fresh renderer and of one endpoint change after it, for 1,000
//!   services × 10 endpoints and 1 service × 10,000 endpoints;
//! * an endpoint change until `deploy()` confirms it live on 3 edges: the runtime-API path
//!   (native SSH, open sessions), the reload path (the same change plus a config change that
//!   forces a reload), the Ansible deployer, and one `ssh` per edge running the same steps
//!   (OpenSSH one-shot);
//! * fan-out: the runtime-API and reload paths on 1, 10 and 20 edges;
//! * emulated WAN links: 1 and 20 edges, each behind a delay proxy of its own (20 ms round
//!   trip), the runtime-API path (until acknowledged, whole transaction) and the reload path,
//!   in ms and round trips, and the CPU of one `haproxy -c` on an edge;
//! * an endpoints-file edit until live on a local edge: the file source, the pipeline's
//!   default debounce and the local deployer with a real haproxy on loopback (debounce + the
//!   rest, median and p90);
//! * long-lived connections (held open through the edge) cut by 100 endpoint changes, on
//!   the runtime path and on the reload path (with the test renderer's `hard-stop-after
//!   10s`);
//! * the peak RSS of `edgelb run` holding 10,000 endpoints across 100 LoadBalancer services,
//!   watched from the fake Kubernetes API server and deployed to 3 edges;
//! * `kube`: LoadBalancer mode at 5,000 Services × 10 endpoints with 2 ms of API latency
//!   (time until every status is written, CPU per unrelated slice change, peak RSS, catch-up
//!   after a 10 s outage), deploying to a local haproxy; see `edgelb_tests::bench_kube`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edgelb_ansible::AnsibleDeployer;
use edgelb_core::{
    Applied, Deployer, EdgeNode, Endpoint, NodeConfig, PortSpec, ProxyProtocol, Renderer,
    ServiceKey, Snapshot, SshTarget,
};
use edgelb_haproxy::ssh::{ClientKey, KnownHosts, SshCredentials};
use edgelb_haproxy::{ConfigDuration, HaproxyRenderer, RenderOptions, SshDeployer};
use edgelb_tests::bench_env::{env_usize, listing_only, runtime, testbed_or_skip, timed_deploy};
use edgelb_tests::bench_kube::spawn_kube_controller;
use edgelb_tests::bench_stats::stats;
use edgelb_tests::delay_proxy::DelayProxy;
use edgelb_tests::fake_apiserver::FakeApiServer;
use edgelb_tests::openssh_baseline::OpenSsh;
use edgelb_tests::proc_usage::Proc;
use edgelb_tests::ssh_channels::{ChannelSeen, channel_seen};
use edgelb_tests::testbed::ansible::find_ansible_playbook;
use edgelb_tests::testbed::scenario::{LISTEN_PORT, web_snapshot_of};
use edgelb_tests::testbed::{BACKEND_PORT, Backend, Held, Testbed, TestbedConfig};
use edgelb_tests::testbed_tools;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// When each node's runtime API commands were acknowledged (the `runtime API commands
/// applied` debug event of `edgelb_haproxy`): the moment the change is live in HAProxy, before
/// the new file is swapped in and verified.
static LIVE_MARKS: std::sync::Mutex<Vec<(String, Instant)>> = std::sync::Mutex::new(Vec::new());

struct LiveMarks;

/// Every SSH channel the deployer opened (`edgelb_haproxy::ssh::CHANNEL_TARGET`): whether it
/// was opened ahead (off the path) and whether the server accepted it.
static CHANNELS: std::sync::Mutex<Vec<ChannelSeen>> = std::sync::Mutex::new(Vec::new());

/// Counts the channels of `CHANNELS` since it was cleared: (on the path and accepted, on the
/// path and refused, opened ahead).
fn channel_counts() -> (usize, usize, usize) {
    let seen = CHANNELS.lock().unwrap();
    let on_path = |opened: bool| {
        seen.iter()
            .filter(|c| !c.ahead && c.opened == opened)
            .count()
    };
    (
        on_path(true),
        on_path(false),
        seen.iter().filter(|c| c.ahead).count(),
    )
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LiveMarks {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if let Some(seen) = channel_seen(event) {
            CHANNELS.lock().unwrap().push(seen);
            return;
        }
        if event.metadata().target() != edgelb_haproxy::RUNTIME_APPLIED_TARGET {
            return;
        }
        #[derive(Default)]
        struct Fields {
            node: Option<String>,
        }
        impl tracing::field::Visit for Fields {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "node" {
                    self.node = Some(value.to_owned());
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Some(node) = fields.node {
            LIVE_MARKS.lock().unwrap().push((node, Instant::now()));
        }
    }
}

fn install_live_marks() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let subscriber =
        tracing_subscriber::registry().with(LiveMarks.with_filter(EnvFilter::new(format!(
            "{}=debug,{}=debug",
            edgelb_haproxy::RUNTIME_APPLIED_TARGET,
            edgelb_haproxy::ssh::CHANNEL_TARGET
        ))));
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Whether `section` runs: all of them, or those listed in `EDGELB_PERF_ONLY` (comma-separated:
/// render, kube, fileedit, change, fanout, wan, connections, memory), for a quicker look at
/// one part.
fn section(name: &str) -> bool {
    match std::env::var("EDGELB_PERF_ONLY") {
        Ok(only) => only.split(',').any(|s| s.trim() == name),
        Err(_) => true,
    }
}

/// Rows of the final table.
#[derive(Default)]
struct Table {
    rows: Vec<(String, String, String)>,
}

impl Table {
    fn add(&mut self, what: impl Into<String>, figure: impl Into<String>, note: impl Into<String>) {
        let (what, figure, note) = (what.into(), figure.into(), note.into());
        println!("  {what}: {figure} {note}");
        self.rows.push((what, figure, note));
    }

    fn timing(&mut self, what: &str, samples: &[f64], note: &str) -> f64 {
        let (median, p95) = stats(samples);
        self.add(
            what,
            format!("median {median:.1} ms, p95 {p95:.1} ms"),
            format!("(n={}) {note}", samples.len()),
        );
        median
    }

    fn print(&self) {
        println!();
        println!("| measurement | figure | notes |");
        println!("|---|---|---|");
        for (what, figure, note) in &self.rows {
            println!("| {what} | {figure} | {note} |");
        }
    }
}

/// `services` services of `per_service` endpoints each, on ports 10000…
fn big_snapshot(services: usize, per_service: usize) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for s in 0..services {
        let mut port = PortSpec::new(10_000 + s as u16, ProxyProtocol::V2);
        for e in 0..per_service {
            let n = (s * per_service + e) as u32;
            let ip = Ipv4Addr::from(0x0a64_0000 + n); // 10.100.0.0/16 and up
            port.add_endpoint(Endpoint::ready(IpAddr::V4(ip), 8080));
        }
        snapshot
            .insert_port(
                ServiceKey::new("bench", format!("svc-{s}")).unwrap(),
                "http",
                port,
            )
            .unwrap();
    }
    snapshot
}

fn renderer_with(hard_stop_secs: u64) -> HaproxyRenderer {
    HaproxyRenderer::new(RenderOptions {
        hard_stop_after: ConfigDuration::from_secs(hard_stop_secs),
        ..RenderOptions::default()
    })
    .unwrap()
}

fn render_times(table: &mut Table) {
    let node = EdgeNode::new("edge-1");
    for (label, services, per) in [
        ("1,000 services × 10 endpoints", 1_000, 10),
        ("1 service × 10,000 endpoints", 1, 10_000),
    ] {
        let snapshot = big_snapshot(services, per);
        // One endpoint more in the first service: the change a controller renders next.
        let mut changed = snapshot.clone();
        let key = ServiceKey::new("bench", "svc-0").unwrap();
        changed
            .services
            .get_mut(&key)
            .unwrap()
            .ports
            .get_mut("http")
            .unwrap()
            .add_endpoint(Endpoint::ready("10.99.0.1".parse().unwrap(), 8080));
        let (mut fresh, mut change) = (Vec::new(), Vec::new());
        let mut bytes = 0;
        for _ in 0..7 {
            let r = renderer_with(10);
            let t = Instant::now();
            let cfg = r.render(&snapshot, &node).unwrap();
            fresh.push(t.elapsed().as_secs_f64() * 1000.0);
            bytes = cfg.text.len();
            let t = Instant::now();
            r.render(&changed, &node).unwrap();
            change.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        table.timing(
            &format!("render, {label}, fresh renderer"),
            &fresh,
            &format!("{} KiB of config", bytes / 1024),
        );
        table.timing(
            &format!("render, {label}, next render after one endpoint change"),
            &change,
            "",
        );
    }
}

/// Deploys `snapshot` (rendered by `renderer`) to edges `0..n`; the time until every edge
/// confirmed, checking each outcome.
async fn deploy_to(
    tb: &Testbed,
    deployer: &dyn Deployer,
    renderer: &HaproxyRenderer,
    snapshot: &Snapshot,
    n: usize,
    expect: Applied,
) -> f64 {
    timed_deploy(deployer, &tb.batch(renderer, snapshot, n), &[expect]).await
}

/// One way of the emulated WAN link: 20 ms round trips, a nearby cloud region.
const WAN_ONE_WAY: Duration = Duration::from_millis(10);

/// What one emulated-WAN run measured, in ms per change.
struct WanRun {
    /// Until HAProxy acknowledged the commands on every edge.
    live: Vec<f64>,
    /// `deploy()` until verified on every edge, runtime-API path.
    whole: Vec<f64>,
    /// `deploy()` until confirmed on every edge, reload path.
    reload: Vec<f64>,
    /// SSH channels per reload and edge: on the path and accepted, on the path and refused
    /// (the master re-executing), opened ahead.
    reload_channels: (f64, f64, f64),
}

/// Endpoint changes on edges `0..n`, each reached through a [`DelayProxy`] of its own
/// (`WAN_ONE_WAY` each way), all in one `deploy()`: the runtime-API path (whole
/// transaction, and until the commands were acknowledged on every edge), then the reload
/// path, `changes` of each.
async fn wan_changes(
    tb: &Testbed,
    renderers: &[HaproxyRenderer; 2],
    sets: &[Vec<SocketAddr>; 2],
    n: usize,
    changes: usize,
) -> Result<WanRun, String> {
    let mut proxies = Vec::new();
    let mut lines = Vec::new();
    let mut nodes = Vec::new();
    for edge in &tb.edges[..n] {
        let proxy = DelayProxy::start(SocketAddr::from((edge.ip, 22)), WAN_ONE_WAY)
            .await
            .map_err(|e| e.to_string())?;
        let port = proxy.addr.port();
        lines.push(format!("[127.0.0.1]:{port} {}", edge.host_key));
        nodes.push(EdgeNode::new(&edge.name).with_ssh(SshTarget {
            host: "127.0.0.1".into(),
            port,
            user: "root".into(),
        }));
        proxies.push(proxy);
    }
    let known_hosts = KnownHosts::from_lines(lines).map_err(|e| e.to_string())?;
    let key = ClientKey::from_file(&tb.key.private, None).map_err(|e| e.to_string())?;
    let deployer = SshDeployer::new(edgelb_haproxy::SshDeployerConfig {
        default_credentials: Some(SshCredentials::new(key, known_hosts)),
        max_concurrency: 32,
        ..tb.deployer_config()
    })
    .map_err(|e| e.to_string())?;
    // Rendered before the clock starts, as in the other rows: the deploy is what is timed.
    let batch = |renderer: &HaproxyRenderer, set: &[SocketAddr]| {
        let snapshot = web_snapshot_of(LISTEN_PORT, set);
        nodes
            .iter()
            .map(|node| NodeConfig {
                node: node.clone(),
                config: renderer.render(&snapshot, node).unwrap(),
            })
            .collect::<Vec<_>>()
    };
    let deploy = |batch: Vec<NodeConfig>| {
        let deployer = &deployer;
        async move {
            let outcomes = deployer.deploy(&batch).await;
            outcomes.into_iter().map(|o| o.result).collect::<Vec<_>>()
        }
    };
    let all = |results: &[Result<Applied, edgelb_core::DeployError>], want: Applied| match results
        .iter()
        .find(|r| **r != Ok(want))
    {
        Some(other) => Err(format!("expected {want:?} on every edge, got {other:?}")),
        None => Ok(()),
    };
    // Sessions open, every edge on set 0.
    for r in deploy(batch(&renderers[0], &sets[0])).await {
        r.map_err(|e| e.to_string())?;
    }
    let mut run = WanRun {
        live: Vec::new(),
        whole: Vec::new(),
        reload: Vec::new(),
        reload_channels: (0.0, 0.0, 0.0),
    };
    for i in 0..changes {
        let change = batch(&renderers[0], &sets[(i + 1) % 2]);
        LIVE_MARKS.lock().unwrap().clear();
        let t = Instant::now();
        let applied = deploy(change).await;
        run.whole.push(t.elapsed().as_secs_f64() * 1000.0);
        all(&applied, Applied::RuntimeUpdated)?;
        let marks = LIVE_MARKS.lock().unwrap();
        if marks.len() >= n
            && let Some(last) = marks.iter().map(|(_, at)| *at).max()
        {
            run.live.push(last.duration_since(t).as_secs_f64() * 1000.0);
        }
    }
    for i in 0..changes {
        let k = (i + 1) % 2;
        let change = batch(&renderers[k], &sets[k]);
        CHANNELS.lock().unwrap().clear();
        let t = Instant::now();
        let applied = deploy(change).await;
        run.reload.push(t.elapsed().as_secs_f64() * 1000.0);
        all(&applied, Applied::Reloaded)?;
        let (path, refused, ahead) = channel_counts();
        let per = (changes * n) as f64;
        run.reload_channels.0 += path as f64 / per;
        run.reload_channels.1 += refused as f64 / per;
        run.reload_channels.2 += ahead as f64 / per;
    }
    drop(proxies);
    Ok(run)
}

/// CPU (user + system, ms) of one `haproxy -c` of edge 1's live config, run inside the edge
/// `runs` times: what every whole transaction costs each edge on top of its round trips.
fn haproxy_check_cpu_ms(tb: &Testbed, runs: usize) -> f64 {
    let before = Proc::Own.children_cpu_ms();
    for _ in 0..runs {
        let _ = tb.edges[0]
            .command(Path::new("haproxy"))
            .args(["-c", "-q", "-f", "/etc/haproxy/haproxy.cfg"])
            .output();
    }
    (Proc::Own.children_cpu_ms() - before) / runs.max(1) as f64
}

/// Brings edges `0..n` to `set` rendered by `renderer`, by whatever path it takes.
async fn settle(
    tb: &Testbed,
    deployer: &SshDeployer,
    renderer: &HaproxyRenderer,
    set: &[SocketAddr],
    n: usize,
) {
    let batch = tb.batch(renderer, &web_snapshot_of(LISTEN_PORT, set), n);
    for o in deployer.deploy(&batch).await {
        assert!(o.result.is_ok(), "{o:?}");
    }
}

/// Two endpoint sets to alternate between (b1 stays; b2 or b3 joins).
fn endpoint_sets(b: &[&Backend]) -> [Vec<SocketAddr>; 2] {
    [vec![b[0].addr, b[1].addr], vec![b[0].addr, b[2].addr]]
}

/// `changes` endpoint changes on edges `0..n` through the runtime API: the time of each whole
/// `deploy()`, the time until HAProxy acknowledged the commands on all `n` edges, and the
/// CPU this process (the deployer) spent per edge and change, in ms.
async fn runtime_changes(
    tb: &Testbed,
    deployer: &SshDeployer,
    renderer: &HaproxyRenderer,
    sets: &[Vec<SocketAddr>; 2],
    n: usize,
    changes: usize,
) -> (Vec<f64>, Vec<f64>, f64) {
    settle(tb, deployer, renderer, &sets[0], n).await;
    let mut samples = Vec::new();
    let mut live = Vec::new();
    let cpu = Proc::Own.cpu_ms();
    for i in 0..changes {
        let snapshot = web_snapshot_of(LISTEN_PORT, &sets[(i + 1) % 2]);
        LIVE_MARKS.lock().unwrap().clear();
        let t = Instant::now();
        samples.push(
            deploy_to(
                tb,
                deployer,
                renderer,
                &snapshot,
                n,
                Applied::RuntimeUpdated,
            )
            .await,
        );
        let marks = LIVE_MARKS.lock().unwrap();
        if marks.len() == n {
            let last = marks.iter().map(|(_, at)| *at).max().unwrap();
            live.push(last.duration_since(t).as_secs_f64() * 1000.0);
        }
    }
    let cpu_per_edge = (Proc::Own.cpu_ms() - cpu) / (changes * n) as f64;
    (samples, live, cpu_per_edge)
}

/// `changes` endpoint changes on edges `0..n` that also change `hard-stop-after`, so each
/// one reloads.
async fn reload_changes(
    tb: &Testbed,
    native: &SshDeployer,
    deployer: &dyn Deployer,
    renderers: &[HaproxyRenderer; 2],
    sets: &[Vec<SocketAddr>; 2],
    n: usize,
    changes: usize,
) -> Vec<f64> {
    settle(tb, native, &renderers[0], &sets[0], n).await;
    let mut samples = Vec::new();
    for i in 0..changes {
        let k = (i + 1) % 2;
        let snapshot = web_snapshot_of(LISTEN_PORT, &sets[k]);
        samples.push(deploy_to(tb, deployer, &renderers[k], &snapshot, n, Applied::Reloaded).await);
    }
    samples
}

/// One `ssh` per edge, in parallel, each running the reload steps of
/// [`edgelb_tests::openssh_baseline::OPENSSH_SCRIPT`].
fn openssh_changes(
    tb: &Testbed,
    renderers: &[HaproxyRenderer; 2],
    sets: &[Vec<SocketAddr>; 2],
    n: usize,
    changes: usize,
) -> Vec<f64> {
    let ssh = OpenSsh::new(tb);
    let mut samples = Vec::new();
    for i in 0..changes {
        let k = (i + 1) % 2;
        let snapshot = web_snapshot_of(LISTEN_PORT, &sets[k]);
        samples.push(ssh.deploy(tb, &tb.batch(&renderers[k], &snapshot, n), false));
    }
    samples
}

fn ansible_deployer(tb: &Testbed) -> Option<AnsibleDeployer> {
    let playbook = find_ansible_playbook()?;
    Some(AnsibleDeployer::new(tb.ansible_deployer_config(playbook)).unwrap())
}

/// Opens `count` long-lived connections to `target` (`HOLD`, then echo).
async fn hold(target: SocketAddr, count: usize) -> Vec<Held> {
    let mut held = Vec::new();
    for _ in 0..count {
        held.push(Held::open(target).await);
    }
    held
}

/// How many held connections no longer echo.
async fn cut(held: &mut [Held]) -> usize {
    let mut cut = 0;
    for (i, h) in held.iter_mut().enumerate() {
        if h.ping(i, Duration::from_secs(2)).await.is_err() {
            cut += 1;
        }
    }
    cut
}

/// One `GET path` on `addr`: the whole response, `None` when it fails or takes over 5 s.
async fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    Some(out)
}

/// `EDGELB_BIN` (a relative path is taken from the workspace root, where the command is
/// typed; cargo runs benches from the package directory), else `edgelb` in this build's
/// target directory (release, then debug).
fn edgelb_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("EDGELB_BIN") {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
        return Some(workspace.join(bin));
    }
    // This bench runs from <target>/<profile>/deps/perf-….
    let exe = std::env::current_exe().ok()?;
    let target = exe.parent()?.parent()?.parent()?.to_owned();
    ["release", "debug"]
        .iter()
        .map(|p| target.join(p).join("edgelb"))
        .find(|p| p.exists())
}

/// Peak RSS of `edgelb run` with 10,000 endpoints in 100 LoadBalancer services from the
/// fake API server, deployed to edges 0..3; `None` (with why) when it cannot run.
async fn controller_rss(tb: &Testbed) -> Result<(u64, String, f64), String> {
    let bin = edgelb_binary().ok_or("no edgelb binary: cargo build -p edgelb first")?;
    let api = FakeApiServer::start().map_err(|e| e.to_string())?;
    const CLASS: &str = "edgelb.example/perf";
    for s in 0..100u16 {
        let name = format!("svc-{s}");
        api.apply_service(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "perf"},
            "spec": {
                "type": "LoadBalancer", "loadBalancerClass": CLASS,
                "ports": [{"name": "http", "protocol": "TCP", "port": 20_000 + s, "targetPort": BACKEND_PORT}],
                "selector": {"app": name}, "clusterIP": "10.43.0.10",
            },
        }))
        .map_err(|e| format!("{e:?}"))?;
        let endpoints: Vec<serde_json::Value> = (0..100u32)
            .map(|e| {
                let ip = Ipv4Addr::from(0x0a64_0000 + u32::from(s) * 256 + e);
                json!({"addresses": [ip.to_string()], "conditions": {"ready": true, "serving": true, "terminating": false}})
            })
            .collect();
        api.apply_slice(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-abc"), "namespace": "perf",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "http", "protocol": "TCP", "port": BACKEND_PORT}],
        }))
        .map_err(|e| format!("{e:?}"))?;
    }
    let dir = tb.dir.join("perf-controller");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let known: Vec<String> = tb.edges[..3].iter().map(|e| e.known_hosts_line()).collect();
    std::fs::write(dir.join("known_hosts"), known.join("\n") + "\n").map_err(|e| e.to_string())?;
    api.write_kubeconfig(&dir.join("kubeconfig"))
        .map_err(|e| e.to_string())?;
    let edges: Vec<EdgeNode> = tb.edges[..3].iter().map(|e| e.node()).collect();
    let config = json!({
        "source": {"kubernetes": {"load_balancer": {"class": CLASS}}},
        "edges": edges,
        "deployer": {"ssh": {"key": tb.key.private, "known_hosts": "known_hosts",
                              "connect_timeout": "2s", "step_timeout": "30s"}},
        "haproxy": {"hard_stop_after": "10s", "health_check": {"enabled": false}},
        "pipeline": {"debounce": "200ms"},
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
    let mut child = spawn_kube_controller(&bin, &config_path, http, &dir, "info")?;
    let pid = child.id();
    let series: Vec<String> = tb.edges[..3]
        .iter()
        .map(|e| format!("edgelb_node_in_sync{{node=\"{}\"}} 1", e.name))
        .collect();
    let mut result =
        Err("edgelb did not bring 3 edges in sync with 10,000 endpoints within 120 s".to_owned());
    while started.elapsed() < Duration::from_secs(120) {
        if let Ok(Some(_)) = child.try_wait() {
            result = Err("edgelb exited early; see its log".into());
            break;
        }
        if let Some(body) = http_get(http, "/metrics").await
            && series.iter().all(|s| body.lines().any(|l| l == s))
            && body.contains("edgelb_endpoints{")
        {
            let converged = started.elapsed().as_secs_f64();
            // Let it sit through a resync-free moment, then read the high-water mark.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let live = tb.edges[0].live_config();
            result = Proc::Pid(pid)
                .vm_hwm_kib()
                .map(|kib| {
                    (
                        kib,
                        format!(
                            "{} server lines on edge 1",
                            live.matches("    server ").count()
                        ),
                        converged,
                    )
                })
                .ok_or_else(|| "no VmHWM".to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    result.map(|(kib, what, secs)| (kib, format!("{what}; binary {}", bin.display()), secs))
}

/// The "endpoints-file edit → live on a local edge" row: `edits` edits through the file
/// source, a pipeline with the default debounce and the local deployer (real haproxy on
/// loopback); see `edgelb_tests::bench_file_edit`.
fn file_edit_row(table: &mut Table, edits: usize) {
    let debounce = edgelb_core::PipelineConfig::default().debounce;
    let debounce_ms = debounce.as_secs_f64() * 1000.0;
    let marks = edgelb_tests::bench_file_edit::LiveMarks {
        clear: &|| LIVE_MARKS.lock().unwrap().clear(),
        last: &|| LIVE_MARKS.lock().unwrap().iter().map(|(_, at)| *at).max(),
    };
    let what = "endpoints-file edit → live on a local edge (file events, default debounce, local deployer, haproxy on loopback)";
    match runtime().block_on(edgelb_tests::bench_file_edit::file_edit_to_live(
        edits, debounce, marks,
    )) {
        Ok(samples) => {
            let (median, _) = stats(&samples);
            let p90 = edgelb_tests::bench_stats::quantile(&samples, 0.9);
            table.add(
                what,
                format!("debounce {debounce_ms:.0} ms + {:.1} ms median, + {:.1} ms p90", median - debounce_ms, p90 - debounce_ms),
                format!("(n={}) from just before the write until HAProxy acknowledged the runtime commands: {median:.1} / {p90:.1} ms in all; target debounce + ≤ 30 ms median", samples.len()),
            );
        }
        Err(why) => table.add(what, "not measured", why),
    }
}

fn main() {
    if listing_only() {
        return;
    }
    let suite = Instant::now();
    install_live_marks();
    let changes = env_usize("EDGELB_PERF_CHANGES", 30);
    let ansible_changes = env_usize("EDGELB_PERF_ANSIBLE_CHANGES", 10);
    let mut table = Table::default();

    if section("render") {
        println!("render:");
        render_times(&mut table);
    }

    if section("kube") {
        println!("kubernetes mode at scale:");
        let dir = std::env::temp_dir().join(format!("edgelb-perf-kube-{}", std::process::id()));
        match edgelb_binary() {
            Some(bin) => {
                match runtime().block_on(edgelb_tests::bench_kube::kube_scale(&bin, &dir)) {
                    Ok(rows) => {
                        for (what, figure, note) in rows {
                            table.add(what, figure, format!("{note}; binary {}", bin.display()));
                        }
                    }
                    Err(why) => table.add("kube", "not measured", why),
                }
            }
            None => table.add(
                "kube",
                "not measured",
                "no edgelb binary: cargo build -p edgelb first",
            ),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    if section("fileedit") {
        println!("endpoints-file edit → live on a local edge:");
        file_edit_row(&mut table, env_usize("EDGELB_PERF_FILE_EDITS", 30));
    }

    if !["change", "fanout", "wan", "connections", "memory"]
        .iter()
        .any(|name| section(name))
    {
        table.print();
        return;
    }
    let rt = runtime();
    let t = Instant::now();
    let Some(tb) = testbed_or_skip(
        "testbed parts",
        TestbedConfig {
            edges: 20,
            backends: 3,
        },
        testbed_tools!(),
    ) else {
        table.print();
        return;
    };
    println!(
        "testbed {} with 20 edges up in {:.1}s",
        tb.id(),
        t.elapsed().as_secs_f64()
    );
    let b: Vec<&Backend> = tb.cluster.backends.iter().collect();
    let sets = endpoint_sets(&b);
    let deployer = SshDeployer::new(edgelb_haproxy::SshDeployerConfig {
        max_concurrency: 32,
        ..tb.deployer_config()
    })
    .unwrap();
    let renderers = [renderer_with(10), renderer_with(11)];

    rt.block_on(async {
        // Every edge on set 0 (a reload from the testbed's initial config), sessions open.
        settle(&tb, &deployer, &renderers[0], &sets[0], 20).await;

        if section("change") {
        println!("endpoint change → live on 3 edges:");
        let (runtime3, live3, _) = runtime_changes(&tb, &deployer, &renderers[0], &sets, 3, changes).await;
        let rt3 = table.timing("endpoint change → live, 3 edges, runtime-API path (native SSH), whole transaction", &runtime3, "deploy() until verified: commands, haproxy -c, swap, show servers state; target < 20 ms median");
        table.timing("endpoint change → live, 3 edges, runtime-API path, until HAProxy acknowledged the commands on all 3", &live3, "traffic follows the new endpoints from here; the file is swapped after");
        let reload3 = reload_changes(&tb, &deployer, &deployer, &renderers, &sets, 3, changes).await;
        let rl3 = table.timing("endpoint change → live, 3 edges, reload path (native SSH)", &reload3, "validate, swap, reload, confirm");
        settle(&tb, &deployer, &renderers[0], &sets[0], 3).await;
        let oneshot = openssh_changes(&tb, &renderers, &sets, 3, changes);
        let os3 = table.timing("endpoint change → live, 3 edges, OpenSSH one-shot (one ssh per edge)", &oneshot, "same steps as the reload path, socat on the edge");
        match ansible_deployer(&tb).filter(|_| ansible_changes > 0) {
            Some(ansible) => {
                let samples = reload_changes(&tb, &deployer, &ansible, &renderers, &sets, 3, ansible_changes).await;
                let an3 = table.timing("endpoint change → live, 3 edges, Ansible deployer", &samples, "always reloads; fewer changes to fit the time");
                table.add("ratio Ansible / runtime-API, 3 edges", format!("{:.0}×", an3 / rt3), "");
            }
            None => table.add("Ansible deployer", "skipped", "no target/venv/bin/ansible-playbook, or EDGELB_PERF_ANSIBLE_CHANGES=0"),
        }
        table.add("ratio reload / runtime-API, 3 edges", format!("{:.1}×", rl3 / rt3), "");
        table.add("ratio OpenSSH one-shot / runtime-API, 3 edges", format!("{:.1}×", os3 / rt3), "");
        }

        if section("fanout") {
        println!("fan-out:");
        let (mut fan, mut fan_live, mut fan_cpu) = (Vec::new(), Vec::new(), Vec::new());
        for n in [1, 10, 20] {
            let (samples, live, cpu) = runtime_changes(&tb, &deployer, &renderers[0], &sets, n, changes).await;
            fan_cpu.push(cpu);
            fan.push(table.timing(&format!("fan-out, runtime-API path, {n} edge(s), whole transaction"), &samples, ""));
            fan_live.push(table.timing(&format!("fan-out, runtime-API path, {n} edge(s), until the commands were acknowledged on all"), &live, ""));
        }
        table.add("ratio 20 edges / 1 edge, runtime-API path, whole transaction", format!("{:.2}×", fan[2] / fan[0]), "target ≤ 2×; every edge runs haproxy -c on the same 2 cores");
        table.add("ratio 20 edges / 1 edge, runtime-API path, commands acknowledged", format!("{:.2}×", fan_live[2] / fan_live[0]), "target ≤ 2×");
        for (n, cpu) in [1, 10, 20].iter().zip(&fan_cpu) {
            table.add(format!("deployer CPU per edge and change, runtime-API path, {n} edge(s)"), format!("{cpu:.2} ms"), "user + system time of this process (render of the tiny test config included), from /proc/self/stat");
        }
        table.add(
            "model: 20 edges on machines of their own, runtime-API path, whole transaction",
            format!("≈ {:.1} ms ({:.2}× of 1 edge)", fan[0] + 19.0 * fan_cpu[2], (fan[0] + 19.0 * fan_cpu[2]) / fan[0]),
            "not measured: 1-edge median + 19 × the deployer's CPU per edge, as if that CPU were spent serially; what 20 edges share when each has its own CPU",
        );
        let mut fan_reload = Vec::new();
        for n in [1, 10, 20] {
            let samples = reload_changes(&tb, &deployer, &deployer, &renderers, &sets, n, changes.min(20)).await;
            fan_reload.push(table.timing(&format!("fan-out, reload path, {n} edge(s)"), &samples, ""));
        }
        table.add("ratio 20 edges / 1 edge, reload path", format!("{:.2}×", fan_reload[2] / fan_reload[0]), "");
        }

        if section("wan") {
        println!("emulated WAN link:");
        let rtt = 2.0 * WAN_ONE_WAY.as_secs_f64() * 1000.0;
        let mut live_medians = Vec::new();
        for n in [1, 20] {
            let edges = if n == 1 { "1 edge".to_owned() } else { format!("{n} edges, each") };
            let wan = format!("{edges} over an emulated WAN link ({rtt:.0} ms round trip)");
            match wan_changes(&tb, &renderers, &sets, n, changes.min(20)).await {
                Ok(run) => {
                    let note = |samples: &[f64]| format!("≈ {:.1} round trips; a TCP proxy per edge holds every byte {} ms each way", stats(samples).0 / rtt, WAN_ONE_WAY.as_millis());
                    live_medians.push(table.timing(&format!("{wan}, runtime-API path, until HAProxy acknowledged the commands"), &run.live, &note(&run.live)));
                    table.timing(&format!("{wan}, runtime-API path, whole transaction"), &run.whole, &note(&run.whole));
                    table.timing(&format!("{wan}, reload path"), &run.reload, &note(&run.reload));
                    let (path, refused, ahead) = run.reload_channels;
                    table.add(format!("{wan}, reload path, SSH channels per reload and edge"), format!("{path:.1} on the path, {refused:.1} refused, {ahead:.1} opened ahead"), "each channel on the path costs a round trip to open; refused: the master socket while HAProxy re-executes");
                }
                Err(why) => table.add(wan, "not measured", why),
            }
        }
        if let [one, twenty] = live_medians[..] {
            table.add("ratio 20 edges / 1 edge over emulated WAN links, until acknowledged", format!("{:.2}×", twenty / one), "target ≤ 1.3×");
        }
        let check = haproxy_check_cpu_ms(&tb, 10);
        table.add(
            "haproxy -c of the test config, CPU per run",
            format!("{check:.0} ms ({:.1} round trips of 20 ms)", check / rtt),
            format!("user + system, 10 runs in an edge; part of every whole transaction and reload on each edge; 20 edges need {:.0} ms of CPU per change, shared here by 2 cores", 20.0 * check),
        );
        }

        if section("connections") {
        println!("long-lived connections:");
        let target = tb.edge_addr(0, LISTEN_PORT);
        // b1 alone, so every held connection goes to the endpoint that stays.
        settle(&tb, &deployer, &renderers[0], &[b[0].addr], 1).await;
        let mut held = hold(target, 20).await;
        let before = tb.edges[0].show_proc(&tb.tools.tb_client);
        let (runtime100, _, _) = runtime_changes(&tb, &deployer, &renderers[0], &sets, 1, 100).await;
        let after = tb.edges[0].show_proc(&tb.tools.tb_client);
        let lost = cut(&mut held).await;
        table.add(
            "long-lived connections cut per 100 endpoint changes, runtime-API path",
            format!("{lost} of {}", held.len()),
            format!("reloads during the changes: {}; median change {:.1} ms", after.reloads - before.reloads, stats(&runtime100).0),
        );
        drop(held);
        settle(&tb, &deployer, &renderers[0], &[b[0].addr], 1).await;
        let mut held = hold(target, 20).await;
        let t = Instant::now();
        reload_changes(&tb, &deployer, &deployer, &renderers, &sets, 1, 100).await;
        let secs = t.elapsed().as_secs_f64();
        // Old workers live until hard-stop-after (10 s here; 15 min by default).
        tokio::time::sleep(Duration::from_secs(11)).await;
        let lost = cut(&mut held).await;
        table.add(
            "long-lived connections cut per 100 endpoint changes, reload path",
            format!("{lost} of {}", held.len()),
            format!("100 reloads in {secs:.0} s, checked 11 s later (hard-stop-after 10s)"),
        );
        drop(held);
        }

        if section("memory") {
        println!("controller memory:");
        match controller_rss(&tb).await {
            Ok((kib, what, secs)) => table.add(
                "edgelb run peak RSS (VmHWM), 10,000 endpoints in 100 services, fake API server, 3 edges",
                format!("{:.1} MiB", kib as f64 / 1024.0),
                format!("target < 64 MiB; converged in {secs:.1} s; {what}"),
            ),
            Err(why) => table.add("edgelb run peak RSS", "not measured", why),
        }
        }
    });
    drop(tb);
    table.add(
        "suite wall time",
        format!("{:.0} s", suite.elapsed().as_secs_f64()),
        "",
    );
    table.print();
}
