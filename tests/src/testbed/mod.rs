//! A real edge testbed on one machine (see `shared/testbed.md`): N edge hosts, each a network
//! namespace with its own mount namespace running sshd and HAProxy (master-worker); a
//! `cluster` namespace with PROXY-v2-aware echo backends on several addresses; a `client`
//! namespace that connects through the edges. All on one bridge with a subnet unique to the
//! testbed; everything is torn down on drop (also when a test panics), and leftovers of a
//! killed run are removed by the next one.
//!
//! ```ignore
//! // In an integration test of this package (testbed_tools! needs CARGO_BIN_EXE_*):
//! # async fn demo() {
//! use edgelb_tests::{testbed::{Testbed, TestbedConfig}, testbed_tools};
//! let Some(tb) = Testbed::start_or_skip("my_test", TestbedConfig::default(), testbed_tools!()) else {
//!     return; // skipped (not root / packages missing) outside CI; a failure in CI
//! };
//! let deployer = edgelb_haproxy::SshDeployer::new(tb.deployer_config()).unwrap();
//! # }
//! ```
//!
//! Needs root and: iproute2, haproxy, openssh-server (+ openssh-sftp-server),
//! openssh-client, util-linux, mount.

pub mod ansible;
mod client;
mod cluster;
mod edge;
mod faults;
mod held;
pub mod kept_edge;
mod keys;
mod net;
pub mod prereq;
pub mod scenario;
mod sys;
mod timed;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

pub use client::{ClientNs, LoadRun, Probe};
pub use cluster::{BACKEND_PORT, Backend, Cluster};
pub use edge::{Edge, INITIAL_CONFIG};
pub use held::Held;
pub use keys::KeyPair;
pub use net::{Net, STATE_DIR};
pub use timed::TimedHost;

use edgelb_core::{EdgeNode, NodeConfig, Renderer, Snapshot};
use edgelb_haproxy::ssh::{ClientKey, KnownHosts, SshCredentials, SshOptions};
use edgelb_haproxy::{HaproxyLayout, SshDeployerConfig};

/// The helper programs the testbed runs inside its namespaces (built by this package; get
/// them with [`testbed_tools!`](crate::testbed_tools) from an integration test or bench).
#[derive(Debug, Clone)]
pub struct Tools {
    /// The `proxy-echo` binary (backends).
    pub proxy_echo: PathBuf,
    /// The `tb-client` binary (probes, load, socket commands, local apply).
    pub tb_client: PathBuf,
}

/// [`Tools`] of this package, for integration tests and benches (where Cargo sets
/// `CARGO_BIN_EXE_*`).
#[macro_export]
macro_rules! testbed_tools {
    () => {
        $crate::testbed::Tools {
            proxy_echo: env!("CARGO_BIN_EXE_proxy-echo").into(),
            tb_client: env!("CARGO_BIN_EXE_tb-client").into(),
        }
    };
}

/// What to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestbedConfig {
    /// Edge hosts (`edge1` …).
    pub edges: usize,
    /// Echo backends in the cluster namespace (`b1` …).
    pub backends: usize,
}

impl Default for TestbedConfig {
    fn default() -> Self {
        Self {
            edges: 3,
            backends: 4,
        }
    }
}

/// The directory of testbed `id` on the host.
fn dir_for(id: &str) -> PathBuf {
    PathBuf::from(format!("/tmp/edgelb-testbed-{id}"))
}

/// A running testbed; dropping it tears everything down.
#[derive(Debug)]
pub struct Testbed {
    /// The edges.
    pub edges: Vec<Edge>,
    /// The backends.
    pub cluster: Cluster,
    /// The client namespace.
    pub client: ClientNs,
    /// Our ed25519 client key (authorized on every edge).
    pub key: KeyPair,
    /// Our RSA client key (authorized on every edge).
    pub rsa_key: KeyPair,
    /// A key no edge authorizes.
    pub stranger_key: KeyPair,
    /// The tools it was built with.
    pub tools: Tools,
    /// Its directory on the host.
    pub dir: PathBuf,
    net: Net,
}

impl Testbed {
    /// Builds a testbed, or returns `None` after printing why it cannot run here (not root,
    /// packages missing). With `CI` set, it panics instead: CI never passes by skipping.
    pub fn start_or_skip(test: &str, config: TestbedConfig, tools: Tools) -> Option<Self> {
        if !prereq::ready_or_skip(test) {
            return None;
        }
        match Self::start(config, tools) {
            Ok(tb) => Some(tb),
            Err(e) if e.contains("netns") && e.contains("Operation not permitted") => {
                prereq::report(test, &format!("network namespace support ({e})"));
                None
            }
            Err(e) => panic!("testbed for {test} failed to start: {e}"),
        }
    }

