//! Render timings for big snapshots, and `haproxy -c` timings on the same outputs.
//!
//! Run with `cargo bench -p edgelb-haproxy --bench render`. Prints a table, asserts nothing.
//! "fresh" renders with a new renderer (slots assigned from scratch), "warm" re-renders the
//! same snapshot on a renderer that has seen it (the steady state of a controller). Each
//! figure is the median of several runs. The `haproxy -c` column is skipped when haproxy is
//! not installed.

#![allow(clippy::expect_used)] // a benchmark binary: failing loudly is the point

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{find_haproxy, snapshot};
use edgelb_core::{EdgeNode, Renderer};
use edgelb_haproxy::{HaproxyRenderer, RenderOptions};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn fmt_ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1_000.0)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and wants a
    // quick smoke run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let dir = tempfile::tempdir().expect("tempdir");
    let options = RenderOptions {
        socket_dirs: vec![dir.path().display().to_string()],
        stats_socket: dir.path().join("admin.sock").display().to_string(),
        ..RenderOptions::default()
    };
    let node = EdgeNode::new("edge-1");
    let haproxy = find_haproxy();

    let cases: &[(&str, usize, usize)] = if quick {
        &[("1 svc x 10 ep", 1, 10)]
    } else {
        &[
            ("1 svc x 10 ep", 1, 10),
            ("100 svc x 10 ep", 100, 10),
            ("1,000 svc x 10 ep", 1_000, 10),
            ("1 svc x 10,000 ep", 1, 10_000),
            ("1 svc x 30,000 ep", 1, 30_000),
            ("1 svc x 100,000 ep", 1, 100_000),
        ]
    };

    println!(
        "{:<20} {:>8} {:>10} {:>12} {:>12} {:>14}",
        "snapshot", "servers", "bytes", "fresh", "warm", "haproxy -c"
    );
    for &(label, services, per_service) in cases {
        let snap = snapshot(services, per_service, 10_000);
        let runs = if quick {
            1
        } else if services * per_service >= 30_000 {
            3
        } else if services * per_service >= 10_000 {
            7
        } else {
            15
        };

        let mut fresh = Vec::new();
        let mut text = String::new();
        for _ in 0..runs {
            let renderer = HaproxyRenderer::new(options.clone()).expect("renderer");
            let start = Instant::now();
            let out = renderer.render(&snap, &node).expect("render");
            fresh.push(start.elapsed());
            text = out.text;
        }

        let renderer = HaproxyRenderer::new(options.clone()).expect("renderer");
        renderer.render(&snap, &node).expect("render");
        let mut warm = Vec::new();
        for _ in 0..runs {
            let start = Instant::now();
            let out = renderer.render(&snap, &node).expect("render");
            warm.push(start.elapsed());
            assert_eq!(out.text, text, "warm and fresh renders differ");
        }

        let check = match &haproxy {
            Some(bin) => {
                let file = dir.path().join("bench.cfg");
                std::fs::write(&file, &text).expect("write config");
                let mut samples = Vec::new();
                for _ in 0..runs.min(5) {
                    let start = Instant::now();
                    let out = Command::new(bin)
                        .args(["-c", "-q", "-f"])
                        .arg(&file)
                        .output()
                        .expect("run haproxy");
                    samples.push(start.elapsed());
                    if !out.status.success() {
                        eprintln!(
                            "haproxy -c rejected the {label} config:\n{}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                }
                fmt_ms(median(samples))
            }
            None => "skipped".to_owned(),
        };

        let servers = text.matches("\n    server ").count();
        println!(
            "{:<20} {:>8} {:>10} {:>12} {:>12} {:>14}",
            label,
            servers,
            text.len(),
            fmt_ms(median(fresh)),
            fmt_ms(median(warm)),
            check
        );
    }
    if haproxy.is_none() {
        println!(
            "(haproxy not found: install it with apt-get install haproxy for the last column)"
        );
    }
}
