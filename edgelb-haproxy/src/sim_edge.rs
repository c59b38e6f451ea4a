//! A simulated edge (feature `testing`): files, `haproxy -c`, the master CLI (`show proc`,
//! `reload`) and the runtime API on the servers, all in memory, behind the same
//! [`EdgeHost`] seam as the real hosts. [`SimDeployer`] puts configs live on
//! simulated edges through edgelb's real deploy transaction (validate, swap, reload or
//! runtime update, confirm, roll back), so a test drives the whole stack, drift and refusals
//! included, without HAProxy or SSH.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use edgelb_core::DeployError;

use crate::edge_host::EdgeHost;
use crate::live_file::LiveFile;

mod deployer;

pub use deployer::SimDeployer;

/// The running servers: (backend, server) → (address, port, admin flags, weight).
pub(crate) type SimServers = HashMap<(String, String), (String, u16, u32, u32)>;

/// A host running a simulated HAProxy: files, `haproxy -c`, the master CLI (`show proc`,
/// `reload`, which loads the live file) and the runtime API on the servers.
///
/// ```
/// use edgelb_core::{EdgeNode, Endpoint, PortSpec, ProxyProtocol, Renderer, ServiceKey, Snapshot};
/// use edgelb_haproxy::sim_edge::SimEdge;
/// use edgelb_haproxy::{HaproxyRenderer, RenderOptions};
///
/// let mut snapshot = Snapshot::default();
/// snapshot.insert_port(
///     ServiceKey::new("web", "app")?,
///     "http",
///     PortSpec::new(80, ProxyProtocol::V2).with_endpoint(Endpoint::ready("10.0.0.1".parse()?, 8080)),
/// )?;
/// let config = HaproxyRenderer::new(RenderOptions::default())?.render(&snapshot, &EdgeNode::new("edge-1"))?;
///
/// let edge = SimEdge::running(&config.text).named("edge-1");
/// let server = edge.server("be_web_app_http", "s001").ok_or("no server s001")?;
/// assert_eq!((server.address.as_str(), server.port, server.weight), ("10.0.0.1", 8080, 1));
/// // Someone puts it in maintenance by hand, through the runtime API.
/// edge.runtime_command("set server be_web_app_http/s001 state maint");
/// assert!(edge.server("be_web_app_http", "s001").ok_or("no server s001")?.in_maintenance());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SimEdge {
    pub(crate) name: String,
    pub(crate) files: Mutex<HashMap<String, Vec<u8>>>,
    /// (backend, server) → (address, port, admin flags, weight).
    pub(crate) servers: Mutex<SimServers>,
    pub(crate) log: Mutex<Vec<String>>,
    pub(crate) reloads: Mutex<u32>,
    /// Takes `set server … weight` without doing it (a mismatch to detect).
    pub(crate) ignores_weight: bool,
    /// `haproxy -c` rejects every file.
    pub(crate) rejects: bool,
    /// `reload` counts a reload but leaves the servers as they were (the sockets belong to a
    /// HAProxy that loads another file).
    pub(crate) stale_reload: bool,
}

impl Default for SimEdge {
    fn default() -> Self {
        Self {
            name: "sim".to_owned(),
            files: Mutex::default(),
            servers: Mutex::default(),
            log: Mutex::default(),
            reloads: Mutex::default(),
            ignores_weight: false,
            rejects: false,
            stale_reload: false,
        }
    }
}

/// Where the simulated HAProxy's config lives: [`HaproxyLayout`](crate::HaproxyLayout)'s
/// default `config_path`.
pub const LIVE_PATH: &str = "/etc/haproxy/haproxy.cfg";

/// One running server of a [`SimEdge`], as `show servers state` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimServer {
    /// Its address.
    pub address: String,
    /// Its port.
    pub port: u16,
    /// HAProxy's admin state flags: 0 in service, bit 0 (1) maintenance set at run time,
    /// bits 0 and 2 (5) `disabled` in the file.
    pub admin_flags: u32,
    /// Its weight (0: draining).
    pub weight: u32,
}

