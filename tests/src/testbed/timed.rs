//! An [`EdgeHost`] wrapper that records how long each call takes, to see where a deploy's
//! time goes (the benchmark prints it).

use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use edgelb_core::DeployError;
use edgelb_haproxy::{EdgeHost, ExecOutput, LiveCache, StageSwap, Staged};

/// Wraps a host; every call is recorded as `(step, milliseconds)`.
pub struct TimedHost<H> {
    inner: H,
    log: Mutex<Vec<(String, f64)>>,
}

impl<H: EdgeHost> TimedHost<H> {
    /// Wraps `inner`.
    pub fn new(inner: H) -> Self {
        Self {
            inner,
            log: Mutex::new(Vec::new()),
        }
    }

    /// Takes the calls recorded so far.
    pub fn take(&self) -> Vec<(String, f64)> {
        std::mem::take(&mut *self.log.lock().expect("log lock"))
    }

    async fn time<T>(&self, step: String, fut: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = fut.await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        self.log.lock().expect("log lock").push((step, ms));
        out
    }
}

#[async_trait]
impl<H: EdgeHost> EdgeHost for TimedHost<H> {
    fn node(&self) -> &str {
        self.inner.node()
    }
    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, DeployError> {
        self.time("read file".into(), self.inner.read_file(path))
            .await
    }
    async fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), DeployError> {
        self.time("write file".into(), self.inner.write_file(path, contents))
            .await
    }
    async fn rename(&self, from: &str, to: &str) -> Result<(), DeployError> {
        self.time("rename".into(), self.inner.rename(from, to))
            .await
    }
    async fn copy(&self, from: &str, to: &str) -> Result<(), DeployError> {
        self.time("copy".into(), self.inner.copy(from, to)).await
    }
    async fn remove_file(&self, path: &str) -> Result<(), DeployError> {
        self.time("remove".into(), self.inner.remove_file(path))
            .await
    }
    async fn exec(&self, argv: &[String]) -> Result<ExecOutput, DeployError> {
        let name = format!(
            "exec {}",
            argv.iter().take(2).cloned().collect::<Vec<_>>().join(" ")
        );
        self.time(name, self.inner.exec(argv)).await
    }
    async fn socket_command(&self, socket: &str, command: &str) -> Result<String, DeployError> {
        self.time(
            format!("socket {command}"),
            self.inner.socket_command(socket, command),
        )
        .await
    }

    async fn socket_pipeline(
        &self,
        socket: &str,
        lines: &[String],
    ) -> Result<Vec<String>, DeployError> {
        self.time(
            format!("socket pipeline of {}", lines.len()),
            self.inner.socket_pipeline(socket, lines),
        )
        .await
    }
    async fn reloaded(&self) {
        self.inner.reloaded().await;
    }
    fn live_cache(&self) -> Option<&LiveCache> {
        self.inner.live_cache()
    }
    async fn stage_and_swap(&self, request: &StageSwap<'_>) -> Result<Staged, DeployError> {
        self.time("stage and swap".into(), self.inner.stage_and_swap(request))
            .await
    }

    async fn tcp_connect(&self, port: u16) -> Result<(), DeployError> {
        self.time(format!("tcp {port}"), self.inner.tcp_connect(port))
            .await
    }
}
