//! `edgelb check`: validate the config, render every edge, and run `haproxy -c` on each
//! result when haproxy is installed.

use std::process::Stdio;

use tokio::process::Command;

use crate::config::LoadedConfig;
use crate::error::{Error, Result};

/// Checks everything that can be checked without touching an edge; prints one line per step.
pub async fn run(loaded: &LoadedConfig, haproxy_bin: &str) -> Result<()> {
    let config = &loaded.config;
    println!("ok    config {}", loaded.path.display());
    let snapshot = match super::snapshot_once(loaded).await {
        Ok(snapshot) => {
            println!(
                "ok    source: {} services, {} endpoints",
                snapshot.services.len(),
                snapshot.endpoint_count()
            );
            snapshot
        }
        // Offline (a manifest checked before it is applied): the rest is still checked,
        // on an empty desired state.
        Err(Error::Kube(e)) if config.source.is_kubernetes() => {
            println!("skip  source: no cluster to read from ({e}); rendering an empty state");
            edgelb_core::Snapshot::default()
        }
        Err(e) => return Err(e),
    };
    let renderer = super::renderer(loaded)?;
    let haproxy = haproxy_available(haproxy_bin).await;
    if haproxy.is_none() {
        println!("skip  haproxy -c: {haproxy_bin} is not installed (apt-get install haproxy)");
    }
    let dir = tempfile::tempdir().map_err(|e| Error::Io {
        context: "creating a temporary directory".into(),
        source: e,
    })?;
    let mut failures = Vec::new();
    for (name, rendered) in super::render_all(renderer.as_ref(), &snapshot, &config.edges) {
        let rendered = match rendered {
            Ok(r) => r,
            Err(e) => {
                println!("FAIL  render {name}: {e}");
                failures.push(name);
                continue;
            }
        };
        println!("ok    render {name} (digest {})", rendered.digest.short());
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
            println!("ok    haproxy -c {name}");
        } else {
            println!(
                "FAIL  haproxy -c {name}:\n{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
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
