//! The local host and deployer: for an edge that runs the controller itself, and for the
//! quick start.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use edgelb_core::{
    Applied, DeployError, Deployer, Digest, EdgeNode, HealthProbe, NodeConfig, NodeOutcome,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::child_log::ChildLog;
use crate::cli::master::show_proc;
use crate::deploy::{apply_config, live_digest, validate_file};
use crate::edge_health;
use crate::edge_host::{EdgeHost, ExecOutput, StageSwap, Staged};
use crate::edge_stats::{self, EdgeStats, StatsSource};
use crate::error::Result;
use crate::layout::HaproxyLayout;
use crate::live_cache::LiveCache;
use crate::local_swap;

/// The machine this process runs on, as an [`EdgeHost`]. It knows the live file it last
/// swapped in ([`LiveCache`], shared by its clones), so a deploy does not read it back;
/// a live file changed since (by hand) is seen by its stamp and read again.
#[derive(Debug, Clone)]
pub struct LocalHost {
    node: String,
    socket_timeout: Duration,
    cache: Arc<LiveCache>,
}

impl LocalHost {
    /// The local machine, reported as node `node`.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            socket_timeout: Duration::from_secs(5),
            cache: Arc::default(),
        }
    }

    fn step(&self, step: String, e: impl std::fmt::Display) -> DeployError {
        DeployError::Step {
            node: self.node.clone(),
            step,
            message: e.to_string(),
        }
    }
}

#[async_trait]
impl EdgeHost for LocalHost {
    fn node(&self) -> &str {
        &self.node
    }

    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, DeployError> {
        match tokio::fs::read(path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.step(format!("reading {path}"), e)),
        }
    }

    async fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), DeployError> {
        tokio::fs::write(path, contents)
            .await
            .map_err(|e| self.step(format!("writing {path}"), e))
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), DeployError> {
        tokio::fs::rename(from, to)
            .await
            .map_err(|e| self.step(format!("renaming {from} to {to}"), e))
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), DeployError> {
        tokio::fs::copy(from, to)
            .await
            .map(|_| ())
            .map_err(|e| self.step(format!("copying {from} to {to}"), e))
    }

    async fn remove_file(&self, path: &str) -> Result<(), DeployError> {
        match tokio::fs::remove_file(path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(self.step(format!("removing {path}"), e))
            }
            _ => Ok(()),
        }
    }

    async fn exec(&self, argv: &[String]) -> Result<ExecOutput, DeployError> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| self.step("running a command".into(), "empty command"))?;
        let out = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| self.step(format!("running {program}"), e))?;
        Ok(ExecOutput {
            status: out.status.code().and_then(|c| u32::try_from(c).ok()),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    async fn socket_command(&self, socket: &str, command: &str) -> Result<String, DeployError> {
        let talk = async {
            let mut stream = tokio::net::UnixStream::connect(socket).await?;
            stream.write_all(format!("{command}\n").as_bytes()).await?;
            // HAProxy answers a non-interactive CLI connection once our side is closed.
            stream.shutdown().await?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        match tokio::time::timeout(self.socket_timeout, talk).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(self.step(format!("talking to {socket}"), e)),
            Err(_) => Err(DeployError::Timeout {
                node: self.node.clone(),
                step: format!("waiting for {socket} to answer {command:?}"),
                seconds: self.socket_timeout.as_secs(),
            }),
        }
    }

    fn live_cache(&self) -> Option<&LiveCache> {
        Some(&self.cache)
    }

    async fn stage_and_swap(&self, request: &StageSwap<'_>) -> Result<Staged, DeployError> {
        local_swap::stage_and_swap(self, request).await
    }

    async fn tcp_connect(&self, port: u16) -> Result<(), DeployError> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        match tokio::time::timeout(self.socket_timeout, tokio::net::TcpStream::connect(addr)).await
        {
            Ok(Ok(_stream)) => Ok(()),
            Ok(Err(e)) => Err(self.step(format!("connecting to {addr}"), e)),
            Err(_) => Err(DeployError::Timeout {
                node: self.node.clone(),
                step: format!("connecting to {addr}"),
                seconds: self.socket_timeout.as_secs(),
            }),
        }
    }
}

/// Deploys to HAProxy on this machine.
///
/// With [`LocalDeployer::start_if_missing`], a first deploy that finds no master socket starts
/// `haproxy -W -S <master socket> -f <config>` as a child process (stopped when the deployer
/// is dropped, unless [`LocalDeployer::release_haproxy`] let it go first): the quick start
/// needs nothing but the haproxy package. That haproxy runs in
/// its own process group, so a terminal's signals (Ctrl-C, SIGHUP on close, which its master
/// would take as a reload) reach only this process, which stops it; its output is logged line
/// by line, and an early exit is reported with haproxy's own last words.
pub struct LocalDeployer {
    host: LocalHost,
    layout: HaproxyLayout,
    start_if_missing: bool,
    child: Mutex<Option<(Child, ChildLog)>>,
}

impl LocalDeployer {
    /// Deploys node `node`'s config to this machine.
    pub fn new(node: impl Into<String>, layout: HaproxyLayout) -> Result<Self> {
        layout.validate()?;
        Ok(Self {
            host: LocalHost::new(node),
            layout,
            start_if_missing: false,
            child: Mutex::new(None),
        })
    }

