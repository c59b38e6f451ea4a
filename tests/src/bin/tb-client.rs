//! The testbed's client tool, run inside the testbed's namespaces with `ip netns exec` or
//! `nsenter`:
//!
//! * `tb-client probe ADDR` — one connection; prints one result line.
//! * `tb-client load ADDR COUNT INTERVAL_MS` — COUNT connections started INTERVAL_MS apart
//!   (bounded in count and time); one result line each, then `done ok=N fail=M`. It stops
//!   starting new ones early when its stdin closes, and always lets started ones finish.
//! * `tb-client sock PATH COMMAND` — one command to a UNIX socket (HAProxy's CLI); prints
//!   the answer.
//! * `tb-client local-apply CONFIG_FILE NODE` — runs the deploy transaction with
//!   `LocalHost` on the machine it runs on (an edge's namespaces) and prints `ms=<t>
//!   outcome=<…>`, then `step <ms> <call>` per host call: the benchmark's "same steps, run
//!   locally" baseline.
//!
//! Result lines: `ok local=<ip:port> backend=<name> client=<ip:port> proxy=<v> ms=<t>` or
//! `fail local=<ip:port|-> error=<text> ms=<t>`.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(3);

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let code = match words.as_slice() {
        ["probe", addr] => {
            let line = probe(parse_addr(addr)).await;
            println!("{line}");
            i32::from(!line.starts_with("ok "))
        }
        ["load", addr, count, interval] => {
            load(parse_addr(addr), parse_num(count), parse_num(interval)).await;
            0
        }
        ["sock", path, command] => match sock(path, command).await {
            Ok(answer) => {
                print!("{answer}");
                0
            }
            Err(e) => {
                eprintln!("tb-client: {path}: {e}");
                1
            }
        },
        ["local-apply", file, node] => local_apply(file, node).await,
        _ => {
            eprintln!(
                "usage: tb-client probe ADDR | load ADDR COUNT INTERVAL_MS | sock PATH COMMAND | local-apply CONFIG_FILE NODE"
            );
            2
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

fn parse_addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|_| {
        eprintln!("tb-client: {s:?} is not IP:PORT");
        std::process::exit(2)
    })
}

fn parse_num(s: &str) -> u64 {
    s.parse().unwrap_or_else(|_| {
        eprintln!("tb-client: {s:?} is not a number");
        std::process::exit(2)
    })
}

/// One connection through the edge: say hello, read the backend's answer line.
async fn probe(addr: SocketAddr) -> String {
    let started = Instant::now();
    let mut local = "-".to_owned();
    let result = tokio::time::timeout(TIMEOUT, async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        local = stream.local_addr()?.to_string();
        stream.write_all(b"HELLO\n").await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    })
    .await;
    let ms = started.elapsed().as_millis();
    match result {
        Ok(Ok(answer)) => match edgelb_haproxy::demo_backend::parse_answer_line(&answer) {
            Some((backend, client, proxy)) => {
                format!("ok local={local} backend={backend} client={client} proxy={proxy} ms={ms}")
            }
            None => format!(
                "fail local={local} error=unexpected-answer:{:?} ms={ms}",
                answer.trim()
            ),
        },
        Ok(Err(e)) => format!(
            "fail local={local} error={} ms={ms}",
            one_word(&e.to_string())
        ),
        Err(_) => format!("fail local={local} error=timeout ms={ms}"),
    }
}

fn one_word(s: &str) -> String {
    s.replace(char::is_whitespace, "_")
}

/// COUNT probes started INTERVAL_MS apart, each on its own task; lines print as they end.
async fn load(addr: SocketAddr, count: u64, interval_ms: u64) {
    let count = count.min(100_000);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = tokio::spawn(async {
        // EOF (or an error) on stdin: the caller wants the loop to wind down.
        let mut buf = [0u8; 64];
        let mut stdin = tokio::io::stdin();
        while let Ok(n) = stdin.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    let starter = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(interval_ms.max(1)));
        for _ in 0..count {
            tick.tick().await;
            if stop.is_finished() {
                break;
            }
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(probe(addr).await);
            });
        }
    });
    let (mut ok, mut fail) = (0u64, 0u64);
    let mut out = std::io::stdout();
    while let Some(line) = rx.recv().await {
        if line.starts_with("ok ") {
            ok += 1;
        } else {
            fail += 1;
        }
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    let _ = starter.await;
    let _ = writeln!(out, "done ok={ok} fail={fail}");
}

async fn sock(path: &str, command: &str) -> std::io::Result<String> {
    tokio::time::timeout(TIMEOUT, async {
        let mut stream = tokio::net::UnixStream::connect(path).await?;
        stream.write_all(format!("{command}\n").as_bytes()).await?;
        stream.shutdown().await?; // the master CLI answers once our side is closed
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        Ok(answer)
    })
    .await
    .unwrap_or_else(|_| Err(std::io::Error::other("timed out")))
}

async fn local_apply(file: &str, node: &str) -> i32 {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tb-client: reading {file}: {e}");
            return 1;
        }
    };
    let Some(body) = text.split_once('\n').map(|(_, b)| b.to_owned()) else {
        eprintln!("tb-client: {file} has no digest line");
        return 1;
    };
    let config = edgelb_core::RenderedConfig::from_body(body);
    let host = edgelb_tests::testbed::TimedHost::new(edgelb_haproxy::LocalHost::new(node));
    let layout = edgelb_haproxy::HaproxyLayout::default();
    let started = Instant::now();
    let outcome = edgelb_haproxy::deploy::apply_config(&host, &layout, &config).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match outcome {
        Ok(applied) => {
            println!("ms={ms:.1} outcome={applied}");
            for (step, ms) in host.take() {
                println!("step {ms:.2} {step}");
            }
            0
        }
        Err(e) => {
            println!(
                "ms={ms:.1} outcome=failed error={}",
                one_word(&e.to_string())
            );
            1
        }
    }
}