impl SimServer {
    /// Whether the server is in maintenance (`disabled` in the file, or set so at run time).
    pub fn in_maintenance(&self) -> bool {
        self.admin_flags & 1 != 0
    }
}

/// A lock that a panicking test thread cannot make unusable: the data stays readable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SimEdge {
    /// A new edge with no config yet (a fresh VM): the first deploy writes one and reloads.
    pub fn new() -> Self {
        Self::default()
    }

    /// An edge running `config` (at [`LIVE_PATH`], its servers loaded).
    pub fn running(config: &str) -> Self {
        let sim = Self::default();
        lock(&sim.files).insert(LIVE_PATH.into(), config.as_bytes().to_vec());
        sim.load(config);
        sim
    }

    /// Names the edge (`sim` by default): the node name in its errors.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Makes `haproxy -c` reject every file, as an edge whose HAProxy refuses the config.
    pub fn rejecting_configs(mut self) -> Self {
        self.rejects = true;
        self
    }

    /// Makes the runtime API take `set server … weight` without doing it: the check after a
    /// runtime update finds the mismatch and falls back to a reload.
    pub fn ignoring_weights(mut self) -> Self {
        self.ignores_weight = true;
        self
    }

    /// Makes `reload` count a reload but leave the running servers as they were, as when the
    /// sockets belong to a HAProxy that loads another file.
    pub fn with_stale_reloads(mut self) -> Self {
        self.stale_reload = true;
        self
    }

    /// An edge running `text` that ignores weights and/or rejects every file.
    #[cfg(test)]
    pub(crate) fn start(text: &str, ignores_weight: bool, rejects: bool) -> Self {
        Self {
            ignores_weight,
            rejects,
            ..Self::running(text)
        }
    }

    /// Loads `text`'s servers as a start or reload of HAProxy with it would.
    pub fn load(&self, text: &str) {
        let mut servers = lock(&self.servers);
        servers.clear();
        for s in LiveFile::parse(text.as_bytes()).servers {
            servers.insert(
                (s.backend.to_string(), s.server),
                (
                    s.addr.ip().to_string(),
                    s.addr.port(),
                    if s.maint { 5 } else { 0 },
                    s.weight,
                ),
            );
        }
    }

    /// The live config, `None` before the first deploy.
    pub fn live_config(&self) -> Option<String> {
        self.file(LIVE_PATH)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The live config, empty when there is none.
    pub fn live(&self) -> String {
        self.live_config().unwrap_or_default()
    }

    /// A file on the edge.
    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        lock(&self.files).get(path).cloned()
    }

    /// Writes a file on the edge, as someone editing it by hand would (the running servers
    /// stay as they are until a reload).
    pub fn set_file(&self, path: &str, contents: &[u8]) {
        lock(&self.files).insert(path.to_owned(), contents.to_vec());
    }

    /// One running server.
    pub fn server(&self, backend: &str, server: &str) -> Option<SimServer> {
        lock(&self.servers)
            .get(&(backend.to_owned(), server.to_owned()))
            .map(|(address, port, admin_flags, weight)| SimServer {
                address: address.clone(),
                port: *port,
                admin_flags: *admin_flags,
                weight: *weight,
            })
    }

    /// Every command run and socket command sent, in order.
    pub fn commands(&self) -> Vec<String> {
        lock(&self.log).clone()
    }

    /// How many reloads the master took.
    pub fn reload_count(&self) -> u32 {
        *lock(&self.reloads)
    }

    /// Whether the master was ever told to reload.
    pub fn reloaded(&self) -> bool {
        lock(&self.log).iter().any(|l| l == "reload")
    }

    /// Runs one runtime API command (`set server BACKEND/SERVER addr A port P`, `… state
    /// maint|ready`, `… weight W`) and returns HAProxy's answer: what an operator changing
    /// the running servers by hand does.
    pub fn runtime_command(&self, cmd: &str) -> String {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        let Some((be, srv)) = words.get(2).and_then(|n| n.split_once('/')) else {
            return "Unknown command.\n".into();
        };
        let mut servers = lock(&self.servers);
        let Some(server) = servers.get_mut(&(be.to_owned(), srv.to_owned())) else {
            return "No such server.\n".into();
        };
        match words.get(3..) {
            Some(["addr", ip, "port", port]) => {
                let Ok(port) = port.parse() else {
                    return "Invalid port.\n".into();
                };
                server.0 = (*ip).to_owned();
                server.1 = port;
                "IP changed from 'x' to 'y' by 'stats socket command'\n".into()
            }
            Some(["state", "maint"]) => {
                server.2 |= 1;
                String::new()
            }
            Some(["state", "ready"]) => {
                server.2 = 0;
                String::new()
            }
            Some(["weight", w]) => {
                let Ok(weight) = w.parse() else {
                    return "Invalid weight.\n".into();
                };
                if !self.ignores_weight {
                    server.3 = weight;
                }
                String::new()
            }
            _ => "Unknown command.\n".into(),
        }
    }

    /// The master CLI: `reload` (which loads the live file) and `show proc`.
    fn master_command(&self, command: &str) -> String {
        let mut reloads = lock(&self.reloads);
        if command == "reload" {
            *reloads += 1;
            if !self.stale_reload {
                self.load(&self.live());
            }
            return String::new();
        }
        let r = *reloads;
        format!(
            "#<PID> <type> <reloads> <uptime> <version>\n1 master {r} [failed: 0] 0d 2.6\n# workers\n{} worker 0 0d 2.6\n",
            100 + r
        )
    }

    /// `show servers state`, in format 1.
    fn servers_state(&self) -> String {
        let mut out = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_port\n".to_owned();
        for ((be, srv), (addr, port, admin, weight)) in lock(&self.servers).iter() {
            out.push_str(&format!(
                "1 {be} 1 {srv} {addr} 2 {admin} {weight} {port}\n"
            ));
        }
        out + "\n"
    }

    fn missing(&self, what: &str, path: &str) -> DeployError {
        DeployError::Step {
            node: self.name.clone(),
            step: format!("{what} {path}"),
            message: "no such file".into(),
        }
    }
}

