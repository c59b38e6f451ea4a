//! What polling an edge's traffic costs (`edge_stats`), at up to 10,000 endpoints: a real
//! HAProxy runs the config edgelb renders, and each poll reads `show stat` and `show info`
//! on its stats socket. Per poll: the bytes of the answers (what crosses the SSH session,
//! before its framing), HAProxy's CPU to produce them (its /proc utime + stime over the
//! polls), the controller's CPU to parse them, and the wall time of a whole poll.
//!
//! Run with `cargo bench -p edgelb-haproxy --bench edge_stats` (needs haproxy; prints a
//! table, asserts nothing). `cargo test --benches` runs a quick smoke case.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark binary: failing loudly is the point

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{find_haproxy, snapshot};
use edgelb_core::{EdgeNode, Renderer};
use edgelb_haproxy::edge_stats::{self, parse_show_info, parse_show_stat};
use edgelb_haproxy::{EdgeHost, HaproxyRenderer, LocalHost, RenderOptions};

/// utime + stime of `pid` and its children (the worker), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let mut pids = vec![pid];
    if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        pids.extend(
            children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .map(|stat| {
            // Fields after the command's closing parenthesis; utime and stime are 14 and 15.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = rest.split_whitespace().collect();
            f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
                + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        })
        .sum()
}

struct Running {
    pid: u32,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
    }
}

fn start(haproxy: &Path, config: &Path, pidfile: &Path) -> Option<Running> {
    // Big configs want more descriptors than a shell's default: raise the limit as far as
    // this user may (root: any), as an edge's systemd unit does.
    let out = Command::new("sh")
        .args(["-c", "ulimit -n 200000 2>/dev/null || ulimit -n \"$(ulimit -Hn)\"; exec \"$0\" -D -f \"$1\" -p \"$2\""])
        .arg(haproxy)
        .arg(config)
        .arg(pidfile)
        .output()
        .expect("run haproxy");
    if !out.status.success() {
        eprintln!(
            "haproxy did not start:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let pid = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    Some(Running { pid })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let Some(haproxy) = find_haproxy() else {
        println!("haproxy not found (apt-get install haproxy): nothing measured");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("admin.sock").display().to_string();
    let options = RenderOptions {
        socket_dirs: vec![dir.path().display().to_string()],
        stats_socket: socket.clone(),
        // HAProxy wants 2 × maxconn + one descriptor per server: a small maxconn keeps
        // 10,000+ servers under a container's fd limit (the stats answer does not depend on it).
        maxconn: Some(1_000),
        ..RenderOptions::default()
    };
    let cases: &[(&str, usize, usize)] = if quick {
        &[("1 svc x 10 ep", 1, 10)]
    } else {
        &[
            ("1 svc x 10 ep", 1, 10),
            ("100 svc x 10 ep", 100, 10),
            ("1 svc x 10,000 ep", 1, 10_000),
            ("1,000 svc x 10 ep", 1_000, 10),
        ]
    };
    let polls: u32 = if quick { 2 } else { 50 };
    let tick = 1_000.0 / 100.0; // ms per clock tick (USER_HZ is 100 on Linux)
    println!(
        "{:<20} {:>8} {:>7} {:>11} {:>14} {:>13} {:>10}",
        "snapshot", "servers", "proxies", "bytes/poll", "haproxy CPU", "parse CPU", "poll wall"
    );
    for &(label, services, per_service) in cases {
        let renderer = HaproxyRenderer::new(options.clone()).expect("renderer");
        let text = renderer
            .render(
                &snapshot(services, per_service, 20_000),
                &EdgeNode::new("edge-1"),
            )
            .expect("render")
            .text;
        let config = dir.path().join("edge.cfg");
        std::fs::write(&config, &text).expect("write config");
        let Some(running) = start(&haproxy, &config, &dir.path().join("haproxy.pid")) else {
            continue;
        };
        let host = LocalHost::new("edge-1");
        // Wait for the socket, bounded.
        let ready = Instant::now();
        while host.socket_command(&socket, "show info").await.is_err() {
            assert!(ready.elapsed() < Duration::from_secs(30), "no stats socket");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let before = cpu_ticks(running.pid);
        let start = Instant::now();
        let mut stats = None;
        for _ in 0..polls {
            stats = Some(edge_stats::read(&host, &socket).await.expect("poll"));
        }
        let wall = start.elapsed() / polls;
        let haproxy_ms = (cpu_ticks(running.pid) - before) as f64 * tick / f64::from(polls);
        let stats = stats.expect("polled");

        let stat_text = host.socket_command(&socket, "show stat").await.unwrap();
        let info_text = host.socket_command(&socket, "show info").await.unwrap();
        let start = Instant::now();
        for _ in 0..polls {
            let proxies = parse_show_stat(&stat_text).expect("parse");
            let info = parse_show_info(&info_text).expect("parse");
            std::hint::black_box((proxies, info));
        }
        let parse = start.elapsed() / polls;
        let servers: u64 = stats
            .proxies
            .values()
            .flat_map(|p| p.servers.values())
            .sum();
        println!(
            "{:<20} {:>8} {:>7} {:>11} {:>11.2} ms {:>10.2} ms {:>7.2} ms",
            label,
            servers,
            stats.proxies.len(),
            stats.answer_bytes,
            haproxy_ms,
            parse.as_secs_f64() * 1_000.0,
            wall.as_secs_f64() * 1_000.0,
        );
        drop(running);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
