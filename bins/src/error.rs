//! The binary's error type.

use std::path::PathBuf;

/// Everything `edgelb` reports before exiting non-zero.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file is missing, malformed or inconsistent.
    #[error("{path}: {}", edgelb_core::text::one_line(message), path = path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong, with line and key where known.
        message: String,
    },

    /// From the core (sources, pipeline).
    #[error(transparent)]
    Core(#[from] edgelb_core::Error),

    /// From the HAProxy crate (renderer, deployers).
    #[error(transparent)]
    Haproxy(#[from] edgelb_haproxy::Error),

    /// From the Kubernetes crate (client, sources, status, leader election).
    #[error(transparent)]
    Kube(#[from] edgelb_kube::Error),

    /// From the Ansible deployer.
    #[error(transparent)]
    Ansible(#[from] edgelb_ansible::Error),

    /// The process cannot start or go on as configured.
    #[error("{0}")]
    Setup(String),

    /// `edgelb check` found problems (each already printed).
    #[error("{0}")]
    CheckFailed(String),

    /// A local I/O step failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether this is a write to a closed pipe (stdout's reader went away).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}
