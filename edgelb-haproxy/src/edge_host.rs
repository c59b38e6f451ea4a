//! What a deploy needs from an edge host, wherever it is: the same steps run on the local
//! machine ([`LocalHost`](crate::LocalHost)) and over SSH (`SshHost`).

use async_trait::async_trait;
use edgelb_core::DeployError;

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
