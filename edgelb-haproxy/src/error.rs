//! The crate's error type.

/// Everything that can fail in `edgelb-haproxy`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value from the input cannot be put in a config safely.
    #[error("invalid {what} {}: {reason}", edgelb_core::text::quoted(value))]
    InvalidInput {
        /// What the value is ("service name", "endpoint address", "template directory", …).
        what: &'static str,
        /// The value as given (quoted, escaped and cut in the message).
        value: String,
        /// Why, and what is allowed.
        reason: String,
    },

    /// A snapshot or edge node failed edgelb-core's validation, so nothing was rendered.
    #[error("{object} rejected: {source}")]
    Validation {
        /// What was rejected ("snapshot", "edge node \"edge-1\"").
        object: String,
        /// Why: the invalid name or setting and what is allowed.
        #[source]
        source: edgelb_core::Error,
    },

    /// The template could not be loaded or rendered.
    #[error("template {name}: {message}")]
    Template {
        /// Template name or path.
        name: String,
        /// minijinja's message (with line numbers).
        message: String,
    },

    /// A local file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing, with the path.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// HAProxy's master or runtime CLI answered something we did not expect.
    #[error("haproxy CLI on {node}: {message}")]
    Cli {
        /// Node name.
        node: String,
        /// What was wrong.
        message: String,
    },

    /// A deploy step failed, with a typed per-node reason.
    #[error(transparent)]
    Deploy(#[from] edgelb_core::DeployError),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// A [`DeployError`](edgelb_core::DeployError)'s words without the `node X:` prefix, to nest
/// it in another error of that node.
pub(crate) fn step_detail(e: &edgelb_core::DeployError) -> String {
    match e {
        edgelb_core::DeployError::Step { step, message, .. } => format!("{step} failed: {message}"),
        other => other.to_string(),
    }
}
