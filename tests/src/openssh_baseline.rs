//! The OpenSSH command-line baseline of the benchmarks: one `ssh` per edge and change running
//! the same steps as the native deployer's reload path, so the benches compare like with like.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgelb_core::NodeConfig;

use crate::testbed::Testbed;

/// The steps one-shot OpenSSH runs on an edge: the config arrives on stdin.
pub const OPENSSH_SCRIPT: &str = r#"set -e
cfg=/etc/haproxy/haproxy.cfg
sock=/run/haproxy/master.sock
master() { echo 'show proc' | socat stdio "$sock" 2>/dev/null | awk '$2 == "master" { print $3, $5 }'; }
cat > "$cfg.edgelb-new"
haproxy -c -q -f "$cfg.edgelb-new"
before=$(master)
cp "$cfg" "$cfg.edgelb-prev"
mv "$cfg.edgelb-new" "$cfg"
echo reload | socat stdio "$sock" > /dev/null
i=0
# The master re-executes itself on reload: its socket refuses connections for a moment.
while now=$(master); [ -z "$now" ] || [ "$now" = "$before" ]; do
  i=$((i + 1)); [ "$i" -gt 500 ] && { echo 'reload not seen' >&2; exit 9; }
  sleep 0.02
done
# HAProxy 2.6 counts failed reloads since the last good one: 0 means this one took.
[ "${now#* }" = "0]" ] || { echo "reload failed: $now" >&2; exit 8; }
"#;

/// `ssh` as the baseline runs it: our key, the edges' pinned host keys, batch mode, as root.
pub struct OpenSsh {
    key: String,
    known_hosts: String,
    control_dir: std::path::PathBuf,
}

impl OpenSsh {
    /// Pins every edge's host key in a known_hosts file under the testbed's directory.
    pub fn new(tb: &Testbed) -> Self {
        let known_hosts = tb.dir.join("bench_known_hosts");
        let lines: String = tb
            .edges
            .iter()
            .map(|e| format!("{}\n", e.known_hosts_line()))
            .collect();
        std::fs::write(&known_hosts, lines).unwrap();
        Self {
            key: tb.key.private.to_string_lossy().into_owned(),
            known_hosts: known_hosts.to_string_lossy().into_owned(),
            control_dir: tb.dir.clone(),
        }
    }

    /// One `ssh` per edge of the batch (the i-th config to edge i), in parallel, over a
    /// ControlMaster connection when `multiplexed`; the time until the last one is done, in ms.
    pub fn deploy(&self, tb: &Testbed, batch: &[NodeConfig], multiplexed: bool) -> f64 {
        let started = Instant::now();
        let children: Vec<_> = batch
            .iter()
            .enumerate()
            .map(|(i, c)| self.spawn(&tb.edges[i].ip.to_string(), multiplexed, &c.config.text))
            .collect();
        for (i, child) in children.into_iter().enumerate() {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "ssh to edge{}: {}",
                i + 1,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        started.elapsed().as_secs_f64() * 1000.0
    }

    fn base(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args([
            "-i",
            &self.key,
            "-o",
            &format!("UserKnownHostsFile={}", self.known_hosts),
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-l",
            "root",
        ]);
        cmd
    }

    fn control_path(&self, host: &str) -> String {
        format!("ControlPath={}", self.control(host).display())
    }

    fn control(&self, host: &str) -> std::path::PathBuf {
        self.control_dir.join(format!("cm-{host}"))
    }

    fn spawn(&self, host: &str, control: bool, config: &str) -> std::process::Child {
        let mut cmd = self.base();
        if control {
            cmd.args(["-o", "ControlMaster=no", "-o", &self.control_path(host)]);
        } else {
            cmd.args(["-o", "ControlPath=none"]);
        }
        let mut child = cmd
            .arg(host)
            .arg(OPENSSH_SCRIPT)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(config.as_bytes())
            .unwrap();
        child
    }

    /// Opens a ControlMaster connection to `host`, for multiplexed deploys.
    pub fn start_master(&self, host: &str) {
        let status = self
            .base()
            .args(["-o", &self.control_path(host), "-o", "ControlMaster=yes"])
            .args(["-o", "ControlPersist=yes", "-N", "-f", host])
            .status()
            .unwrap();
        assert!(status.success(), "ssh ControlMaster to {host}");
        let path = self.control(host);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !Path::new(&path).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Closes the ControlMaster connection to `host`.
    pub fn stop_master(&self, host: &str) {
        let _ = self
            .base()
            .args(["-o", &self.control_path(host), "-O", "exit", host])
            .stderr(Stdio::null())
            .status();
    }
}
