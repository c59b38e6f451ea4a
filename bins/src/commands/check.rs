//! `edgelb check`: validate the config, render every edge, and run `haproxy -c` on each
//! result when haproxy is installed.

use std::process::Stdio;

use tokio::process::Command;

use super::credentials::{self, Finding};
use crate::config::LoadedConfig;
use crate::error::{Error, Result};
use crate::out::outln;

/// Checks everything that can be checked without touching an edge; prints one line per step.
///
/// A Kubernetes source without a cluster (a manifest checked before it is applied) is
/// skipped and the rest checked on an empty state, as `render` does.
pub async fn run(loaded: &LoadedConfig, haproxy_bin: &str) -> Result<()> {
    let config = &loaded.config;
    outln!("ok    config {}", loaded.path.display())?;
    let mut failures = Vec::new();
    for finding in credentials::check(loaded) {
        match finding {
            Finding::Ok(line) => outln!("ok    {line}")?,
            Finding::Skip(line) => outln!("skip  {line}")?,
            Finding::Fail(line) => {
                outln!("FAIL  {line}")?;
                failures.push("credentials".to_owned());
            }
        }
    }
    failures.dedup();
    let snapshot = match super::snapshot_or_offline(loaded).await? {
        (snapshot, None) => {
            outln!(
                "ok    source: {} services, {} endpoints",
                snapshot.services.len(),
                snapshot.endpoint_count()
            )?;
            snapshot
        }
        (snapshot, Some(why)) => {
            outln!("skip  source: no cluster to read from ({why}); rendering an empty state")?;
            snapshot
        }
    };
    let renderer = super::renderer(loaded)?;
    let haproxy = haproxy_available(haproxy_bin).await;
    if haproxy.is_none() {
        outln!("skip  haproxy -c: {haproxy_bin} is not installed (apt-get install haproxy)")?;
    }
    let dir = tempfile::tempdir().map_err(|e| Error::Io {
        context: "creating a temporary directory".into(),
        source: e,
    })?;
    for (name, rendered) in super::render_all(renderer.as_ref(), &snapshot, &config.edges) {
        let rendered = match rendered {
            Ok(r) => r,
            Err(e) => {
                outln!("FAIL  render {name}: {e}")?;
                failures.push(name);
                continue;
            }
        };
        outln!("ok    render {name} (digest {})", rendered.digest.short())?;
        if haproxy.is_none() {
            continue;
        }
        let file = dir.path().join(format!("{name}.cfg"));
        std::fs::write(&file, &rendered.text).map_err(|e| Error::Io {
            context: format!("writing {}", file.display()),
            source: e,
        })?;
        let out = Command::new(haproxy_bin)
            .args(["-c", "-f"])
            .arg(&file)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| Error::Io {
                context: format!("running {haproxy_bin}"),
                source: e,
            })?;
        if out.status.success() {
            outln!("ok    haproxy -c {name}")?;
        } else {
            outln!(
                "FAIL  haproxy -c {name}:\n{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            )?;
            failures.push(name);
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::CheckFailed(format!(
            "check failed for: {}",
            failures.join(", ")
        )))
    }
}

/// `Some(version line)` when `haproxy -v` runs.
async fn haproxy_available(bin: &str) -> Option<String> {
    let out = Command::new(bin)
        .arg("-v")
        .stdin(Stdio::null())
        .output()
        .await
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    })
}
