//! The crate's error type.

/// Everything that can fail in `edgelb-ansible` outside a node's own outcome (per-node
/// failures are [`edgelb_core::DeployError`]s in the outcomes).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `ansible-playbook` is not installed where we looked.
    #[error(
        "ansible-playbook not found ({searched}); install ansible-core: pip install ansible-core (or set ansible_playbook to its path)"
    )]
    AnsibleNotFound {
        /// Where we looked.
        searched: String,
    },

    /// A setting cannot be used.
    #[error("ansible deployer: invalid {what}: {reason}")]
    InvalidConfig {
        /// The setting ("known_hosts line 3", "work_dir", …).
        what: String,
        /// Why, and what is allowed.
        reason: String,
    },

    /// The HAProxy layout (paths, reload command) is unsafe or incomplete.
    #[error("ansible deployer: {0}")]
    Layout(#[from] edgelb_haproxy::Error),

    /// A local file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing, with the path.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] with context.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// An [`Error::InvalidConfig`].
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
