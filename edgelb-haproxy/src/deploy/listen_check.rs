//! Before a reload that adds listen ports: is anything else on the edge listening there?
//!
//! `haproxy -c` does not bind, so a port another process holds (sshd on 22, a second web
//! server) passes validation and only fails in the reload, and every failed reload pauses the
//! running worker's listeners for a moment, on every port. This check reads the edge's
//! listening TCP sockets (`/proc/net/tcp` and `/proc/net/tcp6`, through the same session as
//! every other step, so it needs no tool on the edge) and refuses such a config before
//! anything is touched, with [`DeployError::ListenPortTaken`].
//!
//! A socket collides with a new bind when it is on the same port and on the same address or
//! on every address (either side): `:PORT` binds every address, a Service placed on an
//! address binds only that one, so a socket on another address of the edge (a resolver on
//! `127.0.0.53:53`, say) leaves it free. Ports the live config binds already are HAProxy's own
//! and are not checked. An edge without those files (not Linux) is not checked.

use std::collections::BTreeSet;

use edgelb_core::DeployError;

use super::listen_addresses::{Bound, listening, overlaps};
use crate::edge_host::EdgeHost;
use crate::live_file::LiveFile;

/// Refuses `new` when it binds a port that the live file does not (`live_ports`, the ports
/// it binds) and that another process on `host` listens on.
pub(super) async fn check_new_listen_ports(
    host: &dyn EdgeHost,
    live_ports: Option<&BTreeSet<u16>>,
    new: &LiveFile,
) -> Result<(), DeployError> {
    let added: Vec<Bound> = new
        .binds
        .iter()
        .filter(|(_, port)| live_ports.is_none_or(|held| !held.contains(port)))
        .copied()
        .collect();
    if added.is_empty() {
        return Ok(());
    }
    let (v4, v6) = futures::join!(
        host.read_file("/proc/net/tcp"),
        host.read_file("/proc/net/tcp6")
    );
    let (v4, v6) = (v4?, v6?);
    if v4.is_none() && v6.is_none() {
        tracing::debug!(
            node = host.node(),
            "no /proc/net/tcp on the edge; listen ports not checked"
        );
        return Ok(());
    }
    let sockets: BTreeSet<Bound> = [v4, v6]
        .iter()
        .flatten()
        .flat_map(|bytes| listening(&String::from_utf8_lossy(bytes)))
        .collect();
    let taken: BTreeSet<u16> = added
        .iter()
        .filter(|(address, port)| {
            sockets
                .iter()
                .any(|(held, p)| p == port && overlaps(*address, *held))
        })
        .map(|(_, port)| *port)
        .collect();
    if taken.is_empty() {
        return Ok(());
    }
    Err(DeployError::ListenPortTaken {
        node: host.node().to_owned(),
        ports: taken.into_iter().collect(),
    })
}
