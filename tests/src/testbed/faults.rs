//! Link faults on an edge: packet loss in both directions, or a cut link (100 % loss), made
//! with an nftables table inside the edge's network namespace (the kernel here has no netem).
//! Only the edge's `eth0` is touched: its loopback (HAProxy's sockets) keeps working, as on a
//! real VM whose uplink fails.

use std::io::Write;
use std::process::{Command, Stdio};

use super::edge::Edge;
use super::net::Net;
use super::sys::{comm, signal};

/// The table the faults live in.
const TABLE: &str = "edgelb_fault";

impl Edge {
    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) every HAProxy process of the edge, master and
    /// workers: a hung HAProxy, whose sockets still complete handshakes in the kernel but
    /// never answer.
    pub fn freeze_haproxy(&self, frozen: bool) {
        for pid in Net::pids_in(&self.netns) {
            if comm(pid).as_deref() == Some("haproxy") {
                signal(pid, if frozen { "STOP" } else { "CONT" });
            }
        }
    }

    /// Drops `percent` % of the packets in and out of the edge's link at random (0 heals it,
    /// 100 cuts it). Established connections see it like a real lossy or dead link.
    pub fn set_packet_loss(&self, percent: u8) -> Result<(), String> {
        let percent = percent.min(100);
        // Adding first makes the delete work whether or not a fault was set before.
        let mut rules = format!("add table inet {TABLE}\ndelete table inet {TABLE}\n");
        if percent > 0 {
            // `numgen random mod 100` is 0…99: every packet is below 100.
            let drop = if percent == 100 {
                "drop".to_owned()
            } else {
                format!("numgen random mod 100 < {percent} drop")
            };
            rules.push_str(&format!(
                "table inet {TABLE} {{\n\
                 \tchain input {{ type filter hook input priority 0; policy accept; iifname \"eth0\" {drop}; }}\n\
                 \tchain output {{ type filter hook output priority 0; policy accept; oifname \"eth0\" {drop}; }}\n\
                 }}\n"
            ));
        }
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.netns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running nft in {}: {e}", self.netns))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(rules.as_bytes())
                .map_err(|e| format!("writing nft rules: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("waiting for nft: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "nft in {} failed: {}",
                self.netns,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}
