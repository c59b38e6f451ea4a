//! The `client` namespace's view: connections through an edge, one at a time or as a
//! bounded load loop, run by the `tb-client` tool inside the namespace.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The outcome of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A backend answered.
    Ok {
        /// The client's own address (as its socket saw it).
        local: SocketAddr,
        /// The backend that answered.
        backend: String,
        /// The client address the backend was told (PROXY header).
        client: SocketAddr,
        /// The PROXY protocol version the backend saw (`v2`, `v1`, `none`).
        proxy: String,
    },
    /// The connection failed or got no proper answer.
    Failed(String),
}

impl Probe {
    /// Parses a `tb-client` result line.
    pub fn parse(line: &str) -> Self {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_owned)
        };
        if let Some(rest) = line.strip_prefix("ok ") {
            let parsed = (|| {
                Some(Self::Ok {
                    local: field("local")?.parse().ok()?,
                    backend: field("backend")?,
                    client: field("client")?.parse().ok()?,
                    proxy: field("proxy")?,
                })
            })();
            return parsed.unwrap_or_else(|| Self::Failed(format!("unparsable: {rest}")));
        }
        Self::Failed(line.to_owned())
    }

    /// The backend's name, for a success.
    pub fn backend(&self) -> Option<&str> {
        match self {
            Self::Ok { backend, .. } => Some(backend),
            Self::Failed(_) => None,
        }
    }
}

/// Runs `tb-client` inside the client namespace.
#[derive(Debug, Clone)]
pub struct ClientNs {
    /// The namespace.
    pub netns: String,
    tool: PathBuf,
}

impl ClientNs {
    pub(crate) fn new(netns: String, tool: PathBuf) -> Self {
        Self { netns, tool }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns]).arg(&self.tool);
        cmd.kill_on_drop(true).stdin(Stdio::null());
        cmd
    }

    /// One connection to `target`.
    pub async fn probe(&self, target: SocketAddr) -> Probe {
        let out = self
            .command()
            .args(["probe", &target.to_string()])
            .output()
            .await;
        match out {
            Ok(out) => Probe::parse(String::from_utf8_lossy(&out.stdout).trim()),
            Err(e) => Probe::Failed(format!("cannot run tb-client: {e}")),
        }
    }

    /// Starts `count` connections to `target`, `interval_ms` apart, in the background
    /// (bounded by `count`; [`LoadRun::stop`] ends it earlier).
    pub fn start_load(&self, target: SocketAddr, count: u32, interval_ms: u64) -> LoadRun {
        let mut child = self
            .command()
            .args([
                "load",
                &target.to_string(),
                &count.to_string(),
                &interval_ms.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("tb-client starts");
        let results = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let sink = results.clone();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("done ") {
                    continue;
                }
                sink.lock().expect("results lock").push(Probe::parse(&line));
            }
        });
        LoadRun {
            child,
            results,
            reader,
        }
    }
}

/// A load loop running in the client namespace.
#[derive(Debug)]
pub struct LoadRun {
    child: Child,
    results: Arc<Mutex<Vec<Probe>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl LoadRun {
    /// Results so far, in completion order.
    pub fn results(&self) -> Vec<Probe> {
        self.results.lock().expect("results lock").clone()
    }

    /// How many connections finished so far.
    pub fn done(&self) -> usize {
        self.results.lock().expect("results lock").len()
    }

    /// Waits until `n` connections have finished, however fast or slow the machine is; fails
    /// the test if the loop stalls (no connection finished for `patience`) or runs out of its
    /// count first.
    pub async fn wait_for(&self, n: usize, patience: Duration) {
        let mut last = (self.done(), tokio::time::Instant::now());
        while self.done() < n {
            let done = self.done();
            if done != last.0 {
                last = (done, tokio::time::Instant::now());
            }
            assert!(
                last.1.elapsed() < patience,
                "the load loop stalled at {done} of {n} connections (none finished for {patience:?})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts no more connections, lets the started ones finish, returns every result.
    pub async fn stop(mut self) -> Vec<Probe> {
        drop(self.child.stdin.take()); // EOF: the tool winds down
        self.finish().await
    }

    /// Waits for the loop to finish and returns every result.
    pub async fn finish(mut self) -> Vec<Probe> {
        let _ = self.child.wait().await;
        let _ = (&mut self.reader).await;
        self.results()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tb_client_lines() {
        let ok =
            Probe::parse("ok local=10.1.2.3:40000 backend=b2 client=10.1.2.3:40000 proxy=v2 ms=3");
        assert_eq!(
            ok,
            Probe::Ok {
                local: "10.1.2.3:40000".parse().unwrap(),
                backend: "b2".into(),
                client: "10.1.2.3:40000".parse().unwrap(),
                proxy: "v2".into(),
            }
        );
        assert_eq!(ok.backend(), Some("b2"));
        let failed = Probe::parse("fail local=- error=Connection_refused ms=1");
        assert!(matches!(failed, Probe::Failed(ref l) if l.contains("refused")));
        assert!(matches!(Probe::parse("ok local=garbage"), Probe::Failed(_)));
    }
}
