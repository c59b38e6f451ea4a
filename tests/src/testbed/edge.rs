//! An edge host: a network namespace and a mount namespace of its own, running sshd (fresh
//! host key, our client keys authorized) and HAProxy in master-worker mode, with the edge's
//! own `/etc/haproxy`, `/etc/ssh`, `/run` and a clean `/root/.bashrc`.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use edgelb_core::{EdgeNode, SshTarget};

use super::keys::KeyPair;
use super::sys::{alive, comm, find_program, run, stop_pids, tail, wait_until};

/// The HAProxy config every edge starts with: master-worker, the admin socket, no services.
pub const INITIAL_CONFIG: &str = "\
global
    master-worker
    stats socket /run/haproxy/admin.sock mode 660 level admin expose-fd listeners
    hard-stop-after 10s
    httpclient.ssl.verify none

defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s

# Placeholder until edgelb deploys: a listener on loopback, so HAProxy has one.
frontend placeholder
    bind 127.0.0.1:65000
";

/// The script an edge runs as `ip netns exec NS unshare -m --propagation private sh SCRIPT
/// DIR`: private mounts, then haproxy in the background, then `exec sshd`.
const INIT_SCRIPT: &str = r#"set -eu
dir="$1"
mount -t tmpfs -o mode=0755 edgelb-run /run
mkdir -p /run/sshd /run/haproxy
chmod 0755 /run/sshd
mount --bind "$dir/etc-haproxy" /etc/haproxy
mount --bind "$dir/etc-ssh" /etc/ssh
# The edge's own empty chroot for HAProxy's workers (rendered configs jail them there).
mount --bind "$dir/chroot" /var/lib/haproxy
if [ -e /root/.bashrc ]; then mount --bind "$dir/bashrc" /root/.bashrc; fi
haproxy -W -S /run/haproxy/master.sock -f /etc/haproxy/haproxy.cfg -p /run/haproxy/haproxy.pid >>"$dir/state/haproxy.log" 2>&1 &
echo $! > "$dir/state/haproxy.pid"
i=0
while [ ! -S /run/haproxy/admin.sock ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
touch "$dir/state/ready"
exec /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config >>"$dir/state/sshd.log" 2>&1
"#;

/// One edge host.
#[derive(Debug)]
pub struct Edge {
    /// Node name (`edge1`, …).
    pub name: String,
    /// Its address on the testbed network (sshd listens on port 22, frontends on any port).
    pub ip: Ipv4Addr,
    /// Its network namespace.
    pub netns: String,
    /// Its directory on the host (`etc-haproxy`, `etc-ssh`, `state`).
    pub dir: PathBuf,
    /// The host key's public line (`ssh-ed25519 AAAA…`).
    pub host_key: String,
    init: Option<Child>,
    restarted_sshd: Vec<Child>,
}

impl Edge {
    /// Writes the edge's files and starts it; returns once sshd answers and haproxy runs.
    pub fn start(
        name: &str,
        ip: Ipv4Addr,
        netns: String,
        dir: PathBuf,
        authorized: &[&KeyPair],
    ) -> Result<Self, String> {
        let mkdir = |p: &Path| {
            std::fs::create_dir_all(p).map_err(|e| format!("creating {}: {e}", p.display()))?;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("chmod {}: {e}", p.display()))
        };
        let write = |p: &Path, text: &str, mode: u32| {
            std::fs::write(p, text).map_err(|e| format!("writing {}: {e}", p.display()))?;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("chmod {}: {e}", p.display()))
        };
        for sub in [
            "",
            "etc-haproxy",
            "etc-ssh",
            "etc-ssh/authorized_keys",
            "state",
            "chroot",
        ] {
            mkdir(&dir.join(sub))?;
        }
        write(&dir.join("etc-haproxy/haproxy.cfg"), INITIAL_CONFIG, 0o644)?;
        write(
            &dir.join("bashrc"),
            "# clean .bashrc of a testbed edge\n",
            0o644,
        )?;
        let host_key =
            KeyPair::generate(&dir.join("etc-ssh/ssh_host_ed25519_key"), "ed25519", name)?;
        let authorized_keys: String = authorized
            .iter()
            .map(|k| format!("{}\n", k.public))
            .collect();
        write(
            &dir.join("etc-ssh/authorized_keys/root"),
            &authorized_keys,
            0o644,
        )?;
        let sftp = find_program("/usr/lib/openssh/sftp-server")
            .map_or("internal-sftp".to_owned(), |p| p.display().to_string());
        let sshd_config = format!(
            "# sshd of testbed edge {name}
ListenAddress {ip}:22
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
PermitRootLogin prohibit-password
AuthorizedKeysFile /etc/ssh/authorized_keys/%u
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowStreamLocalForwarding yes
# OpenSSH applies AllowTcpForwarding to UNIX-socket forwarding too: streamlocal needs local.
AllowTcpForwarding local
X11Forwarding no
PrintMotd no
MaxStartups 100:30:200
Subsystem sftp {sftp}
"
        );
        write(&dir.join("etc-ssh/sshd_config"), &sshd_config, 0o644)?;
        write(&dir.join("init.sh"), INIT_SCRIPT, 0o755)?;

        let init = Command::new("ip")
            .args([
                "netns",
                "exec",
                &netns,
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
            ])
            .arg(dir.join("init.sh"))
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("state/init.log")).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("starting edge {name}: {e}"))?;
        let mut edge = Self {
            name: name.to_owned(),
            ip,
            netns,
            dir,
            host_key: host_key.public_key(),
            init: Some(init),
            restarted_sshd: Vec::new(),
        };
        edge.wait_ready()?;
        Ok(edge)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let ready = self.dir.join("state/ready");
        let addr = SocketAddr::from((self.ip, 22));
        let ok = wait_until(Duration::from_secs(15), || {
            ready.exists() && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        if ok && self.haproxy_pid().is_some_and(alive) {
            return Ok(());
        }
        Err(format!(
            "edge {} did not come up (sshd on {addr}, haproxy running: {}).\ninit: {}\nhaproxy: {}\nsshd: {}",
            self.name,
            self.haproxy_pid().is_some_and(alive),
            tail(&self.dir.join("state/init.log"), 2000),
            tail(&self.dir.join("state/haproxy.log"), 2000),
            tail(&self.dir.join("state/sshd.log"), 2000),
        ))
    }

    /// The edge as edgelb sees it: SSH to its address as root.
    pub fn node(&self) -> EdgeNode {
        EdgeNode::new(&self.name).with_ssh(SshTarget::new(self.ip.to_string()))
    }

    /// Gives the edge's interface one more address of the testbed network (as a second IP a
    /// Service can be placed on); it goes with the namespace.
    pub fn add_address(&self, ip: Ipv4Addr) -> Result<(), String> {
        run(
            "ip",
            &[
                "-n",
                &self.netns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ],
        )
        .map(drop)
    }

    /// Its pinned host key as a known_hosts line.
    pub fn known_hosts_line(&self) -> String {
        format!("{} {}", self.ip, self.host_key)
    }

    /// The host key's SHA-256 fingerprint, as `ssh-keygen -l` prints it.
    pub fn host_key_fingerprint(&self) -> String {
        let path = self.dir.join("etc-ssh/ssh_host_ed25519_key.pub");
        super::sys::run("ssh-keygen", &["-l", "-f", &path.to_string_lossy()])
            .ok()
            .and_then(|out| out.split_whitespace().nth(1).map(str::to_owned))
            .unwrap_or_default()
    }

    /// The HAProxy master's `show proc`, asked inside the edge (not over SSH).
    pub fn show_proc(&self, tb_client: &Path) -> edgelb_haproxy::MasterProcs {
        self.try_show_proc(tb_client).expect("show proc parses")
    }

    /// [`Edge::show_proc`], asked again for up to 5 s while the master answers nothing (it
    /// does while it re-executes itself for a reload).
    pub fn try_show_proc(&self, tb_client: &Path) -> Result<edgelb_haproxy::MasterProcs, String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let out = self
                .command(tb_client)
                .args(["sock", "/run/haproxy/master.sock", "show proc"])
                .output()
                .map_err(|e| format!("running nsenter: {e}"))?;
            let parsed = edgelb_haproxy::MasterProcs::parse(
                &self.name,
                &String::from_utf8_lossy(&out.stdout),
            );
            match parsed {
                Ok(procs) => return Ok(procs),
                Err(e) if std::time::Instant::now() >= deadline => return Err(e.to_string()),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// `(pid, uids)` of each current HAProxy worker, with the real, effective, saved and
    /// filesystem uids from `/proc/PID/status` (the edge shares the host's PID namespace).
    pub fn worker_uids(&self, tb_client: &Path) -> Vec<(u32, Vec<u32>)> {
        self.show_proc(tb_client)
            .workers
            .iter()
            .map(|(pid, _)| {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let uids = status
                    .lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .map(|u| {
                        u.split_whitespace()
                            .filter_map(|n| n.parse().ok())
                            .collect()
                    })
                    .unwrap_or_default();
                (*pid, uids)
            })
            .collect()
    }

    /// Panics unless every current HAProxy worker runs as a user other than root.
    pub fn assert_workers_not_root(&self, tb_client: &Path, when: &str) {
        let workers = self.worker_uids(tb_client);
        assert!(
            !workers.is_empty(),
            "{when}: no HAProxy worker on {}",
            self.name
        );
        for (pid, uids) in &workers {
            assert!(
                uids.len() == 4 && uids.iter().all(|u| *u != 0),
                "{when}: HAProxy worker {pid} on {} runs with uids {uids:?} (real, effective, saved, fs); it must not be root",
                self.name
            );
        }
    }

    /// The host path of the edge's `/etc/haproxy/<file>`.
    pub fn haproxy_file(&self, file: &str) -> PathBuf {
        self.dir.join("etc-haproxy").join(file)
    }

    /// The edge's live `/etc/haproxy/haproxy.cfg`.
    pub fn live_config(&self) -> String {
        std::fs::read_to_string(self.haproxy_file("haproxy.cfg")).unwrap_or_default()
    }

    /// PID of the HAProxy master.
    pub fn haproxy_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("state/haproxy.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// HAProxy's log (its stderr) so far.
    pub fn haproxy_log(&self) -> String {
        tail(&self.dir.join("state/haproxy.log"), 20_000)
    }

    /// A command that runs `program` inside the edge (its network and mount namespaces),
    /// entered through the HAProxy master's namespaces.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.haproxy_pid().unwrap_or(0).to_string())
            .args(["-m", "-n", "--"])
            .arg(program);
        cmd
    }

    /// PIDs of the edge's sshd processes (the listener and per-connection ones).
    pub fn sshd_pids(&self) -> Vec<u32> {
        super::net::Net::pids_in(&self.netns)
            .into_iter()
            .filter(|p| comm(*p).as_deref() == Some("sshd"))
            .collect()
    }

    /// PIDs of the edge's processes whose command line contains `needle`.
    pub fn pids_running(&self, needle: &str) -> Vec<u32> {
        super::net::Net::pids_in(&self.netns)
            .into_iter()
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
            })
            .collect()
    }

    /// Kills the sshd processes serving open SSH connections (not the listener): clients see
    /// their sessions die while new connections are still accepted.
    pub fn kill_sessions(&self) {
        let sshd = self.sshd_pids();
        let sessions: Vec<u32> = sshd
            .iter()
            .copied()
            .filter(|p| super::sys::ppid(*p).is_some_and(|parent| sshd.contains(&parent)))
            .collect();
        stop_pids(&sessions, Duration::from_secs(2));
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the edge's sshd: the listener (`listener`)
    /// or the processes serving open connections. A frozen listener still completes TCP
    /// handshakes in the kernel but never answers: a hung host.
    pub fn freeze_sshd(&self, listener: bool, frozen: bool) {
        let sshd = self.sshd_pids();
        for pid in &sshd {
            let is_session = super::sys::ppid(*pid).is_some_and(|p| sshd.contains(&p));
            if is_session != listener {
                super::sys::signal(*pid, if frozen { "STOP" } else { "CONT" });
            }
        }
    }

    /// Stops sshd on the edge, open sessions included; HAProxy keeps running.
    pub fn stop_sshd(&mut self) {
        stop_pids(&self.sshd_pids(), Duration::from_secs(2));
        if let Some(mut init) = self.init.take() {
            let _ = init.wait();
        }
        for mut child in self.restarted_sshd.drain(..) {
            let _ = child.wait();
        }
    }

    /// Starts sshd again in the edge's namespaces and waits until it answers.
    pub fn start_sshd(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join("state/sshd.log"))
            .map_err(|e| e.to_string())?;
        let child = self
            .command(Path::new("/usr/sbin/sshd"))
            .args(["-D", "-e", "-f", "/etc/ssh/sshd_config"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("restarting sshd on {}: {e}", self.name))?;
        self.restarted_sshd.push(child);
        let addr = SocketAddr::from((self.ip, 22));
        if wait_until(Duration::from_secs(10), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        }) {
            Ok(())
        } else {
            Err(format!(
                "sshd on {} did not come back: {}",
                self.name,
                tail(&self.dir.join("state/sshd.log"), 2000)
            ))
        }
    }

    /// Reaps the processes this edge started (after the network teardown killed them).
    pub(crate) fn reap(&mut self) {
        for mut child in self
            .init
            .take()
            .into_iter()
            .chain(self.restarted_sshd.drain(..))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
