//! What a deploy needs from an edge host, wherever it is: the same steps run on the local
//! machine ([`LocalHost`](crate::LocalHost)) and over SSH (`SshHost`).

use async_trait::async_trait;
use edgelb_core::DeployError;

pub use crate::live_cache::FileStamp;
use crate::live_cache::LiveCache;
use crate::socket_requests;

/// The output of a command run on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status (`None` when killed by a signal or not reported).
    pub status: Option<u32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl ExecOutput {
    /// Exit status 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// stderr and stdout joined and trimmed, for error messages.
    pub fn message(&self) -> String {
        let mut text = self.stderr.trim().to_owned();
        let out = self.stdout.trim();
        if !out.is_empty() {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(out);
        }
        text
    }
}

/// File, process and socket access on one edge host. Paths and arguments passed here come
/// from validated configuration only; implementations must still never hand them to a shell
/// unquoted.
#[async_trait]
pub trait EdgeHost: Send + Sync {
    /// The node's name, for errors and logs.
    fn node(&self) -> &str;

    /// Reads a file; `Ok(None)` when it does not exist.
    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, DeployError>;

    /// Creates or truncates `path` and writes `contents` (mode 0644). Not atomic: write to
    /// a temporary name and [`EdgeHost::rename`] it into place.
    async fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), DeployError>;

    /// Renames `from` to `to` atomically (same filesystem), replacing `to`.
    async fn rename(&self, from: &str, to: &str) -> Result<(), DeployError>;

    /// Copies `from` to `to`, replacing `to`.
    async fn copy(&self, from: &str, to: &str) -> Result<(), DeployError>;

    /// Removes a file; a missing file is not an error.
    async fn remove_file(&self, path: &str) -> Result<(), DeployError>;

    /// Runs `argv[0]` with the other elements as arguments and waits for it.
    async fn exec(&self, argv: &[String]) -> Result<ExecOutput, DeployError>;

    /// Sends one command line to a UNIX socket on the host (HAProxy's master CLI or stats
    /// socket) and returns everything it answers until it closes the connection.
    /// Implementations must close their writing half after the command (send EOF): HAProxy
    /// answers a non-interactive CLI connection only then.
    async fn socket_command(&self, socket: &str, command: &str) -> Result<String, DeployError>;

    /// Sends `lines` to HAProxy's CLI socket `socket` on the host and returns one answer per
    /// line; HAProxy runs them in order. Hosts with a kept interactive connection send them
    /// all at once over it (one round trip); the default sends them as `a; b; c` requests
    /// through [`EdgeHost::socket_command`], as few as fit HAProxy's request buffer.
    async fn socket_pipeline(
        &self,
        socket: &str,
        lines: &[String],
    ) -> Result<Vec<String>, DeployError> {
        let mut answers = Vec::with_capacity(lines.len());
        for range in socket_requests::batches(lines) {
            let alone = range.len() == 1;
            let text = self
                .socket_command(socket, &lines[range].join("; "))
                .await?;
            if alone {
                // One command whose answer may have empty lines of its own: one answer.
                answers.extend(socket_requests::alone_answer(text));
            } else {
                answers.extend(socket_requests::split_answers_owned(text));
            }
        }
        Ok(answers)
    }

    /// The next [`EdgeHost::socket_command`] to `socket` is near (the reload path's `reload`,
    /// while the new file is staged): a host that pays a round trip to open a connection
    /// opens it now, to spend it off the path. The default does nothing.
    async fn open_socket_ahead(&self, _socket: &str) {}

    /// HAProxy was just reloaded: a kept runtime-API connection would reach the old worker
    /// from now on, so a host that keeps one closes it. The default does nothing.
    async fn reloaded(&self) {}

    /// What this host knows of the live file without reading it (the bytes it last wrote
    /// and their [`FileStamp`]), for hosts that can [`EdgeHost::stage_and_swap`] in one
    /// request; `None` (the default) reads the live file on every deploy.
    fn live_cache(&self) -> Option<&LiveCache> {
        None
    }

    /// Writes `request.contents` to `request.new_path`, validates it with
    /// `request.validate`, and only when that passes (and the live file still has
    /// `request.expect_stamp`, when given) keeps the live file as `request.prev_path` and
    /// renames the new file over it. Hosts that can do it in one request override this; the
    /// default runs the steps one by one and cannot check a stamp (it never has one).
    async fn stage_and_swap(&self, request: &StageSwap<'_>) -> Result<Staged, DeployError> {
        if request.expect_stamp.is_some() {
            return Ok(Staged::LiveChanged);
        }
        self.write_file(request.new_path, request.contents).await?;
        let out = self.exec(request.validate).await?;
        if !out.success() {
            if let Err(e) = self.remove_file(request.new_path).await {
                tracing::warn!(node = self.node(), error = %e, "could not remove the rejected config");
            }
            return Ok(Staged::Rejected(out.message()));
        }
        if let Some(live) = request.keep_live {
            self.write_file(request.prev_path, live).await?;
        }
        self.rename(request.new_path, request.live_path).await?;
        Ok(Staged::Swapped { stamp: None })
    }

    /// Opens a TCP connection to `127.0.0.1:port` on the host and closes it: whether
    /// something accepts connections there. Hosts that cannot (the default) say so.
    async fn tcp_connect(&self, port: u16) -> Result<(), DeployError> {
        Err(DeployError::Step {
            node: self.node().to_owned(),
            step: format!("connecting to port {port}"),
            message: "this host cannot open TCP connections on the edge".into(),
        })
    }
}

/// What [`EdgeHost::stage_and_swap`] does: every path comes from the validated layout.
#[derive(Debug, Clone, Copy)]
pub struct StageSwap<'a> {
    /// The live config file.
    pub live_path: &'a str,
    /// Where the new file is written and validated.
    pub new_path: &'a str,
    /// Where the live file is kept before the swap.
    pub prev_path: &'a str,
    /// The new file.
    pub contents: &'a [u8],
    /// The validation command (`haproxy -c -f <new_path>`); exit status 0 accepts.
    pub validate: &'a [String],
    /// The live file's bytes to keep as `prev_path`; `None` when there is none, or when
    /// `expect_stamp` is given (the host then copies the live file it checked).
    pub keep_live: Option<&'a [u8]>,
    /// The stamp the live file must still have: nothing is swapped when it changed.
    pub expect_stamp: Option<&'a FileStamp>,
}

/// How [`EdgeHost::stage_and_swap`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staged {
    /// The new file is live; its stamp when the host reports one.
    Swapped {
        /// The new live file's stamp.
        stamp: Option<FileStamp>,
    },
    /// The validation rejected the new file (removed again); what it printed.
    Rejected(String),
    /// The live file no longer has the expected stamp (edited by hand?): nothing swapped.
    LiveChanged,
}
