//! PROXY-aware echo backends for the testbed's `cluster` namespace.
//!
//! `proxy-echo NAME=IP:PORT [NAME=IP:PORT …]` listens on every address, prints `ready` once
//! all are bound, and answers each connection with
//! `edgelb-demo backend=NAME client=<ip:port from the PROXY header> proxy=<v2|v1|none>`
//! (see `edgelb_haproxy::demo_backend`). It runs until killed.
#![forbid(unsafe_code)]

use std::io::Write;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let specs: Vec<String> = std::env::args().skip(1).collect();
    if specs.is_empty() {
        eprintln!("usage: proxy-echo NAME=IP:PORT [NAME=IP:PORT ...]");
        std::process::exit(2);
    }
    let mut servers = Vec::new();
    for spec in specs {
        let Some((name, addr)) = spec.split_once('=') else {
            eprintln!("proxy-echo: {spec:?} is not NAME=IP:PORT");
            std::process::exit(2);
        };
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("proxy-echo: cannot listen on {addr}: {e}");
                std::process::exit(1);
            }
        };
        servers.push(tokio::spawn(edgelb_haproxy::demo_backend::serve(
            listener,
            name.to_owned(),
        )));
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    for server in servers {
        if let Ok(Err(e)) = server.await {
            eprintln!("proxy-echo: a listener failed: {e}");
            std::process::exit(1);
        }
    }
}
