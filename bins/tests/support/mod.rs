//! Helpers for the binary's end-to-end tests.
// Test helpers: a failed step should fail the test loudly, and not every test uses every helper.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Whether `haproxy` can be run. In CI a missing haproxy fails the test; elsewhere it skips.
pub fn haproxy_or_skip(test: &str) -> bool {
    if Command::new("haproxy")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: haproxy is not installed; run scripts/test (it runs apt-get install haproxy)"
    );
    eprintln!("SKIP {test}: haproxy is not installed (apt-get install haproxy)");
    false
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `edgelb` binary under test.
pub fn edgelb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edgelb"))
}

/// Connects to `addr` and reads the demo backend's answer line; `None` on any failure.
pub async fn ask(addr: SocketAddr) -> Option<(String, SocketAddr, String, SocketAddr)> {
    use tokio::io::AsyncReadExt;
    let mut stream =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
    let local = stream.local_addr().ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(3), stream.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    let (backend, client, proxy) = edgelb_haproxy::demo_backend::parse_answer_line(&out)?;
    Some((backend, client, proxy, local))
}

/// Polls `ask` until the answer comes from `backend`; returns how long it took.
pub async fn wait_for_backend(addr: SocketAddr, backend: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if let Some((b, ..)) = ask(addr).await
            && b == backend
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "no answer from backend {backend} through {addr} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes an endpoints file with one service on `listen` and the given endpoints.
pub fn write_endpoints(path: &Path, listen: u16, endpoints: &[SocketAddr]) {
    let list: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    let text = format!(
        "services:\n  - namespace: demo\n    name: web\n    ports:\n      - name: tcp\n        listen: {listen}\n        endpoints: [{}]\n",
        list.join(", ")
    );
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

/// A plain HTTP/1.1 GET; returns the whole response (status line, headers, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: edgelb\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

/// Kills a whole process group when dropped (a child started with `process_group(0)` and
/// everything it started, such as the haproxy `edgelb` starts for the quick start).
pub struct KillGroupOnDrop(pub u32);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Generates an unencrypted ed25519 key at `path`; returns its public half (`ssh-ed25519
/// AAAA…`). `None` without ssh-keygen, except in CI, where that fails the test.
pub fn keygen(path: &Path) -> Option<String> {
    keygen_with(path, "")
}

/// [`keygen`] with a passphrase.
pub fn keygen_with(path: &Path, passphrase: &str) -> Option<String> {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", passphrase, "-C", "", "-f"])
        .arg(path)
        .status();
    if !status.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "ssh-keygen is missing; run scripts/test (it installs openssh-client)"
        );
        eprintln!("SKIP: ssh-keygen is not installed (apt-get install openssh-client)");
        return None;
    }
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    Some(
        public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
    )
}
