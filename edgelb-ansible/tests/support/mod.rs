//! A throwaway edge on loopback for real `ansible-playbook` runs: sshd on a free port of
//! 127.0.0.1 with fresh host and client keys (started in its own mount namespace with a clean
//! `/root/.bashrc`, so a login runs no pyenv), and HAProxy in master-worker mode with its
//! config and sockets in a temp dir. Everything is killed by PID on drop.
//!
//! Needs root, openssh-server, openssh-client, haproxy, util-linux and ansible-core. Without
//! them a test is skipped with a message, or fails when `CI` is set.

#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgelb_ansible::AnsibleDeployerConfig;
use edgelb_core::{EdgeNode, RenderedConfig, SshTarget};
use edgelb_haproxy::MasterProcs;

const SSHD: &str = "/usr/sbin/sshd";

/// Where an edge's directory (config, master socket) shows to SSH sessions on it.
pub const EDGE_DIR: &str = "/run/edgelb-test-edge";

/// Programs the real runs need.
#[derive(Debug, Clone)]
pub struct Tools {
    /// `ansible-playbook`.
    pub ansible_playbook: PathBuf,
}

impl Tools {
    /// The Python that runs `ansible-playbook` (its venv's, which has ansible-core).
    pub fn python(&self) -> PathBuf {
        self.ansible_playbook.with_file_name("python3")
    }
}

/// The tools, or `None` (test skipped) with a message; in CI a missing tool fails the test.
pub fn tools_or_skip(test: &str) -> Option<Tools> {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root (sshd and mount namespaces)".to_owned());
    }
    if !Path::new(SSHD).exists() {
        missing.push("sshd (apt-get install openssh-server)".to_owned());
    }
    for (program, package) in [
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
        ("haproxy", "haproxy"),
        ("unshare", "util-linux"),
    ] {
        if find_on_path(program).is_none() {
            missing.push(format!("{program} (apt-get install {package})"));
        }
    }
    let ansible = find_on_path("ansible-playbook").or_else(|| {
        let venv =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/venv/bin/ansible-playbook");
        venv.exists().then_some(venv)
    });
    if ansible.is_none() {
        missing.push(
            "ansible-playbook (pip install ansible-core, e.g. into target/venv as scripts/test does)"
                .to_owned(),
        );
    }
    if missing.is_empty() {
        return ansible.map(|ansible_playbook| Tools { ansible_playbook });
    }
    let message = format!(
        "{test}: needs {}; scripts/test installs them",
        missing.join(", ")
    );
    if std::env::var_os("CI").is_some() {
        panic!("{message}");
    }
    eprintln!("skipping {message}");
    None
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// A free TCP port on 127.0.0.1 (free when asked).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh ed25519 key pair at `path` (+ `.pub`); returns the public key line.
pub fn keygen(path: &Path, comment: &str) -> String {
    run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            comment,
            "-f",
            path.to_str().unwrap(),
        ],
    );
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned()
}

/// One edge: sshd and HAProxy on loopback.
pub struct Edge {
    /// Holds everything; removed on drop.
    pub dir: tempfile::TempDir,
    /// sshd's port on 127.0.0.1.
    pub ssh_port: u16,
    /// HAProxy's HTTP frontend on 127.0.0.1.
    pub http_port: u16,
    /// The host's public key line (`ssh-ed25519 AAAA… comment`).
    pub host_key: String,
    sshd: Child,
    haproxy: Child,
}