#[async_trait::async_trait]
impl EdgeHost for SimEdge {
    fn node(&self) -> &str {
        &self.name
    }
    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, DeployError> {
        Ok(self.file(path))
    }
    async fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), DeployError> {
        self.set_file(path, contents);
        Ok(())
    }
    async fn rename(&self, from: &str, to: &str) -> Result<(), DeployError> {
        let mut files = lock(&self.files);
        let data = files
            .remove(from)
            .ok_or_else(|| self.missing("renaming", from))?;
        files.insert(to.into(), data);
        Ok(())
    }
    async fn copy(&self, from: &str, to: &str) -> Result<(), DeployError> {
        let mut files = lock(&self.files);
        let data = files
            .get(from)
            .cloned()
            .ok_or_else(|| self.missing("copying", from))?;
        files.insert(to.into(), data);
        Ok(())
    }
    async fn remove_file(&self, path: &str) -> Result<(), DeployError> {
        lock(&self.files).remove(path);
        Ok(())
    }
    async fn exec(&self, argv: &[String]) -> Result<crate::ExecOutput, DeployError> {
        lock(&self.log).push(argv.join(" "));
        Ok(crate::ExecOutput {
            status: Some(if self.rejects { 1 } else { 0 }),
            stdout: String::new(),
            stderr: if self.rejects {
                "[ALERT] bad".into()
            } else {
                String::new()
            },
        })
    }
    async fn socket_command(&self, socket: &str, command: &str) -> Result<String, DeployError> {
        lock(&self.log).push(command.to_owned());
        if socket.ends_with("master.sock") {
            return Ok(self.master_command(command));
        }
        if command == "show servers state" {
            return Ok(self.servers_state());
        }
        Ok(command
            .split("; ")
            .map(|c| format!("{}\n", self.runtime_command(c)))
            .collect())
    }
}

/// Simulated edges by node name, shared with the test that inspects them.
pub(crate) type SimEdges = BTreeMap<String, Arc<SimEdge>>;

#[cfg(test)]
mod tests;
