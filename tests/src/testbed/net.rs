//! The testbed's network: one bridge in the root namespace with a unique /24, and network
//! namespaces joined to it by veth pairs. Names and subnet are unique per testbed; an owner
//! file under [`STATE_DIR`] lets a later run clean up after a killed one.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::sys::{alive, proc_stat, run, run_quiet, stop_pids};

/// Where owner files of live testbeds are kept.
pub const STATE_DIR: &str = "/run/edgelb-testbed";

/// One testbed's network.
#[derive(Debug)]
pub struct Net {
    /// Four hex digits naming everything of this testbed.
    pub id: String,
    /// The first three octets of the subnet (`10.a.b.0/24`).
    pub prefix: [u8; 3],
    /// The bridge in the root namespace (it has `.1`).
    pub bridge: String,
    namespaces: Vec<String>,
    links: u32,
}

impl Net {
    /// Picks a free id and subnet and creates the bridge. Cleans up leftovers of killed runs
    /// first.
    pub fn create() -> Result<Self, String> {
        std::fs::create_dir_all(STATE_DIR).map_err(|e| format!("creating {STATE_DIR}: {e}"))?;
        clean_stale();
        let routes = run("ip", &["-4", "route", "show"])?;
        for attempt in 0..64 {
            let n = random_u32() & 0x3fff;
            let prefix = [10, 192 + (n >> 8) as u8, (n & 0xff) as u8];
            let net = format!("10.{}.{}.", prefix[1], prefix[2]);
            if routes.contains(&net) {
                continue; // the host uses this range already
            }
            let id = format!("{n:04x}");
            let bridge = format!("elb{id}b");
            // Creating the bridge is the lock: it fails when another testbed has this id.
            if run("ip", &["link", "add", &bridge, "type", "bridge"]).is_err() {
                tracing::debug!(attempt, id, "testbed id taken; trying another");
                continue;
            }
            let net = Self {
                id,
                prefix,
                bridge,
                namespaces: Vec::new(),
                links: 0,
            };
            let owner = format!(
                "pid={} start={}\n",
                std::process::id(),
                proc_stat(std::process::id()).map_or(0, |(_, s)| s)
            );
            std::fs::write(net.owner_file(), owner)
                .map_err(|e| format!("writing {}: {e}", net.owner_file().display()))?;
            run(
                "ip",
                &[
                    "addr",
                    "add",
                    &format!("{}/24", net.ip(1)),
                    "dev",
                    &net.bridge,
                ],
            )?;
            run("ip", &["link", "set", &net.bridge, "up"])?;
            return Ok(net);
        }
        Err("no free testbed id/subnet found in 64 tries".into())
    }

    fn owner_file(&self) -> PathBuf {
        PathBuf::from(STATE_DIR).join(&self.id)
    }

    /// `10.a.b.<host>`.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], host)
    }

    /// The name of this testbed's namespace `role` (`edge1`, `cluster`, `client`).
    pub fn ns_name(&self, role: &str) -> String {
        format!("elb-{}-{role}", self.id)
    }

    /// Creates namespace `role` with `eth0` on the bridge holding `addrs` (the first is the
    /// primary), and `lo` up. Returns the namespace's name.
    pub fn add_namespace(&mut self, role: &str, addrs: &[Ipv4Addr]) -> Result<String, String> {
        let ns = self.ns_name(role);
        run("ip", &["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        self.links += 1;
        let host_if = format!("elb{}h{}", self.id, self.links);
        let peer_if = format!("elb{}p{}", self.id, self.links);
        run(
            "ip",
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
            ],
        )?;
        run("ip", &["link", "set", &peer_if, "netns", &ns])?;
        run("ip", &["-n", &ns, "link", "set", &peer_if, "name", "eth0"])?;
        for addr in addrs {
            run(
                "ip",
                &[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    "eth0",
                ],
            )?;
        }
        run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
        run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        run("ip", &["link", "set", &host_if, "master", &self.bridge])?;
        run("ip", &["link", "set", &host_if, "up"])?;
        Ok(ns)
    }

    /// PIDs of every process in namespace `ns`.
    pub fn pids_in(ns: &str) -> Vec<u32> {
        run("ip", &["netns", "pids", ns])
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Kills every process in every namespace, deletes the namespaces and the bridge.
    pub fn teardown(&mut self) {
        teardown_id(&self.id, &self.namespaces);
        self.namespaces.clear();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Removes everything named after testbed `id`: processes in its namespaces, the
/// namespaces, its links, its owner file and its directory.
fn teardown_id(id: &str, known: &[String]) {
    let prefix = format!("elb-{id}-");
    let mut namespaces: Vec<String> = known.to_vec();
    for line in run("ip", &["netns", "list"]).unwrap_or_default().lines() {
        if let Some(name) = line.split_whitespace().next()
            && name.starts_with(&prefix)
            && !namespaces.iter().any(|n| n == name)
        {
            namespaces.push(name.to_owned());
        }
    }
    let pids: Vec<u32> = namespaces.iter().flat_map(|ns| Net::pids_in(ns)).collect();
    stop_pids(&pids, Duration::from_secs(2));
    for ns in &namespaces {
        run_quiet("ip", &["netns", "del", ns]);
    }
    let link_prefix = format!("elb{id}");
    for line in run("ip", &["-o", "link", "show"])
        .unwrap_or_default()
        .lines()
    {
        // "12: elb1a2bh1@if11: <…>" → "elb1a2bh1"
        if let Some(name) = line
            .split(": ")
            .nth(1)
            .map(|n| n.split('@').next().unwrap_or(n))
            && name.starts_with(&link_prefix)
        {
            run_quiet("ip", &["link", "del", name]);
        }
    }
    let _ = std::fs::remove_dir_all(super::dir_for(id));
    let _ = std::fs::remove_file(PathBuf::from(STATE_DIR).join(id));
}

/// Tears down testbeds whose owner process is gone (a killed test run).
fn clean_stale() {
    let Ok(entries) = std::fs::read_dir(STATE_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        let owner = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let field = |name: &str| -> Option<u64> {
            owner
                .split_whitespace()
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
        };
        let live = match (field("pid"), field("start")) {
            (Some(pid), Some(start)) => {
                let pid = pid as u32;
                alive(pid) && proc_stat(pid).is_some_and(|(_, s)| s == start)
            }
            _ => false,
        };
        if !live {
            tracing::info!(id, "cleaning up a testbed left by a killed run");
            teardown_id(&id, &[]);
        }
    }
}

/// A random number from the standard library's per-process random hasher keys.
fn random_u32() -> u32 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u32(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish() as u32
}