impl Edge {
    /// Starts sshd and HAProxy (serving the word `bootstrap`, with no digest line).
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("edgelb-ans-edge-")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        let host_key = keygen(&d.join("host_key"), "edge-host");
        let client = keygen(&d.join("client_key"), "edgelb-deployer");
        std::fs::create_dir(d.join("authorized_keys")).unwrap();
        std::fs::write(d.join("authorized_keys/root"), format!("{client}\n")).unwrap();
        std::fs::write(d.join("bashrc"), "# a clean shell for the test edge\n").unwrap();
        let ssh_port = free_port();
        let http_port = free_port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {ssh_port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {d}/host_key\n\
                 PidFile {d}/sshd.pid\n\
                 PermitRootLogin prohibit-password\n\
                 AuthorizedKeysFile {d}/authorized_keys/%u\n\
                 StrictModes no\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 UsePAM no\n\
                 Subsystem sftp /usr/lib/openssh/sftp-server\n\
                 MaxStartups 100:30:200\n",
                d = d.display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("haproxy.cfg"),
            haproxy_body(d, http_port, "bootstrap"),
        )
        .unwrap();

        // sshd's privilege separation dir lives on a private /run, where the edge's directory
        // also shows as EDGE_DIR (the same path on every edge, like /etc/haproxy on real
        // ones); a clean .bashrc keeps the host's shell start-up (pyenv) out of every remote
        // command.
        let script = format!(
            "mount -t tmpfs tmpfs /run && mkdir -m 0755 /run/sshd {EDGE_DIR} && \
             mount --bind {d} {EDGE_DIR} && mount --bind {d}/bashrc /root/.bashrc && \
             exec {SSHD} -D -e -f {d}/sshd_config",
            d = d.display()
        );
        let sshd = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let haproxy = Command::new("haproxy")
            .arg("-W")
            .arg("-S")
            .arg(d.join("master.sock"))
            .arg("-f")
            .arg(d.join("haproxy.cfg"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("haproxy.log")).unwrap())
            .spawn()
            .unwrap();
        let edge = Self {
            dir,
            ssh_port,
            http_port,
            host_key,
            sshd,
            haproxy,
        };
        edge.wait_until(
            || TcpStream::connect(("127.0.0.1", ssh_port)).is_ok(),
            "sshd",
        );
        edge.wait_until(|| edge.try_http_body().is_some(), "haproxy");
        edge.wait_until(|| edge.try_show_proc().is_some(), "haproxy's master socket");
        edge
    }

    fn wait_until(&self, ready: impl Fn() -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready() {
            assert!(
                Instant::now() < deadline,
                "{what} did not start; sshd.log: {}; haproxy.log: {}",
                self.read("sshd.log"),
                self.read("haproxy.log")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(file)).unwrap_or_default()
    }

    /// The live config file (on this machine; [`EDGE_DIR`] on the edge).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("haproxy.cfg")
    }

    /// The live config's text.
    pub fn live(&self) -> String {
        self.read("haproxy.cfg")
    }

    /// Whether `haproxy.cfg<suffix>` exists (`.edgelb-new`, `.edgelb-prev`).
    pub fn has(&self, suffix: &str) -> bool {
        self.dir
            .path()
            .join(format!("haproxy.cfg{suffix}"))
            .exists()
    }

    /// HAProxy's master socket.
    pub fn master_socket(&self) -> PathBuf {
        self.dir.path().join("master.sock")
    }

    /// The master's PID.
    pub fn master_pid(&self) -> u32 {
        self.haproxy.id()
    }

    /// The edge as a node named `name`.
    pub fn node(&self, name: &str) -> EdgeNode {
        let mut ssh = SshTarget::new("127.0.0.1");
        ssh.port = self.ssh_port;
        EdgeNode::new(name).with_ssh(ssh)
    }

    /// The pinned host key line.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.ssh_port, self.host_key)
    }

    /// The host key's `SHA256:…` fingerprint.
    pub fn host_key_fingerprint(&self) -> String {
        let out = run(
            "ssh-keygen",
            &[
                "-l",
                "-f",
                self.dir.path().join("host_key.pub").to_str().unwrap(),
            ],
        );
        out.split_whitespace().nth(1).unwrap().to_owned()
    }

    /// The client key the edge accepts.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// Lets `other`'s client key log in here too (one deployer key for several edges).
    pub fn accept_client_key_of(&self, other: &Edge) {
        let mine = self.dir.path().join("authorized_keys/root");
        let theirs = std::fs::read_to_string(other.dir.path().join("client_key.pub")).unwrap();
        let mut keys = std::fs::read_to_string(&mine).unwrap();
        keys.push_str(&theirs);
        std::fs::write(mine, keys).unwrap();
    }

    /// Deployer settings for this edge: its pinned key, the accepted client key, its paths.
    pub fn deployer_config(&self, tools: &Tools) -> AnsibleDeployerConfig {
        AnsibleDeployerConfig {
            ansible_playbook: Some(tools.ansible_playbook.clone()),
            private_key_file: Some(self.client_key()),
            known_hosts: vec![self.known_hosts_line()],
            config_path: format!("{EDGE_DIR}/haproxy.cfg"),
            master_socket: format!("{EDGE_DIR}/master.sock"),
            run_timeout: Duration::from_secs(120),
            ..Default::default()
        }
    }

    /// A rendered config that serves `word` on this edge's HTTP port.
    pub fn config(&self, word: &str) -> RenderedConfig {
        RenderedConfig::from_body(haproxy_body(self.dir.path(), self.http_port, word))
    }

    /// A rendered config that `haproxy -c` accepts but that cannot start: it binds an
    /// address this host does not have.
    pub fn config_that_cannot_bind(&self) -> RenderedConfig {
        let body = haproxy_body(self.dir.path(), self.http_port, "never")
            .replace("bind 127.0.0.1:", "bind 192.0.2.1:");
        RenderedConfig::from_body(body)
    }

    /// A rendered config that `haproxy -c` rejects.
    pub fn config_rejected(&self) -> RenderedConfig {
        let body = haproxy_body(self.dir.path(), self.http_port, "never")
            .replace("    mode http\n", "    mode http\n    bogus_keyword 1\n");
        RenderedConfig::from_body(body)
    }

    fn try_http_body(&self) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.http_port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
    }

    /// What HAProxy serves now.
    pub fn http_body(&self) -> String {
        self.try_http_body()
            .expect("haproxy answers on its HTTP port")
    }

    fn try_show_proc(&self) -> Option<MasterProcs> {
        let mut stream = UnixStream::connect(self.master_socket()).ok()?;
        stream.write_all(b"show proc\n").ok()?;
        stream.shutdown(std::net::Shutdown::Write).ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        MasterProcs::parse("test-edge", &text).ok()
    }

    /// The master's `show proc`.
    pub fn show_proc(&self) -> MasterProcs {
        self.try_show_proc()
            .expect("haproxy's master socket answers")
    }
}

