//! Before a reload that adds listen ports: is anything else on the edge listening there?
//!
//! `haproxy -c` does not bind, so a port another process holds (sshd on 22, a second web
//! server) passes validation and only fails in the reload, and every failed reload pauses the
//! running worker's listeners for a moment, on every port. This check reads the edge's
//! listening TCP sockets (`/proc/net/tcp` and `/proc/net/tcp6`, through the same session as
//! every other step, so it needs no tool on the edge) and refuses such a config before
//! anything is touched, with [`DeployError::ListenPortTaken`].
//!
//! It is conservative: a socket on the port on any address counts as taken, since edgelb's
//! binds are `:PORT` (every address). Ports the live config binds already are HAProxy's own
//! and are not checked. An edge without those files (not Linux) is not checked.

use std::collections::BTreeSet;

use edgelb_core::DeployError;

use crate::edge_host::EdgeHost;
use crate::live_file::LiveFile;

/// The TCP socket state "listening" in `/proc/net/tcp`.
const LISTEN: &str = "0A";

/// Refuses `new` when it binds a port that the live file does not (`live_ports`, the ports
/// it binds) and that another process on `host` listens on.
pub(super) async fn check_new_listen_ports(
    host: &dyn EdgeHost,
    live_ports: Option<&BTreeSet<u16>>,
    new: &LiveFile,
) -> Result<(), DeployError> {
    let added: BTreeSet<u16> = match live_ports {
        Some(held) => new.bind_ports.difference(held).copied().collect(),
        None => new.bind_ports.clone(),
    };
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
    let listening: BTreeSet<u16> = [v4, v6]
        .iter()
        .flatten()
        .flat_map(|bytes| listening_ports(&String::from_utf8_lossy(bytes)))
        .collect();
    let taken: Vec<u16> = added.intersection(&listening).copied().collect();
    if taken.is_empty() {
        return Ok(());
    }
    Err(DeployError::ListenPortTaken {
        node: host.node().to_owned(),
        ports: taken,
    })
}

/// The local ports of the listening sockets in a `/proc/net/tcp` or `/proc/net/tcp6` table
/// (`sl local_address rem_address st …`, addresses as `HEXADDR:HEXPORT`).
fn listening_ports(table: &str) -> BTreeSet<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            if state != LISTEN {
                return None;
            }
            let (_, port) = local.rsplit_once(':')?;
            u16::from_str_radix(port, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real lines (Linux 6.1): sshd on 0.0.0.0:22, a client connection, HAProxy on :8080.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21571 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0\n   2: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 31338 1 0000000000000000 20 4 30 10 -1\n";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n";

    #[test]
    fn only_listening_sockets_count() {
        assert_eq!(listening_ports(TCP), [22, 8080].into());
        assert_eq!(listening_ports(TCP6), [443].into());
        assert!(listening_ports("garbage\nmore garbage here 0A").is_empty());
    }
}
