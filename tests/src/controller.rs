//! The `edgelb` binary as a process under test: found next to the test executable, started
//! in its own process group (so whatever it starts goes down with it), its log captured to a
//! file, and its HTTP endpoint queried.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::testbed::{Probe, Testbed};

/// The `edgelb` binary built beside this test executable (`cargo test --workspace` builds it).
pub fn edgelb_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test> → target/<profile>/edgelb
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("edgelb"))
        .expect("the test runs from target/<profile>/deps");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p edgelb), or run the whole workspace's tests",
        bin.display()
    );
    bin
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running `edgelb run`.
#[derive(Debug)]
pub struct Controller {
    child: Child,
    log: PathBuf,
    /// Where it serves `/healthz`, `/readyz` and `/metrics`.
    pub http: SocketAddr,
}

impl Controller {
    /// Starts `edgelb run --config CONFIG --http-listen HTTP` with `envs`, logging to `log`.
    pub fn start(config: &Path, http: SocketAddr, log: &Path, envs: &[(&str, &str)]) -> Self {
        let log_file = std::fs::File::create(log).expect("the log file can be created");
        let mut command = Command::new(edgelb_binary());
        command
            .args(["run", "--config"])
            .arg(config)
            .arg("--http-listen")
            .arg(http.to_string())
            .env("EDGELB_LOG", "info,edgelb_core=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log handle"))
            .stderr(log_file);
        for (k, v) in envs {
            command.env(k, v);
        }
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().expect("edgelb starts");
        Self {
            child,
            log: log.to_owned(),
            http,
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET path` on its HTTP endpoint: (status code, body); (0, error) when it does not answer.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect(self.http).await?;
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: edgelb\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await?;
            let mut out = String::new();
            stream.read_to_string(&mut out).await?;
            Ok::<_, std::io::Error>(out)
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(out)) => {
                let code = out
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
                (code, body)
            }
            Ok(Err(e)) => (0, e.to_string()),
            Err(_) => (0, "timed out".into()),
        }
    }

    /// Polls `/readyz` until it answers 200; returns its body.
    pub async fn wait_ready(&self, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let (code, body) = self.get("/readyz").await;
            if code == 200 {
                return body;
            }
            if start.elapsed() > limit {
                panic!(
                    "/readyz never answered 200 within {limit:?}: {code} {body}\nlog:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls `/metrics` until every `series` line is present; panics with the log otherwise.
    pub async fn wait_for_metrics(&self, series: &[&str], limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let (code, body) = self.get("/metrics").await;
            if code == 200 && series.iter().all(|s| body.lines().any(|l| l == *s)) {
                return body;
            }
            if start.elapsed() > limit {
                let missing: Vec<_> = series
                    .iter()
                    .filter(|s| !body.lines().any(|l| l == **s))
                    .collect();
                panic!(
                    "metrics never showed {missing:?} within {limit:?}\nmetrics:\n{body}\nlog:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits up to `limit` for it to exit on its own; returns the exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        self.exit_within(limit, "")
    }

    /// Sends SIGTERM and waits up to `limit` for the exit status.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        signal(self.child.id(), "-TERM");
        self.exit_within(limit, " of SIGTERM")
    }

    /// Polls for the exit status for up to `limit`; panics with `after` and the log then.
    fn exit_within(&mut self, limit: Duration, after: &str) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting on edgelb") {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "edgelb did not exit within {limit:?}{after}\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        // The whole group: edgelb and anything it started.
        signal_group(self.child.id(), "-KILL");
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

fn signal_group(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
}

/// Probes edges `edges` on `port` until each answers from one of `backends` with PROXY
/// version `proxy`; the backend must have been told the client's own address and port (with
/// PROXY `none` it sees the edge's address instead).
pub async fn wait_for_backends(
    tb: &Testbed,
    controller: &Controller,
    edges: &[usize],
    port: u16,
    backends: &[&str],
    proxy: &str,
) {
    let start = Instant::now();
    for &i in edges {
        loop {
            let probe = tb.client.probe(tb.edge_addr(i, port)).await;
            if let Probe::Ok {
                local,
                backend,
                client,
                proxy: seen,
            } = &probe
                && backends.contains(&backend.as_str())
                && seen == proxy
            {
                if proxy == "none" {
                    assert_eq!(
                        client.ip(),
                        std::net::IpAddr::V4(tb.edges[i].ip),
                        "edge {i} port {port}: without PROXY the backend sees the edge"
                    );
                } else {
                    assert_eq!(
                        client, local,
                        "edge {i} port {port}: the backend saw another address than the client's"
                    );
                }
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "edge {i} port {port} never answered from {backends:?} with PROXY {proxy}; last probe {probe:?}\nhaproxy log:\n{}\nedgelb log:\n{}",
                tb.edges[i].haproxy_log(),
                controller.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
