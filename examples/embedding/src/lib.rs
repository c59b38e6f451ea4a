//! # edgelb-examples
//!
//! Programs that embed edgelb's library crates, to copy into your own project. Each runs
//! with `cargo run -p edgelb-examples --bin NAME`, exits non-zero when what it shows
//! does not happen, and runs in CI (`scripts/test`):
//!
//! | example | shows |
//! |---|---|
//! | `own_source` | your own [`EndpointSource`](edgelb_core::EndpointSource) (endpoints from DNS) feeding the pipeline |
//! | `mocked_deployer` | the pipeline tested with a mockall deployer, `live_digest` expectation included |
//! | `simulated_edges` | stateful tests with the `testing` doubles: retries with `FakeDeployer`, drift with `SimDeployer` |
//! | `local_deployer` | `LocalDeployer` keeping a real haproxy on loopback in sync (needs haproxy) |
//! | `own_edge_host` | your own [`EdgeHost`](edgelb_haproxy::EdgeHost) through the real deploy transaction (needs haproxy) |
//!
//! This library holds only the plumbing the haproxy examples share: a scratch directory
//! for haproxy's files and sockets, a demo backend, and a client that asks through the
//! edge who answered.
#![forbid(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use edgelb_core::EdgeNode;
use edgelb_haproxy::{ConfigDuration, HaproxyLayout, RenderOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long [`ask`] waits for an answer.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// A scratch directory for a haproxy on this machine: its config, master socket and stats
/// socket, removed on drop.
#[derive(Debug)]
pub struct ScratchHaproxy {
    dir: tempfile::TempDir,
}

impl ScratchHaproxy {
    /// Creates the directory.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            dir: tempfile::Builder::new()
                .prefix("edgelb-example-")
                .tempdir()?,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Where the deployers find haproxy's files here: config and master socket in the
    /// directory.
    pub fn layout(&self) -> HaproxyLayout {
        HaproxyLayout {
            config_path: self.path("haproxy.cfg"),
            master_socket: self.path("master.sock"),
            ..HaproxyLayout::default()
        }
    }

    /// Render options for a haproxy run by whoever runs the example: stats socket in the
    /// directory, no user switch, chroot or syslog (an edge keeps the defaults), and old
    /// workers stopped soon after a reload.
    pub fn render_options(&self) -> RenderOptions {
        RenderOptions {
            stats_socket: self.path("admin.sock"),
            socket_dirs: vec![self.dir.path().display().to_string()],
            run_as: None,
            log: None,
            hard_stop_after: ConfigDuration::from_secs(5),
            ..RenderOptions::default()
        }
    }
}

/// Whether `haproxy` is on PATH: the haproxy examples say so and exit non-zero without it.
pub fn haproxy_installed() -> bool {
    std::process::Command::new("haproxy")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A loopback port nothing listens on now.
pub fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// An edge node that listens on `127.0.0.1:port` only (not on every interface).
pub fn loopback_node(name: &str, port: u16) -> EdgeNode {
    let mut node = EdgeNode::new(name).with_bind(port, format!("127.0.0.1:{port}"));
    node.replace_default_bind = true;
    node
}

/// Starts edgelb's demo backend named `name` on a loopback port (it answers with the
/// client address the PROXY header carried) and returns its address. It serves until the
/// program ends.
pub async fn demo_backend(name: &str) -> io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(edgelb_haproxy::demo_backend::serve(
        listener,
        name.to_owned(),
    ));
    Ok(addr)
}

/// Sends an HTTP request to `127.0.0.1:port` (the edge) and returns the demo backend's
/// answer line, `edgelb-demo backend=… client=… proxy=…`, within [`ASK_TIMEOUT`].
pub async fn ask(port: u16) -> io::Result<String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: example\r\n\r\n")
            .await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        Ok::<_, io::Error>(answer)
    };
    let answer = tokio::time::timeout(ASK_TIMEOUT, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer through the edge"))??;
    answer
        .lines()
        .find(|l| l.starts_with("edgelb-demo "))
        .map(str::to_owned)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a demo backend's answer: {answer:?}"),
            )
        })
}

/// Asks through the edge until backend `name` answers, for at most `within`: a change is
/// live once HAProxy has it, which the deployer confirms, but a health check may take a
/// moment to mark a new server up. Returns the answer line.
pub async fn wait_for_backend(port: u16, name: &str, within: Duration) -> io::Result<String> {
    let deadline = tokio::time::Instant::now() + within;
    let wanted = format!("backend={name} ");
    loop {
        let answer = ask(port).await;
        match answer {
            Ok(line) if line.contains(&wanted) => return Ok(line),
            _ if tokio::time::Instant::now() >= deadline => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("backend {name} did not answer within {within:?}; last: {answer:?}"),
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
