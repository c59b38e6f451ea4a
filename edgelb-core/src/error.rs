//! The crate's error type.

use std::path::PathBuf;

use crate::deploy::DeployError;

/// Everything that can fail in `edgelb-core`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name from the input (namespace, service, port, node) is not usable.
    #[error("invalid {kind} {}: {reason}", crate::text::quoted(value))]
    InvalidName {
        /// What the name is for ("namespace", "service name", "port name", "node name").
        kind: &'static str,
        /// The rejected value, as given (quoted, escaped and cut in the message).
        value: String,
        /// Why it was rejected and what is allowed.
        reason: String,
    },

    /// A snapshot is inconsistent as a whole (e.g. two services claim one listen port).
    #[error("invalid snapshot: {0}")]
    InvalidSnapshot(String),

    /// An endpoints file could not be read or parsed.
    #[error("{path}: {}", crate::text::one_line(message), path = path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column where known.
        message: String,
    },

    /// An endpoint source failed (a watch error, a lost connection); the source retries.
    #[error("endpoint source {source_name}: {message}")]
    Source {
        /// Which source failed.
        source_name: String,
        /// What failed.
        message: String,
    },

    /// The pipeline reading a [`ChannelSource`](crate::ChannelSource) has stopped.
    #[error("the pipeline reading this channel source has stopped")]
    SourceClosed,

    /// Rendering a node's configuration failed.
    #[error("rendering the config for node {node}: {message}")]
    Render {
        /// The node being rendered.
        node: String,
        /// What failed.
        message: String,
        /// The renderer's own error, when it has one (downcast it to the renderer's error
        /// type to tell a rejected snapshot from a template error).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },

    /// A deploy step failed.
    #[error(transparent)]
    Deploy(#[from] DeployError),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
