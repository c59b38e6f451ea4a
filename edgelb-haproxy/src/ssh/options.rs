//! Timeouts and session settings of the SSH deployer.

use std::time::Duration;

/// How files reach the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileTransfer {
    /// Through one SFTP subsystem channel kept open beside the session (no process is
    /// started per file; falls back to [`FileTransfer::Exec`] when sshd has no SFTP).
    #[default]
    Sftp,
    /// `cat > path` and `cat path` over exec, one remote process per file.
    Exec,
}

/// Session settings shared by every edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshOptions {
    /// TCP connect, SSH handshake and login, together (default 10 s).
    pub connect_timeout: Duration,
    /// Each remote step: one command, one file transfer, one socket request (default 30 s;
    /// `haproxy -c` on a large config is the slowest step).
    pub step_timeout: Duration,
    /// Send a keepalive when the server was silent this long (default 15 s).
    pub keepalive_interval: Duration,
    /// Close the session after this many unanswered keepalives (default 3); the next step
    /// reconnects.
    pub keepalive_max: usize,
    /// How files are read and written.
    pub file_transfer: FileTransfer,
}

impl Default for SshOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            step_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(15),
            keepalive_max: 3,
            file_transfer: FileTransfer::default(),
        }
    }
}
