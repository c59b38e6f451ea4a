//! The output of a child process we started (the quick start's haproxy): each line becomes one
//! log event, never raw bytes in our log stream, and the last lines are kept to explain an
//! early exit.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;

/// How many of the last lines are kept.
const KEPT_LINES: usize = 20;

/// Forwards a child's stdout and stderr to `tracing`, line by line, keeping the last lines.
#[derive(Debug)]
pub(crate) struct ChildLog {
    tail: Arc<Mutex<VecDeque<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl ChildLog {
    /// Starts reading the pipes of child `program`, logged for node `node`.
    pub(crate) fn start(
        node: &str,
        program: &str,
        stdout: Option<impl AsyncRead + Unpin + Send + 'static>,
        stderr: Option<impl AsyncRead + Unpin + Send + 'static>,
    ) -> Self {
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(KEPT_LINES)));
        let mut readers = Vec::new();
        if let Some(out) = stdout {
            readers.push(tokio::spawn(forward(
                out,
                node.to_owned(),
                program.to_owned(),
                tail.clone(),
            )));
        }
        if let Some(err) = stderr {
            readers.push(tokio::spawn(forward(
                err,
                node.to_owned(),
                program.to_owned(),
                tail.clone(),
            )));
        }
        Self { tail, readers }
    }

    /// The last lines, once the pipes are closed (or after `wait`, whichever comes first):
    /// the child's own explanation of why it exited.
    pub(crate) async fn last_lines(&mut self, wait: std::time::Duration) -> String {
        let readers = std::mem::take(&mut self.readers);
        let _ = tokio::time::timeout(wait, futures::future::join_all(readers)).await;
        let tail = self.tail.lock().map(|t| t.clone()).unwrap_or_default();
        tail.into_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for ChildLog {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}

async fn forward(
    pipe: impl AsyncRead + Unpin,
    node: String,
    program: String,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            continue;
        }
        if line.contains("[ALERT]") {
            tracing::warn!(%node, %program, output = %line, "{program} says");
        } else {
            tracing::info!(%node, %program, output = %line, "{program} says");
        }
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == KEPT_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
}
