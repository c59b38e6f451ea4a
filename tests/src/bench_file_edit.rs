//! The perf suite's "endpoints-file edit → live on a local edge" row: `edgelb run`'s file
//! source (file events, poll as fallback) feeding a pipeline with the local deployer, which
//! keeps a real HAProxy on loopback (see [`LocalHaproxy`]). Each edit rewrites the endpoints
//! file to move the service between the two demo backends (server lines only: the runtime-API
//! path); the time runs from just before the write to the moment HAProxy acknowledged the
//! runtime commands (the caller's mark of `edgelb_haproxy::RUNTIME_APPLIED_TARGET`).

use std::time::{Duration, Instant};

use edgelb_core::{Applied, CancellationToken, FileSource, Pipeline, PipelineConfig};

use crate::conformance::local::{LOCAL_NODE, LocalHaproxy};

/// Longest wait for one edit (or HAProxy's first start) to be in sync.
const WITHIN: Duration = Duration::from_secs(30);

/// What the caller's tracing layer saw: `clear` forgets earlier marks, `last` is the latest
/// time the runtime commands were acknowledged on the local node.
pub struct LiveMarks<'a> {
    /// Forgets the marks seen so far.
    pub clear: &'a dyn Fn(),
    /// The latest mark since the last `clear`.
    pub last: &'a dyn Fn() -> Option<Instant>,
}

/// The endpoints file serving `web` on `listen` from `backend`.
fn endpoints_file(listen: u16, backend: std::net::SocketAddr) -> String {
    format!(
        "services:\n  - name: web\n    ports:\n      - {{name: http, listen: {listen}, endpoints: [\"{backend}\"]}}\n"
    )
}

/// `edits` edits of the endpoints file with the pipeline's `debounce`; per edit, ms from the
/// write until HAProxy acknowledged the runtime commands (debounce included). An error says
/// why the row could not be measured (no haproxy, a deploy that was not a runtime update, a
/// missing mark).
pub async fn file_edit_to_live(
    edits: usize,
    debounce: Duration,
    marks: LiveMarks<'_>,
) -> Result<Vec<f64>, String> {
    let local = LocalHaproxy::start_or_skip("perf: endpoints-file edit → live")
        .await
        .ok_or("haproxy is not installed")?;
    let result = edit_loop(&local, edits, debounce, &marks).await;
    local.stop().await;
    result
}

async fn edit_loop(
    local: &LocalHaproxy,
    edits: usize,
    debounce: Duration,
    marks: &LiveMarks<'_>,
) -> Result<Vec<f64>, String> {
    let path = local.dir.join("endpoints.yaml");
    let write = |backend: usize| {
        std::fs::write(
            &path,
            endpoints_file(local.listen, local.backends[backend].1),
        )
        .map_err(|e| format!("writing {}: {e}", path.display()))
    };
    write(0)?;
    let pipeline = Pipeline::new(
        local.renderer(),
        local.deployer.clone(),
        vec![local.node()],
        PipelineConfig {
            debounce,
            ..PipelineConfig::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let mut status = pipeline.status();
    let stop = CancellationToken::new();
    let running = tokio::spawn(pipeline.run(FileSource::new(&path), stop.clone()));
    let mut wait = async |generation: u64| {
        let ready = tokio::time::timeout(
            WITHIN,
            status.wait_for(|s| {
                s.nodes
                    .get(LOCAL_NODE)
                    .is_some_and(|n| n.in_sync(generation))
            }),
        )
        .await
        .map_err(|_| format!("generation {generation} not in sync within {WITHIN:?}"))?
        .map_err(|e| e.to_string())?;
        Ok::<_, String>(ready.nodes.get(LOCAL_NODE).and_then(|n| n.last_outcome))
    };
    let mut samples = Vec::new();
    let measured = async {
        wait(1).await?;
        for i in 0..edits {
            (marks.clear)();
            let t = Instant::now();
            write((i + 1) % 2)?;
            let outcome = wait(i as u64 + 2).await?;
            if outcome != Some(Applied::RuntimeUpdated) {
                return Err(format!(
                    "edit {i}: expected a runtime update, got {outcome:?}"
                ));
            }
            let live = (marks.last)().ok_or(format!("edit {i}: no runtime-applied mark"))?;
            samples.push(live.duration_since(t).as_secs_f64() * 1000.0);
        }
        Ok(())
    }
    .await;
    stop.cancel();
    let ran = running.await;
    measured?;
    ran.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    Ok(samples)
}
