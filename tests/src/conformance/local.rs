//! The scenarios of the suite that apply to one local host, for the local deployer
//! ([`LocalDeployer`]): a rejected config and a failed reload rolled back, against an HAProxy
//! the deployer starts in a temporary directory (as the quick start does) in front of two
//! demo backends on loopback.
//!
//! The testbed scenarios do not apply as they are: they reach edges over SSH (host keys,
//! client keys, sshd down) and through several edges (real client IP through 3 edges), and
//! the local deployer serves the one host it runs on. The assertions here are the testbed
//! scenarios' own (the same typed outcomes, files, reload counts and traffic checks).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use edgelb_core::{
    Applied, DeployError, Deployer, EdgeNode, Endpoint, NodeConfig, PortSpec, ProxyProtocol,
    RenderedConfig, Renderer, ServiceKey, Snapshot,
};
use edgelb_haproxy::{
    ConfigDuration, HaproxyLayout, HaproxyRenderer, LocalDeployer, MasterProcs, RenderOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::outcomes::{assert_config_rejected, assert_reload_rolled_back, with_unknown_keyword};
use crate::testbed::prereq;

/// An HAProxy on loopback run by a [`LocalDeployer`], with its files in a temporary
/// directory; everything is stopped and removed on drop.
pub struct LocalHaproxy {
    /// The deployer (it starts HAProxy on its first deploy; shared with a pipeline when one
    /// runs it, and stops HAProxy when the last owner drops it).
    pub deployer: Arc<LocalDeployer>,
    /// Its directory (config, sockets).
    pub dir: PathBuf,
    /// The port HAProxy listens on, on 127.0.0.1.
    pub listen: u16,
    /// The demo backends (`b1`, `b2`) on loopback.
    pub backends: Vec<(String, SocketAddr)>,
    layout: HaproxyLayout,
    renderer: Arc<HaproxyRenderer>,
    servers: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl std::fmt::Debug for LocalHaproxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalHaproxy")
            .field("dir", &self.dir)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// The node the local deployer serves.
pub const LOCAL_NODE: &str = "local";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on loopback")
}

impl LocalHaproxy {
    /// Sets up the directory and backends (HAProxy starts on the first deploy), or returns
    /// `None` after printing why `test` cannot run (no haproxy; a panic when `CI` is set).
    pub async fn start_or_skip(test: &str) -> Option<Self> {
        let haproxy = std::process::Command::new("haproxy")
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success());
        if !haproxy {
            prereq::report(test, "haproxy (apt-get install -y haproxy)");
            return None;
        }
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "edgelb-conformance-local-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = |f: &str| dir.join(f).display().to_string();
        let layout = HaproxyLayout {
            config_path: path("haproxy.cfg"),
            master_socket: path("master.sock"),
            ..HaproxyLayout::default()
        };
        let deployer = Arc::new(
            LocalDeployer::new(LOCAL_NODE, layout.clone())
                .expect("valid layout")
                .start_if_missing(true),
        );
        let renderer = HaproxyRenderer::new(RenderOptions {
            socket_dirs: vec![dir.display().to_string()],
            stats_socket: path("admin.sock"),
            hard_stop_after: ConfigDuration::from_secs(10),
            ..RenderOptions::default()
        })
        .expect("valid render options");
        let renderer = Arc::new(renderer);
        let mut backends = Vec::new();
        let mut servers = Vec::new();
        for name in ["b1", "b2"] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("backend listens");
            backends.push((name.to_owned(), listener.local_addr().expect("address")));
            servers.push(tokio::spawn(edgelb_haproxy::demo_backend::serve(
                listener,
                name.to_owned(),
            )));
        }
        Some(Self {
            deployer,
            dir,
            listen: free_port(),
            backends,
            layout,
            renderer,
            servers,
        })
    }

    /// The node, listening on 127.0.0.1 only.
    pub fn node(&self) -> EdgeNode {
        let mut node =
            EdgeNode::new(LOCAL_NODE).with_bind(self.listen, format!("127.0.0.1:{}", self.listen));
        node.replace_default_bind = true;
        node
    }

    /// The renderer, to share with a pipeline.
    pub fn renderer(&self) -> Arc<HaproxyRenderer> {
        self.renderer.clone()
    }

    /// The config for backend `i` (0-based) behind `node`.
    pub fn render(&self, node: &EdgeNode, backend: usize) -> RenderedConfig {
        let addr = self.backends[backend].1;
        let port = PortSpec::new(self.listen, ProxyProtocol::V2)
            .with_endpoint(Endpoint::ready(addr.ip(), addr.port()));
        let mut snapshot = Snapshot::default();
        snapshot
            .insert_port(
                ServiceKey::new("default", "web").expect("key"),
                "http",
                port,
            )
            .expect("port");
        self.renderer.render(&snapshot, node).expect("renders")
    }

    /// One deploy of `config`.
    pub async fn deploy(&self, config: RenderedConfig) -> Result<Applied, DeployError> {
        let mut outcomes = self
            .deployer
            .deploy(&[NodeConfig {
                node: self.node(),
                config,
            }])
            .await;
        assert_eq!(outcomes.len(), 1, "{outcomes:?}");
        outcomes.remove(0).result
    }

    /// The master's `show proc`.
    pub async fn show_proc(&self) -> MasterProcs {
        self.try_show_proc()
            .await
            .expect("the master socket answers")
    }

    /// The master's `show proc`, or why it could not be had.
    async fn try_show_proc(&self) -> Result<MasterProcs, String> {
        let talk = async {
            let mut stream = tokio::net::UnixStream::connect(&self.layout.master_socket).await?;
            stream.write_all(b"show proc\n").await?;
            stream.shutdown().await?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        let answer = talk.await.map_err(|e| e.to_string())?;
        MasterProcs::parse(LOCAL_NODE, &answer).map_err(|e| e.to_string())
    }

    /// The backend that answers a connection through HAProxy, or why none did.
    pub async fn probe(&self) -> Result<String, String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.listen));
        let talk = async {
            let mut stream = tokio::net::TcpStream::connect(addr).await?;
            let local = stream.local_addr()?;
            let mut out = String::new();
            stream.read_to_string(&mut out).await?;
            Ok::<_, std::io::Error>((local, out))
        };
        let (local, out) = tokio::time::timeout(Duration::from_secs(3), talk)
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let (backend, client, proxy) = edgelb_haproxy::demo_backend::parse_answer_line(&out)
            .ok_or_else(|| format!("unparsable answer {out:?}"))?;
        if client != local || proxy != "v2" {
            return Err(format!("backend saw {client} ({proxy}), we are {local}"));
        }
        Ok(backend)
    }

    /// The live config file.
    pub fn live_config(&self) -> String {
        std::fs::read_to_string(&self.layout.config_path).unwrap_or_default()
    }

    /// The live file, and whether the new and previous files exist.
    pub fn files(&self) -> (String, bool, bool) {
        (
            self.live_config(),
            self.dir.join("haproxy.cfg.edgelb-new").exists(),
            self.dir.join("haproxy.cfg.edgelb-prev").exists(),
        )
    }

    /// Stops HAProxy (master and every worker, by PID) and the backends, removes the files.
    pub async fn stop(self) {
        let pids: Vec<u32> =
            match tokio::time::timeout(Duration::from_secs(2), self.try_show_proc()).await {
                Ok(Ok(procs)) => std::iter::once(procs.master_pid)
                    .chain(procs.workers.iter().map(|w| w.0))
                    .chain(procs.old_workers.iter().copied())
                    .collect(),
                _ => Vec::new(),
            };
        drop(self.deployer); // the last owner kills the master it started
        for pid in pids {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .stderr(std::process::Stdio::null())
                .status();
        }
        for server in self.servers {
            server.abort();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The rejected-config scenario on the local host.
pub async fn rejected_config(test: &str) {
    let Some(local) = LocalHaproxy::start_or_skip(test).await else {
        return;
    };
    let good = local.render(&local.node(), 0);
    assert_eq!(local.deploy(good.clone()).await, Ok(Applied::Reloaded));
    assert_eq!(local.probe().await.as_deref(), Ok("b1"));
    let files_before = local.files();
    let procs_before = local.show_proc().await;

    let bad = with_unknown_keyword(&good);
    let err = local.deploy(bad).await.unwrap_err();
    assert_config_rejected(&err, LOCAL_NODE);
    assert_eq!(
        local.files(),
        files_before,
        "files changed after a rejected config"
    );
    assert_eq!(
        local.show_proc().await.reloads,
        procs_before.reloads,
        "haproxy was reloaded"
    );
    assert_eq!(local.probe().await.as_deref(), Ok("b1"));
    local.stop().await;
}

/// The failed-reload scenario on the local host: the new config binds an address the host
/// does not have (TEST-NET-1), so `haproxy -c` accepts it and the new worker cannot start.
pub async fn failed_reload_rolled_back(test: &str) {
    let Some(local) = LocalHaproxy::start_or_skip(test).await else {
        return;
    };
    let good = local.render(&local.node(), 0);
    assert_eq!(local.deploy(good.clone()).await, Ok(Applied::Reloaded));
    let mut elsewhere =
        EdgeNode::new(LOCAL_NODE).with_bind(local.listen, format!("192.0.2.1:{}", local.listen));
    elsewhere.replace_default_bind = true;
    let unstartable = local.render(&elsewhere, 1);
    let procs_before = local.show_proc().await;
    let err = local.deploy(unstartable).await.unwrap_err();
    assert_reload_rolled_back(&err, LOCAL_NODE);
    assert_eq!(local.live_config(), good.text, "the previous file is live");
    let procs_after = local.show_proc().await;
    assert_eq!(
        procs_after.reloads,
        procs_before.reloads + 2,
        "{procs_before:?} → {procs_after:?}"
    );
    for _ in 0..5 {
        assert_eq!(local.probe().await.as_deref(), Ok("b1"));
    }
    assert_eq!(
        local.deployer.live_digest(&local.node()).await,
        Ok(Some(good.digest))
    );
    local.stop().await;
}

/// A hand edit of the live file between two deploys on the local host: the host knows the
/// file it swapped in (and its stamp), so a deploy does not read it back; the edit changes
/// the stamp, nothing is swapped over it unseen, and the deploy reads the edited file and
/// repairs it with a reload (the edited file kept as the previous one).
pub async fn hand_edit_between_deploys_repaired(test: &str) {
    let Some(local) = LocalHaproxy::start_or_skip(test).await else {
        return;
    };
    let node = local.node();
    let (first, second) = (local.render(&node, 0), local.render(&node, 1));
    assert_eq!(local.deploy(first.clone()).await, Ok(Applied::Reloaded));
    // Endpoint-only changes, the second one on the file the host knows.
    assert_eq!(
        local.deploy(second.clone()).await,
        Ok(Applied::RuntimeUpdated)
    );
    assert_eq!(
        local.deploy(first.clone()).await,
        Ok(Applied::RuntimeUpdated)
    );
    assert_eq!(local.probe().await.as_deref(), Ok("b1"));

    let edited = format!("{}# edited by hand\n", first.text);
    std::fs::write(&local.layout.config_path, &edited).expect("edit the live file");
    // Only the file changed, so a runtime update would do; the edit must be seen instead.
    assert_eq!(local.deploy(second.clone()).await, Ok(Applied::Reloaded));
    assert_eq!(local.live_config(), second.text, "the edit is repaired");
    assert_eq!(
        std::fs::read_to_string(local.dir.join("haproxy.cfg.edgelb-prev")).ok(),
        Some(edited),
        "the edited file is kept as the previous one"
    );
    assert_eq!(local.probe().await.as_deref(), Ok("b2"));
    assert_eq!(
        local.deployer.live_digest(&node).await,
        Ok(Some(second.digest))
    );
    local.stop().await;
}

/// The first start fails (another socket holds the port): the error carries HAProxy's own
/// reason, and nothing of HAProxy's output reaches stderr unframed.
pub async fn start_failure_says_why(test: &str) {
    let Some(local) = LocalHaproxy::start_or_skip(test).await else {
        return;
    };
    let taken = TcpListener::bind(("127.0.0.1", local.listen)).expect("the port is free");
    let err = local
        .deploy(local.render(&local.node(), 0))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("haproxy exited with") && text.contains("cannot bind socket"),
        "{err}"
    );
    drop(taken);
    local.stop().await;
}