    /// Builds a testbed (needs root and the packages; see [`prereq::missing`]).
    pub fn start(config: TestbedConfig, tools: Tools) -> Result<Self, String> {
        let started = std::time::Instant::now();
        let mut net = Net::create()?;
        let dir = dir_for(&net.id);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let key = KeyPair::generate(&dir.join("id_ed25519"), "ed25519", "edgelb-test")?;
        let rsa_key = KeyPair::generate(&dir.join("id_rsa"), "rsa", "edgelb-test-rsa")?;
        let stranger_key = KeyPair::generate(&dir.join("id_stranger"), "ed25519", "stranger")?;

        let backends: Vec<Backend> = (1..=config.backends)
            .map(|i| Backend {
                name: format!("b{i}"),
                addr: SocketAddr::from((net.ip(100 + i as u8), BACKEND_PORT)),
            })
            .collect();
        let mut cluster_addrs = vec![net.ip(2)];
        cluster_addrs.extend(backends.iter().map(|b| match b.addr.ip() {
            std::net::IpAddr::V4(ip) => ip,
            std::net::IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        }));
        let cluster_ns = net.add_namespace("cluster", &cluster_addrs)?;
        let client_ns = net.add_namespace("client", &[net.ip(3)])?;
        let mut edges = Vec::new();
        let mut testbed_edges_started = || -> Result<(), String> {
            for i in 1..=config.edges {
                let name = format!("edge{i}");
                let ip = net.ip(10 + i as u8);
                let ns = net.add_namespace(&name, &[ip])?;
                edges.push(Edge::start(
                    &name,
                    ip,
                    ns,
                    dir.join(&name),
                    &[&key, &rsa_key],
                )?);
            }
            Ok(())
        };
        let edges_result = testbed_edges_started();
        let cluster = match edges_result
            .and_then(|()| Cluster::start(&tools.proxy_echo, &cluster_ns, backends))
        {
            Ok(c) => c,
            Err(e) => {
                net.teardown();
                for edge in &mut edges {
                    edge.reap();
                }
                return Err(e);
            }
        };
        tracing::info!(
            id = %net.id,
            edges = edges.len(),
            ms = started.elapsed().as_millis() as u64,
            "testbed up"
        );
        Ok(Self {
            edges,
            cluster,
            client: ClientNs::new(client_ns, tools.tb_client.clone()),
            key,
            rsa_key,
            stranger_key,
            tools,
            dir,
            net,
        })
    }

    /// The testbed's id (in every name it creates).
    pub fn id(&self) -> &str {
        &self.net.id
    }

    /// `10.a.b.<host>` on the testbed network.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        self.net.ip(host)
    }

    /// The client namespace's address.
    pub fn client_ip(&self) -> Ipv4Addr {
        self.net.ip(3)
    }

    /// Adds another client namespace, `role`, at `10.a.b.<host>` (pick a host number the
    /// testbed does not use: 4 to 9); it is torn down with the testbed. For tests that need
    /// clients with different addresses (source ranges).
    pub fn add_client(&mut self, role: &str, host: u8) -> Result<(ClientNs, Ipv4Addr), String> {
        let ip = self.net.ip(host);
        let ns = self.net.add_namespace(role, &[ip])?;
        Ok((ClientNs::new(ns, self.tools.tb_client.clone()), ip))
    }

    /// Every edge as an [`EdgeNode`].
    pub fn nodes(&self) -> Vec<EdgeNode> {
        self.edges.iter().map(Edge::node).collect()
    }

    /// A deploy batch for edges `0..n`: `snapshot` rendered by `renderer` for each.
    pub fn batch(&self, renderer: &dyn Renderer, snapshot: &Snapshot, n: usize) -> Vec<NodeConfig> {
        self.edges[..n]
            .iter()
            .map(|e| NodeConfig {
                node: e.node(),
                config: renderer.render(snapshot, &e.node()).expect("renders"),
            })
            .collect()
    }

    /// known_hosts lines pinning every edge's host key.
    pub fn known_hosts(&self) -> KnownHosts {
        KnownHosts::from_lines(self.edges.iter().map(Edge::known_hosts_line))
            .expect("edge host keys parse")
    }

    /// Our ed25519 key and every edge pinned.
    pub fn credentials(&self) -> SshCredentials {
        SshCredentials::new(
            ClientKey::from_file(&self.key.private, None).expect("client key loads"),
            self.known_hosts(),
        )
    }

    /// A deployer config with [`Testbed::credentials`] for every node, the default layout
    /// and short timeouts.
    pub fn deployer_config(&self) -> SshDeployerConfig {
        SshDeployerConfig {
            default_credentials: Some(self.credentials()),
            layout: HaproxyLayout::default(),
            options: SshOptions {
                connect_timeout: std::time::Duration::from_secs(5),
                step_timeout: std::time::Duration::from_secs(15),
                ..SshOptions::default()
            },
            ..SshDeployerConfig::default()
        }
    }

    /// Address of edge `i` (0-based) on `port`.
    pub fn edge_addr(&self, i: usize, port: u16) -> SocketAddr {
        SocketAddr::from((self.edges[i].ip, port))
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.net.teardown();
        for edge in &mut self.edges {
            edge.reap();
        }
        self.cluster.reap();
    }
}
