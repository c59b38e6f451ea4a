//! The native SSH deployer (feature `ssh`, on by default).
//!
//! * [`SshHost`] is an [`EdgeHost`](crate::EdgeHost) over one persistent russh session per
//!   edge: pinned host keys ([`KnownHosts`]), public-key login ([`ClientKey`]), keepalive,
//!   transparent reconnect, a timeout on every step ([`SshOptions`]), shell-quoted commands
//!   ([`quote()`]), SFTP file transfer and HAProxy's sockets over stream-local forwarding.
//! * [`SshDeployer`] runs [`apply_config`](crate::deploy::apply_config) on each node's host,
//!   with credentials per node ([`SshDeployerConfig`]).
//!
//! What an edge needs: sshd with public-key login for the deploy user, the `sftp` subsystem
//! (optional: files then go through `cat` over exec), and forwarding to UNIX sockets, which
//! OpenSSH allows only with both `AllowStreamLocalForwarding` and `AllowTcpForwarding` set to
//! `yes` or `local` (the TCP setting governs socket forwarding too; `local` is enough), and
//! no `DisableForwarding yes` ([`sshd_config_problems`] checks a file against these). The
//! login shell must be a POSIX shell (sh, bash, dash, zsh): commands reach it shell-quoted.
//! The user needs write access to HAProxy's config directory and its sockets (root, or a
//! group with those rights).
//!
//! Errors are typed per node ([`edgelb_core::DeployError`]): `Connect` (refused,
//! unreachable, handshake failed), `HostKeyUnknown` (nothing pinned for the edge's
//! `[host]:port`), `HostKeyMismatch` (another key is pinned; both with the SHA-256
//! fingerprint seen), `Auth`, `Timeout`, and the deploy transaction's own. Key material is never logged.

mod credentials;
mod deployer;
mod host;
mod host_keys;
mod options;
mod prompt;
mod quote;
mod session;
mod sftp;
mod socket_ahead;
mod sshd_prerequisites;
mod stage_ahead;

/// The `tracing` target of the event logged (at debug) for every SSH channel the session
/// opens, with fields `node`, `kind` (`exec`, `stream-local`, `tcp`), `ahead` (opened before
/// the request that uses it, off its path) and `opened` (false: the server refused it, as
/// HAProxy's master socket does while it re-executes). Benchmarks count round trips with it
/// (`RUST_LOG=edgelb_haproxy::ssh_channel=debug`).
pub const CHANNEL_TARGET: &str = "edgelb_haproxy::ssh_channel";

pub use credentials::{ClientKey, SshCredentials};
pub use deployer::{SshDeployer, SshDeployerConfig};
pub use host::SshHost;
pub use host_keys::{HostKeyCheck, KnownHosts, fingerprint};
pub use options::{FileTransfer, SshOptions};
pub use quote::{command_line, quote};
pub use sshd_prerequisites::{SSHD_PREREQUISITES, sshd_config_problems};