/// A small HAProxy config answering every request with `word`.
fn haproxy_body(dir: &Path, http_port: u16, word: &str) -> String {
    format!(
        "global\n\
         \x20   stats socket {d}/admin.sock mode 600 level admin expose-fd listeners\n\
         defaults\n\
         \x20   mode http\n\
         \x20   timeout connect 1s\n\
         \x20   timeout client 5s\n\
         \x20   timeout server 5s\n\
         frontend web\n\
         \x20   bind 127.0.0.1:{http_port}\n\
         \x20   http-request return status 200 content-type text/plain string \"{word}\"\n",
        d = dir.display()
    )
}

/// Every descendant of `pid` (from /proc).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid …"; comm may hold spaces, so read after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((child, ppid));
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for (child, _) in parents.iter().filter(|(_, ppid)| *ppid == p) {
            found.push(*child);
            frontier.push(*child);
        }
    }
    found
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

impl Drop for Edge {
    fn drop(&mut self) {
        // sshd: its session processes first (they outlive the listener), then sshd itself.
        for pid in descendants(self.sshd.id()) {
            signal(pid, "-KILL");
        }
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
        // HAProxy: SIGTERM to the master stops the workers; SIGKILL what is left.
        signal(self.haproxy.id(), "-TERM");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.haproxy.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in descendants(self.haproxy.id()) {
            signal(pid, "-KILL");
        }
        let _ = self.haproxy.kill();
        let _ = self.haproxy.wait();
    }
}
