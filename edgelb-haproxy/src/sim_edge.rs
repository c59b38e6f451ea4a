//! A simulated edge for unit tests: files, `haproxy -c`, the master CLI (`show proc`,
//! `reload`) and the runtime API on the servers, all in memory.
// Test code: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use edgelb_core::DeployError;

use crate::edge_host::EdgeHost;
use crate::live_file::LiveFile;

pub(crate) type SimServers = HashMap<(String, String), (String, u16, u32, u32)>;

/// A host running a simulated HAProxy: files, `haproxy -c`, the master CLI (`show proc`,
/// `reload`, which loads the live file) and the runtime API on the servers.
#[derive(Default)]
pub(crate) struct SimEdge {
    pub(crate) files: std::sync::Mutex<HashMap<String, Vec<u8>>>,
    /// (backend, server) → (address, port, admin flags, weight).
    pub(crate) servers: std::sync::Mutex<SimServers>,
    pub(crate) log: std::sync::Mutex<Vec<String>>,
    pub(crate) reloads: std::sync::Mutex<u32>,
    /// Takes `set server … weight` without doing it (a mismatch to detect).
    pub(crate) ignores_weight: bool,
    /// `haproxy -c` rejects every file.
    pub(crate) rejects: bool,
    /// `reload` counts a reload but leaves the servers as they were (the sockets belong to a
    /// HAProxy that loads another file).
    pub(crate) stale_reload: bool,
}

pub(crate) const LIVE_PATH: &str = "/etc/haproxy/haproxy.cfg";

impl SimEdge {
    pub(crate) fn load(&self, text: &str) {
        let mut servers = self.servers.lock().unwrap();
        servers.clear();
        for s in LiveFile::parse(text.as_bytes()).servers {
            servers.insert(
                (s.backend, s.server),
                (
                    s.addr.ip().to_string(),
                    s.addr.port(),
                    if s.maint { 5 } else { 0 },
                    s.weight,
                ),
            );
        }
    }

    pub(crate) fn start(text: &str, ignores_weight: bool, rejects: bool) -> Self {
        let sim = Self {
            ignores_weight,
            rejects,
            ..Self::default()
        };
        sim.files
            .lock()
            .unwrap()
            .insert(LIVE_PATH.into(), text.as_bytes().to_vec());
        sim.load(text);
        sim
    }

    pub(crate) fn live(&self) -> String {
        String::from_utf8(self.files.lock().unwrap()[LIVE_PATH].clone()).unwrap()
    }

    pub(crate) fn reloaded(&self) -> bool {
        self.log.lock().unwrap().iter().any(|l| l == "reload")
    }

    pub(crate) fn runtime_command(&self, cmd: &str) -> String {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        let Some((be, srv)) = words.get(2).and_then(|n| n.split_once('/')) else {
            return "Unknown command.\n".into();
        };
        let mut servers = self.servers.lock().unwrap();
        let Some(server) = servers.get_mut(&(be.to_owned(), srv.to_owned())) else {
            return "No such server.\n".into();
        };
        match words.get(3..) {
            Some(["addr", ip, "port", port]) => {
                server.0 = (*ip).to_owned();
                server.1 = port.parse().unwrap();
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
                if !self.ignores_weight {
                    server.3 = w.parse().unwrap();
                }
                String::new()
            }
            _ => "Unknown command.\n".into(),
        }
    }
}

#[async_trait::async_trait]
impl EdgeHost for SimEdge {
    fn node(&self) -> &str {
        "sim"
    }
    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, DeployError> {
        Ok(self.files.lock().unwrap().get(path).cloned())
    }
    async fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), DeployError> {
        self.files
            .lock()
            .unwrap()
            .insert(path.into(), contents.to_vec());
        Ok(())
    }
    async fn rename(&self, from: &str, to: &str) -> Result<(), DeployError> {
        let mut files = self.files.lock().unwrap();
        let data = files.remove(from).unwrap();
        files.insert(to.into(), data);
        Ok(())
    }
    async fn copy(&self, from: &str, to: &str) -> Result<(), DeployError> {
        let mut files = self.files.lock().unwrap();
        let data = files[from].clone();
        files.insert(to.into(), data);
        Ok(())
    }
    async fn remove_file(&self, path: &str) -> Result<(), DeployError> {
        self.files.lock().unwrap().remove(path);
        Ok(())
    }
    async fn exec(&self, argv: &[String]) -> Result<crate::ExecOutput, DeployError> {
        self.log.lock().unwrap().push(argv.join(" "));
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
        self.log.lock().unwrap().push(command.to_owned());
        if socket.ends_with("master.sock") {
            let mut reloads = self.reloads.lock().unwrap();
            if command == "reload" {
                *reloads += 1;
                if !self.stale_reload {
                    self.load(&self.live());
                }
                return Ok(String::new());
            }
            let r = *reloads;
            return Ok(format!(
                "#<PID> <type> <reloads> <uptime> <version>\n1 master {r} [failed: 0] 0d 2.6\n# workers\n{} worker 0 0d 2.6\n",
                100 + r
            ));
        }
        if command == "show servers state" {
            let mut out = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_port\n".to_owned();
            for ((be, srv), (addr, port, admin, weight)) in self.servers.lock().unwrap().iter() {
                out.push_str(&format!(
                    "1 {be} 1 {srv} {addr} 2 {admin} {weight} {port}\n"
                ));
            }
            return Ok(out + "\n");
        }
        Ok(command
            .split("; ")
            .map(|c| format!("{}\n", self.runtime_command(c)))
            .collect())
    }
}
