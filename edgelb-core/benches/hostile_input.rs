//! What hostile endpoints files cost: time and peak memory (VmHWM) of loading each, in a
//! child process of its own so peaks do not mix. Prints, never asserts.
//!
//! `cargo bench -p edgelb-core --bench hostile_input`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fails loudly

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use edgelb_core::FileSource;

/// Every case: a name and the file's content.
fn cases() -> Vec<(&'static str, String)> {
    let list = |n: usize| -> String {
        (0..n)
            .map(|i| {
                format!(
                    "\"10.{}.{}.{}:80\"",
                    (i >> 16) & 255,
                    (i >> 8) & 255,
                    i & 255
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let bomb = |aliases: usize| {
        let mut text = format!(
            "services:\n  - name: s0\n    ports:\n      - {{name: p0, listen: 1, endpoints: &a [{}]}}\n",
            list(20_000)
        );
        for j in 1..=aliases {
            text.push_str(&format!(
                "      - {{name: p{j}, listen: {}, endpoints: *a}}\n",
                j + 1
            ));
        }
        text
    };
    vec![
        ("alias bomb, 500 aliases", bomb(500)),
        (
            "nested '[' x 160,000",
            format!("services: {}\n", "[".repeat(160_000)),
        ),
        (
            "190,000 tiny scalars",
            format!("services: [{}]\n", vec!["1"; 190_000].join(",")),
        ),
        (
            "1 MB, 57,000 endpoints (valid)",
            format!(
                "services:\n  - name: web\n    ports:\n      - name: http\n        listen: 80\n        endpoints: [{}]\n",
                list(57_000)
            ),
        ),
        (
            "one 1 MB name",
            format!(
                "services:\n  - name: {}\n    ports: []\n",
                "a".repeat(1_000_000)
            ),
        ),
    ]
}

fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// In the child: load `path` once and print time, peak memory and the outcome.
fn run_case(path: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let before = peak_kib();
    let started = Instant::now();
    let result = runtime.block_on(FileSource::new(path).with_max_bytes(2 << 20).load());
    let took = started.elapsed();
    let outcome = match result {
        Ok(s) => format!("ok, {} endpoints", s.endpoint_count()),
        Err(e) => {
            let e = e.to_string();
            let e = e.split_once(": ").map_or(e.as_str(), |(_, m)| m);
            format!("refused: {}", e.chars().take(70).collect::<String>())
        }
    };
    println!(
        "{:>10.1} ms {:>8} KiB  {outcome}",
        took.as_secs_f64() * 1_000.0,
        peak_kib().saturating_sub(before)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--case") {
        run_case(Path::new(&args[at + 1]));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    println!(
        "{:<32} {:>9} {:>13} {:>12}  outcome",
        "file", "bytes", "load time", "peak memory"
    );
    for (name, text) in cases() {
        let path = dir.path().join("eps.yaml");
        std::fs::write(&path, &text).unwrap();
        print!("{name:<32} {:>9} ", text.len());
        let out = Command::new(std::env::current_exe().unwrap())
            .arg("--case")
            .arg(&path)
            .output()
            .unwrap();
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}