    /// Starts haproxy when no master answers (see the type's docs).
    pub fn start_if_missing(mut self, yes: bool) -> Self {
        self.start_if_missing = yes;
        self
    }

    async fn deploy_one(&self, cfg: &NodeConfig) -> Result<Applied, DeployError> {
        if cfg.node.name != self.host.node() {
            return Err(DeployError::Step {
                node: cfg.node.name.clone(),
                step: "choosing a host".into(),
                message: format!(
                    "the local deployer serves node {} only; use the SSH or Ansible deployer for remote nodes",
                    self.host.node()
                ),
            });
        }
        if self.start_if_missing && show_proc(&self.host, &self.layout).await.is_err() {
            return self.start(cfg).await;
        }
        apply_config(&self.host, &self.layout, &cfg.config).await
    }

    /// Lets the haproxy this deployer started (if any) outlive it: it is no longer stopped when
    /// the deployer is dropped and keeps serving its last config after this process exits
    /// (a leader that lost its Lease must not take the data plane down with it). The next
    /// `edgelb run` with `start_haproxy` finds its master socket answering and deploys to it.
    /// Its output is no longer logged once this process is gone.
    pub async fn release_haproxy(&self) {
        if let Some((child, _output)) = self.child.lock().await.take() {
            tracing::info!(
                node = self.host.node(),
                pid = child.id(),
                "leaving the haproxy edgelb started running"
            );
        }
    }

    /// Writes and validates the config, then starts haproxy on it and waits for its worker.
    async fn start(&self, cfg: &NodeConfig) -> Result<Applied, DeployError> {
        let mut child = self.child.lock().await;
        // The file is replaced here without a stamp: the next deploy reads it.
        if let Some(cache) = self.host.live_cache() {
            cache.clear();
        }
        let new_path = self.layout.new_path();
        self.host
            .write_file(&new_path, cfg.config.text.as_bytes())
            .await?;
        validate_file(&self.host, &self.layout, &new_path).await?;
        self.host
            .rename(&new_path, &self.layout.config_path)
            .await?;
        if let Some(parent) = PathBuf::from(&self.layout.master_socket).parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| self.host.step(format!("creating {}", parent.display()), e))?;
        }
        tracing::info!(node = self.host.node(), config = %self.layout.config_path, "no haproxy master answers; starting haproxy");
        let spawned = Command::new(&self.layout.haproxy_bin)
            .args([
                "-W",
                "-S",
                &self.layout.master_socket,
                "-f",
                &self.layout.config_path,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| {
                self.host
                    .step(format!("starting {}", self.layout.haproxy_bin), e)
            })?;
        let mut spawned = spawned;
        let output = ChildLog::start(
            self.host.node(),
            &self.layout.haproxy_bin,
            spawned.stdout.take(),
            spawned.stderr.take(),
        );
        *child = Some((spawned, output));
        let deadline = tokio::time::Instant::now() + self.layout.reload_timeout;
        loop {
            if let Ok(procs) = show_proc(&self.host, &self.layout).await
                && !procs.workers.is_empty()
            {
                return Ok(Applied::Reloaded);
            }
            if let Some((running, output)) = child.as_mut()
                && let Ok(Some(status)) = running.try_wait()
            {
                let said = output.last_lines(Duration::from_secs(2)).await;
                *child = None;
                return Err(self.host.step(
                    "starting haproxy".into(),
                    if said.is_empty() {
                        format!("haproxy exited with {status}")
                    } else {
                        format!("haproxy exited with {status}: {said}")
                    },
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DeployError::Timeout {
                    node: self.host.node().to_owned(),
                    step: "waiting for the haproxy it started to answer on the master socket"
                        .into(),
                    seconds: self.layout.reload_timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for LocalDeployer {
    /// Stops the haproxy this deployer started, unless it was released.
    fn drop(&mut self) {
        if let Some((child, _)) = self.child.get_mut().as_mut() {
            // Already gone, or not ours to signal any more: nothing to do either way.
            let _ = child.start_kill();
        }
    }
}

#[async_trait]
impl Deployer for LocalDeployer {
    async fn deploy(&self, batch: &[NodeConfig]) -> Vec<NodeOutcome> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for cfg in batch {
            outcomes.push(match self.deploy_one(cfg).await {
                Ok(applied) => NodeOutcome::ok(cfg.node.name.clone(), applied),
                Err(e) => NodeOutcome::failed(e),
            });
        }
        outcomes
    }

    async fn live_digest(&self, _node: &EdgeNode) -> Result<Option<Digest>, DeployError> {
        live_digest(&self.host, &self.layout).await
    }

    async fn live_config(&self, _node: &EdgeNode) -> Result<Option<String>, DeployError> {
        let bytes = self.host.read_file(&self.layout.config_path).await?;
        Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }
}

/// `show proc` on the master socket, then a connection to each listen port on loopback.
#[async_trait]
impl HealthProbe for LocalDeployer {
    async fn probe_health(
        &self,
        _node: &EdgeNode,
        listen_ports: &[u16],
    ) -> Result<(), DeployError> {
        edge_health::probe(&self.host, &self.layout, listen_ports).await
    }
}

/// `show stat` and `show info` on this machine's stats socket.
#[async_trait]
impl StatsSource for LocalDeployer {
    async fn edge_stats(
        &self,
        _node: &EdgeNode,
        stats_socket: &str,
    ) -> Result<EdgeStats, DeployError> {
        edge_stats::read(&self.host, stats_socket).await
    }
}
