//! Your own `EdgeHost`: how edgelb's deploy transaction reaches an edge (files, commands,
//! HAProxy's sockets). edgelb has the local host and the native SSH one; implement the
//! trait for any other way in (an agent, `kubectl exec`, another SSH library). Here the
//! host wraps edgelb's `LocalHost` and records every step with its duration: an audit trail
//! of what a deploy does on an edge.
//!
//! The program starts a real haproxy (master-worker, master socket) on a free loopback
//! port in front of two demo backends, then puts three configs live through the host with
//! `apply_config`, edgelb's transaction: the one it runs (unchanged), a move to the other
//! backend (runtime API, no reload), a second listen port (validated, swapped, reloaded
//! and confirmed). It prints the audit trail and exits non-zero when a step fails.
//!
//! Needs `haproxy` on PATH (Debian: `apt-get install haproxy`).
//!
//! Run: `cargo run -p edgelb-examples --bin own_edge_host`

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use edgelb_core::{
    Applied, DeployError, Endpoint, PortSpec, ProxyProtocol, RenderedConfig, ServiceKey, Snapshot,
};
use edgelb_examples::{
    ScratchHaproxy, demo_backend, free_port, haproxy_installed, loopback_node, wait_for_backend,
};
use edgelb_haproxy::deploy::apply_config;
use edgelb_haproxy::{EdgeHost, ExecOutput, HaproxyLayout, HaproxyRenderer, LocalHost};

type Error = Box<dyn std::error::Error>;

/// An `EdgeHost` that does what `inner` does and records each step.
struct AuditedHost<H> {
    inner: H,
    trail: Mutex<Vec<String>>,
}

impl<H: EdgeHost> AuditedHost<H> {
    fn new(inner: H) -> Self {
        Self {
            inner,
            trail: Mutex::new(Vec::new()),
        }
    }

    fn record<T>(&self, step: String, started: Instant, result: &Result<T, DeployError>) {
        let took = started.elapsed();
        let line = match result {
            Ok(_) => format!("{took:>10.1?}  {step}"),
            Err(e) => format!("{took:>10.1?}  {step}  FAILED: {e}"),
        };
        self.trail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    /// The steps recorded since the last call.
    fn take_trail(&self) -> Vec<String> {
        std::mem::take(&mut *self.trail.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[async_trait]
impl<H: EdgeHost> EdgeHost for AuditedHost<H> {
    fn node(&self) -> &str {
        self.inner.node()
    }

    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, DeployError> {
        let started = Instant::now();
        let result = self.inner.read_file(path).await;
        self.record(format!("read {path}"), started, &result);
        result
    }

    async fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), DeployError> {
        let started = Instant::now();
        let result = self.inner.write_file(path, contents).await;
        self.record(
            format!("write {path} ({} bytes)", contents.len()),
            started,
            &result,
        );
        result
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), DeployError> {
        let started = Instant::now();
        let result = self.inner.rename(from, to).await;
        self.record(format!("rename {from} → {to}"), started, &result);
        result
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), DeployError> {
        let started = Instant::now();
        let result = self.inner.copy(from, to).await;
        self.record(format!("copy {from} → {to}"), started, &result);
        result
    }

    async fn remove_file(&self, path: &str) -> Result<(), DeployError> {
        let started = Instant::now();
        let result = self.inner.remove_file(path).await;
        self.record(format!("remove {path}"), started, &result);
        result
    }

    async fn exec(&self, argv: &[String]) -> Result<ExecOutput, DeployError> {
        let started = Instant::now();
        let result = self.inner.exec(argv).await;
        self.record(format!("exec {}", argv.join(" ")), started, &result);
        result
    }

    async fn socket_command(&self, socket: &str, command: &str) -> Result<String, DeployError> {
        let started = Instant::now();
        let result = self.inner.socket_command(socket, command).await;
        self.record(format!("{socket}: {command}"), started, &result);
        result
    }

    async fn tcp_connect(&self, port: u16) -> Result<(), DeployError> {
        let started = Instant::now();
        let result = self.inner.tcp_connect(port).await;
        self.record(format!("connect 127.0.0.1:{port}"), started, &result);
        result
    }
}

/// Service `demo/web` on the edge's `listen` ports, served by `backend`.
fn snapshot(listen: &[u16], backend: SocketAddr) -> Result<Snapshot, Error> {
    let mut snapshot = Snapshot::default();
    for (i, &port) in listen.iter().enumerate() {
        snapshot.insert_port(
            ServiceKey::new("demo", "web")?,
            &format!("port{i}"),
            PortSpec::new(port, ProxyProtocol::V2)
                .with_endpoint(Endpoint::ready(backend.ip(), backend.port())),
        )?;
    }
    Ok(snapshot)
}

/// Starts haproxy on `config` (as an edge's service manager would) and waits for its worker.
async fn start_haproxy(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    config: &RenderedConfig,
) -> Result<tokio::process::Child, Error> {
    host.write_file(&layout.config_path, config.text.as_bytes())
        .await?;
    let child = tokio::process::Command::new(&layout.haproxy_bin)
        .args(["-W", "-S", &layout.master_socket, "-f", &layout.config_path])
        .kill_on_drop(true)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let procs = host
            .socket_command(&layout.master_socket, "show proc")
            .await;
        if procs.is_ok_and(|p| p.contains(" worker ")) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            return Err("haproxy did not start within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Puts `config` live through the host, checks how, and prints the steps it took.
async fn deploy(
    host: &AuditedHost<LocalHost>,
    layout: &HaproxyLayout,
    config: &RenderedConfig,
    expected: Applied,
) -> Result<(), Error> {
    let applied = apply_config(host, layout, config).await?;
    println!("{applied:?}:");
    for step in host.take_trail() {
        println!("  {step}");
    }
    if applied != expected {
        return Err(format!("expected {expected:?}, got {applied:?}").into());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    if !haproxy_installed() {
        return Err("haproxy is not installed (Debian: apt-get install haproxy)".into());
    }
    let scratch = ScratchHaproxy::new()?;
    let layout = scratch.layout();
    let renderer = HaproxyRenderer::new(scratch.render_options())?;
    let demo1 = demo_backend("demo-1").await?;
    let demo2 = demo_backend("demo-2").await?;
    let (listen, second) = (free_port()?, free_port()?);
    let mut node = loopback_node("local", listen);
    node.extra_binds
        .insert(second, vec![format!("127.0.0.1:{second}")]);
    let host = AuditedHost::new(LocalHost::new("local"));
    let within = Duration::from_secs(15);

    let first = renderer.render_config(&snapshot(&[listen], demo1)?, &node)?;
    let mut haproxy = start_haproxy(&host, &layout, &first).await?;
    host.take_trail();
    deploy(&host, &layout, &first, Applied::Unchanged).await?;
    println!("  → {}", wait_for_backend(listen, "demo-1", within).await?);

    let moved = renderer.render_config(&snapshot(&[listen], demo2)?, &node)?;
    deploy(&host, &layout, &moved, Applied::RuntimeUpdated).await?;
    println!("  → {}", wait_for_backend(listen, "demo-2", within).await?);

    let two_ports = renderer.render_config(&snapshot(&[listen, second], demo2)?, &node)?;
    deploy(&host, &layout, &two_ports, Applied::Reloaded).await?;
    println!("  → {}", wait_for_backend(second, "demo-2", within).await?);

    haproxy.kill().await?;
    Ok(())
}
