//! Debian's Prometheus and promtool for the monitoring tests: the PrometheusRule's rules as
//! a plain rule file, and a Prometheus server on loopback (its own process group, killed on
//! drop) queried through its HTTP API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_owned()
}

/// `tool` on PATH, or `None` after saying the test is skipped; with `CI` set a missing tool
/// is a failure (CI never passes by skipping).
pub fn tool_or_skip(tool: &str, test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let message = format!(
            "{test}: {tool} is not on PATH: install Debian's `prometheus` package (scripts/test does)"
        );
        assert!(
            std::env::var_os("CI").is_none(),
            "{message}. CI is set, so this is a failure, not a skip."
        );
        eprintln!("SKIPPED: {message}");
        println!("SKIPPED: {message}");
    }
    found
}

/// The rule groups of deploy/monitoring/prometheusrule.yaml (its `spec`: a Prometheus rule
/// file), with each alert's `for` replaced by `for_override` when one is given (short waits
/// for a test), written to `dir/edgelb-rules.yaml`.
pub fn write_rules(dir: &Path, for_override: Option<&str>) -> PathBuf {
    let path = repo_root().join("deploy/monitoring/prometheusrule.yaml");
    let text = std::fs::read_to_string(&path).expect("the PrometheusRule is readable");
    let mut rule: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).expect("the PrometheusRule is YAML");
    assert_eq!(rule["kind"].as_str(), Some("PrometheusRule"));
    let mut spec = std::mem::take(&mut rule["spec"]);
    if let Some(duration) = for_override {
        for group in spec["groups"].as_sequence_mut().expect("spec.groups") {
            for r in group["rules"].as_sequence_mut().expect("rules") {
                if r.get("for").is_some() {
                    r["for"] = duration.into();
                }
            }
        }
    }
    let out = dir.join("edgelb-rules.yaml");
    std::fs::write(
        &out,
        serde_yaml_ng::to_string(&spec).expect("rules serialize"),
    )
    .expect("the rule file can be written");
    out
}

/// A Prometheus server on 127.0.0.1.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    log: PathBuf,
    /// Where its HTTP API listens.
    pub addr: SocketAddr,
}

impl Prometheus {
    /// Starts `prometheus` scraping `target` (host:port, path /metrics) every second,
    /// evaluating `rules` every second, with its data and log in `dir`.
    pub fn start(binary: &Path, dir: &Path, target: SocketAddr, rules: &Path) -> Self {
        let port = crate::controller::free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: [{}]\n\
                 scrape_configs:\n  - job_name: edgelb\n    static_configs:\n      - targets: ['{target}']\n",
                rules.display()
            ),
        )
        .expect("prometheus.yml can be written");
        let log = dir.join("prometheus.log");
        let log_file = std::fs::File::create(&log).expect("the log file can be created");
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log handle"))
            .stderr(log_file);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().expect("prometheus starts");
        Self { child, log, addr }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET path` on its HTTP API as JSON (`None` when it does not answer or is not JSON).
    pub async fn get(&self, path: &str) -> Option<Value> {
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect(self.addr).await?;
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: prometheus\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await?;
            let mut out = Vec::new();
            stream.read_to_end(&mut out).await?;
            Ok::<_, std::io::Error>(out)
        };
        let out = tokio::time::timeout(Duration::from_secs(5), attempt)
            .await
            .ok()?
            .ok()?;
        let text = String::from_utf8_lossy(&out);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        serde_json::from_str(&body).ok()
    }

    /// The instant vector of `expr`: (labels, value) per series.
    pub async fn query(&self, expr: &str) -> Vec<(Value, f64)> {
        let Some(answer) = self
            .get(&format!("/api/v1/query?query={}", percent_encode(expr)))
            .await
        else {
            return Vec::new();
        };
        answer["data"]["result"]
            .as_array()
            .map(|series| {
                series
                    .iter()
                    .filter_map(|s| {
                        let value = s["value"][1].as_str()?.parse().ok()?;
                        Some((s["metric"].clone(), value))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The alerts firing now (`/api/v1/alerts`, state `firing`), their labels.
    pub async fn firing(&self) -> Vec<Value> {
        let Some(answer) = self.get("/api/v1/alerts").await else {
            return Vec::new();
        };
        answer["data"]["alerts"]
            .as_array()
            .map(|alerts| {
                alerts
                    .iter()
                    .filter(|a| a["state"] == "firing")
                    .map(|a| a["labels"].clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Polls `check` every 500 ms until it gives `Some`; panics after `limit` with `what`
    /// and Prometheus's log.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, limit: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let start = Instant::now();
        loop {
            if let Some(found) = check().await {
                return found;
            }
            assert!(
                start.elapsed() < limit,
                "Prometheus never showed {what} within {limit:?}\nprometheus log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}
