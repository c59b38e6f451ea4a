//! The `cluster` namespace: PROXY-aware echo backends standing for pods, each on its own
//! address, all served by one `proxy-echo` process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The port every backend listens on.
pub const BACKEND_PORT: u16 = 9000;

/// One backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// The name it answers with (`b1`, `b2`, …).
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The running backends.
#[derive(Debug)]
pub struct Cluster {
    /// The backends, `b1` first.
    pub backends: Vec<Backend>,
    child: Option<Child>,
}

impl Cluster {
    /// Starts `proxy-echo` in namespace `netns` serving `backends`; waits until it listens.
    pub fn start(proxy_echo: &Path, netns: &str, backends: Vec<Backend>) -> Result<Self, String> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns]).arg(proxy_echo);
        for b in &backends {
            cmd.arg(format!("{}={}", b.name, b.addr));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", proxy_echo.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if line.trim() == "ready" => Ok(Self {
                backends,
                child: Some(child),
            }),
            other => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("proxy-echo did not start: {other:?}"))
            }
        }
    }

    /// Reaps the backend process (after the network teardown killed it).
    pub(crate) fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
