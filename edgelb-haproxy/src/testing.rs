//! Helpers for tests against edges that run edgelb's configs (feature `testing`): what the
//! deploy reads from a config file's server lines, and the check it makes after a runtime
//! update, for a test to assert the same.

use crate::cli::runtime::RuntimeApi;
use crate::cli::{acl, plan};
use crate::edge_host::EdgeHost;
use crate::live_file::LiveFile;

pub use crate::cli::plan::{Mismatches, RuntimeUpdateError, ServerMismatch};
pub use crate::live_file::ServerSlot;

/// The server lines of the backends of `config` (a haproxy.cfg), in file order, as the
/// deploy reads them.
///
/// ```
/// let slots = edgelb_haproxy::testing::server_slots(
///     "backend be_a\n    server s001 10.0.0.1:80 check weight 0\n",
/// );
/// assert_eq!((slots[0].server.as_str(), slots[0].weight), ("s001", 0));
/// ```
pub fn server_slots(config: &str) -> Vec<ServerSlot> {
    LiveFile::parse(config.as_bytes()).servers
}

/// Checks every slot against `show servers state` behind `api`: `Err` names the servers that
/// differ or do not run, or says why the state could not be read.
pub async fn verify(api: &RuntimeApi<'_>, slots: &[ServerSlot]) -> Result<(), RuntimeUpdateError> {
    plan::verify(api, slots).await
}

/// Reads back every source ACL list (`spec.loadBalancerSourceRanges`) of `config` from the
/// HAProxy behind `socket` on `host` and compares it with the file, as the runtime path does
/// after a change: `Err` names the first list that differs.
pub async fn verify_source_acls(
    host: &dyn EdgeHost,
    socket: &str,
    config: &str,
) -> Result<(), crate::AclError> {
    acl::verify(
        host,
        socket,
        &LiveFile::parse(config.as_bytes()).source_acls,
    )
    .await
}
