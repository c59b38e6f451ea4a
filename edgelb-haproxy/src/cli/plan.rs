//! The runtime-command planner: which `set server` commands bring the running servers to a
//! file's server lines ([`ServerSlot`]), in an order that keeps every backend serving; sending
//! them in batches that fit HAProxy's request buffer; and checking `show servers state`
//! against the file afterwards.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use edgelb_core::DeployError;

use crate::cli::runtime::{RuntimeApi, RuntimeCommand};
use crate::cli::servers_state::ServerAdminState;
use crate::cli::servers_state::{RunningServer, ServersStateAnswer};
use crate::live_file::ServerSlot;

/// The `tracing` target of the event logged (at debug) when an edge's runtime API has taken
/// the commands of an endpoint change: the moment the change is live there. Benchmarks and
/// log filters (`RUST_LOG=edgelb_haproxy::runtime_applied=debug`) key on it.
pub const RUNTIME_APPLIED_TARGET: &str = "edgelb_haproxy::runtime_applied";

use crate::socket_requests::MAX_REQUEST_CHARS;

/// How one running server differs from its server line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerMismatch {
    /// The file's server does not exist in the running process.
    #[error("server {backend}/{server} is not running")]
    NotRunning {
        /// Backend name.
        backend: String,
        /// Server name.
        server: String,
    },
    /// It runs at another address or port.
    #[error("{backend}/{server} runs {running} instead of {wanted}")]
    Address {
        /// Backend name.
        backend: String,
        /// Server name.
        server: String,
        /// `address:port` as HAProxy reports it (`-` for no port).
        running: String,
        /// What the file says.
        wanted: std::net::SocketAddr,
    },
    /// It is in another admin state (ready, drain, maintenance).
    #[error("{backend}/{server} is {running} instead of {wanted} (admin flags {flags:#x})")]
    AdminState {
        /// Backend name.
        backend: String,
        /// Server name.
        server: String,
        /// The state its flags amount to.
        running: ServerAdminState,
        /// What the file says.
        wanted: ServerAdminState,
        /// HAProxy's raw `srv_admin_state`.
        flags: u32,
    },
    /// It has another user weight.
    #[error("{backend}/{server} has weight {running:?} instead of {wanted}")]
    Weight {
        /// Backend name.
        backend: String,
        /// Server name.
        server: String,
        /// The weight HAProxy reports, if any.
        running: Option<u32>,
        /// What the file says.
        wanted: u32,
    },
}

/// The servers that differ from a file's server lines (at least one); shown as the first
/// three.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatches(pub Vec<ServerMismatch>);

impl fmt::Display for Mismatches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, mismatch) in self.0.iter().take(3).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{mismatch}")?;
        }
        let more = self.0.len().saturating_sub(3);
        if more > 0 {
            write!(f, " (and {more} more)")?;
        }
        Ok(())
    }
}

impl std::error::Error for Mismatches {}

/// Why the runtime API did not bring the running servers to a file.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeUpdateError {
    /// Reading the running servers, or a command, failed (some commands may have taken
    /// effect).
    #[error(transparent)]
    Api(#[from] DeployError),
    /// A server of the file does not exist in the running process: only a reload adds it.
    #[error(transparent)]
    NotRunning(ServerMismatch),
    /// After the commands, the running servers still differ from the file.
    #[error(transparent)]
    Differ(#[from] Mismatches),
    /// The source ACL lists of frontends could not be brought to the file (boxed: it is
    /// rare and large).
    #[error("source ranges: {0}")]
    SourceAcl(#[from] Box<crate::cli::acl::AclError>),
}

/// Whether a running server is what its slot asks for (`Err` says how it differs).
pub(crate) fn matches(slot: &ServerSlot, state: &RunningServer<'_>) -> Result<(), ServerMismatch> {
    let names = || (slot.backend.to_string(), slot.server.clone());
    if state.address.ip() != Some(slot.addr.ip()) || state.port != Some(slot.addr.port()) {
        let (backend, server) = names();
        return Err(ServerMismatch::Address {
            backend,
            server,
            running: format!(
                "{}:{}",
                state.address,
                state.port.map_or_else(|| "-".to_owned(), |p| p.to_string())
            ),
            wanted: slot.addr,
        });
    }
    let want = if slot.maint {
        ServerAdminState::Maint
    } else {
        ServerAdminState::Ready
    };
    if state.admin_state() != want {
        let (backend, server) = names();
        return Err(ServerMismatch::AdminState {
            backend,
            server,
            running: state.admin_state(),
            wanted: want,
            flags: state.admin_flags,
        });
    }
    if state.weight != Some(slot.weight) {
        let (backend, server) = names();
        return Err(ServerMismatch::Weight {
            backend,
            server,
            running: state.weight,
            wanted: slot.weight,
        });
    }
    Ok(())
}

/// Finds the slot of each running server. HAProxy lists servers in the file's order, so
/// the next slot is tried first; only a server out of that order builds the index by name.
struct SlotFinder<'s> {
    slots: &'s [ServerSlot],
    next: usize,
    by_name: Option<HashMap<(&'s str, &'s str), usize>>,
}

impl<'s> SlotFinder<'s> {
    fn new(slots: &'s [ServerSlot]) -> Self {
        Self {
            slots,
            next: 0,
            by_name: None,
        }
    }

    /// The index of the slot named `backend`/`server`, if any.
    fn find(&mut self, backend: &str, server: &str) -> Option<usize> {
        if let Some(slot) = self.slots.get(self.next)
            && *slot.backend == *backend
            && slot.server == server
        {
            self.next += 1;
            return Some(self.next - 1);
        }
        let slots = self.slots;
        let index = self.by_name.get_or_insert_with(|| {
            slots
                .iter()
                .enumerate()
                .map(|(i, s)| ((&*s.backend, s.server.as_str()), i))
                .collect()
        });
        let found = index.get(&(backend, server)).copied();
        if let Some(i) = found {
            self.next = i + 1;
        }
        found
    }
}

/// Walks the `running` servers against `slots`: `on_seen(i, state, matched)` for each
/// running server of slot `i` (in running order: should a name run twice, the last call is
/// the one that counts), with whether it [`matches`]; returns which slots were seen.
fn walk<'r>(
    slots: &[ServerSlot],
    running: impl IntoIterator<Item = RunningServer<'r>>,
    mut on_seen: impl FnMut(usize, &RunningServer<'r>, Result<(), ServerMismatch>),
) -> Vec<bool> {
    let mut finder = SlotFinder::new(slots);
    let mut seen = vec![false; slots.len()];
    for state in running {
        let Some(i) = finder.find(state.backend, state.server) else {
            continue;
        };
        let Some(slot) = slots.get(i) else {
            continue;
        };
        if let Some(seen) = seen.get_mut(i) {
            *seen = true;
        }
        on_seen(i, &state, matches(slot, &state));
    }
    seen
}

/// The runtime commands that bring the running servers (`running`, from `show servers
/// state`) to `slots`; `Err` when a slot does not exist in the running process.
///
/// HAProxy runs a batch one command at a time and keeps accepting connections in between,
/// so the order is what keeps a backend serving:
/// 1. servers that gain traffic (coming out of maintenance, or a higher weight) go first;
/// 2. then servers that lose it (going to maintenance, or a lower weight, as in a drain);
/// 3. then servers that stay in maintenance (spare slots moved to the placeholder).
///
/// Replacing the only endpoint of a backend thus never leaves it without a server. Per
/// server, one going to maintenance is put there first, then moved; one coming out of it is
/// moved and weighted first, then made ready, so it never takes traffic at its old address
/// or weight. Within each group, commands follow the order of `slots`.
pub(crate) fn plan<'r>(
    slots: &[ServerSlot],
    running: impl IntoIterator<Item = RunningServer<'r>>,
) -> Result<Vec<RuntimeCommand>, ServerMismatch> {
    // Per slot that differs: its group (0: gains, 1: losses, 2: idle) and commands.
    let mut differs: BTreeMap<usize, (u8, Vec<RuntimeCommand>)> = BTreeMap::new();
    let seen = walk(slots, running, |i, state, matched| {
        let Some(slot) = slots.get(i) else {
            return;
        };
        if matched.is_ok() {
            differs.remove(&i);
            return;
        }
        let was_maint = state.admin_state() == ServerAdminState::Maint;
        let bucket = match (was_maint, slot.maint) {
            (true, true) => 2,
            (_, true) => 1,
            (true, false) => 0,
            (false, false) if state.weight.is_some_and(|w| slot.weight < w) => 1,
            (false, false) => 0,
        };
        differs.insert(i, (bucket, server_commands(slot, state)));
    });
    if let Some(slot) = first_unseen(slots, &seen) {
        return Err(not_running(slot));
    }
    let mut groups: [Vec<RuntimeCommand>; 3] = Default::default();
    for (bucket, commands) in differs.into_values() {
        if let Some(group) = groups.get_mut(usize::from(bucket)) {
            group.extend(commands);
        }
    }
    let [mut gains, losses, idle] = groups;
    gains.extend(losses);
    gains.extend(idle);
    Ok(gains)
}

/// The first slot the walk did not see running.
fn first_unseen<'s>(slots: &'s [ServerSlot], seen: &[bool]) -> Option<&'s ServerSlot> {
    slots
        .iter()
        .zip(seen)
        .find_map(|(slot, seen)| (!seen).then_some(slot))
}

/// The mismatch of a slot that does not run.
fn not_running(slot: &ServerSlot) -> ServerMismatch {
    ServerMismatch::NotRunning {
        backend: slot.backend.to_string(),
        server: slot.server.clone(),
    }
}

/// The commands that bring one running server to its slot, in a safe order for that server.
fn server_commands(slot: &ServerSlot, state: &RunningServer<'_>) -> Vec<RuntimeCommand> {
    let (backend, server) = (&slot.backend.to_string(), &slot.server);
    let admin = state.admin_state();
    let state_cmd = |state| RuntimeCommand::SetServerState {
        backend: backend.clone(),
        server: server.clone(),
        state,
    };
    let mut commands = Vec::new();
    if slot.maint && admin != ServerAdminState::Maint {
        commands.push(state_cmd(ServerAdminState::Maint));
    }
    if state.address.ip() != Some(slot.addr.ip()) || state.port != Some(slot.addr.port()) {
        commands.push(RuntimeCommand::SetServerAddr {
            backend: backend.clone(),
            server: server.clone(),
            addr: slot.addr.ip(),
            port: slot.addr.port(),
        });
    }
    if state.weight != Some(slot.weight) {
        commands.push(RuntimeCommand::SetServerWeight {
            backend: backend.clone(),
            server: server.clone(),
            weight: slot.weight,
        });
    }
    if !slot.maint && admin != ServerAdminState::Ready {
        commands.push(state_cmd(ServerAdminState::Ready));
    }
    commands
}

/// Sends `commands` in as few requests as fit HAProxy's request buffer.
pub(crate) async fn send(
    api: &RuntimeApi<'_>,
    commands: &[RuntimeCommand],
) -> Result<(), DeployError> {
    let mut start = 0;
    let mut chars = 0;
    for (i, command) in commands.iter().enumerate() {
        let len = command.to_line().map_or(0, |l| l.len() + 2);
        if i > start && chars + len > MAX_REQUEST_CHARS {
            api.batch(&commands[start..i]).await?;
            start = i;
            chars = 0;
        }
        chars += len;
    }
    api.batch(&commands[start..]).await
}

/// Sends what brings the servers `running` behind `api` to `slots` (see [`plan`]); returns
/// how many commands that took. `Err` says what failed; some commands may have taken effect.
pub(crate) async fn send_plan(
    api: &RuntimeApi<'_>,
    slots: &[ServerSlot],
    running: &ServersStateAnswer,
) -> Result<usize, RuntimeUpdateError> {
    let commands = plan(slots, running.servers()).map_err(RuntimeUpdateError::NotRunning)?;
    send(api, &commands).await?;
    Ok(commands.len())
}

/// Checks every slot of the file against `show servers state`.
pub(crate) async fn verify(
    api: &RuntimeApi<'_>,
    slots: &[ServerSlot],
) -> Result<(), RuntimeUpdateError> {
    let running = api.servers_state().await?;
    Ok(compare(slots, running.servers())?)
}

/// Checks every slot against the running servers (`show servers state`); `Err` has every
/// one that differs or does not run, in the order of `slots`.
pub(crate) fn compare<'r>(
    slots: &[ServerSlot],
    running: impl IntoIterator<Item = RunningServer<'r>>,
) -> Result<(), Mismatches> {
    let mut differs: BTreeMap<usize, ServerMismatch> = BTreeMap::new();
    let seen = walk(slots, running, |i, _, matched| match matched {
        Ok(()) => {
            differs.remove(&i);
        }
        Err(why) => {
            differs.insert(i, why);
        }
    });
    let wrong: Vec<ServerMismatch> = slots
        .iter()
        .zip(&seen)
        .enumerate()
        .filter_map(|(i, (slot, seen))| {
            if *seen {
                differs.remove(&i)
            } else {
                Some(not_running(slot))
            }
        })
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(Mismatches(wrong))
    }
}

/// Brings the running process behind `api` to `slots`: reads `show servers state`, sends
/// the difference. `Err` says what failed; some commands may have taken effect.
pub(crate) async fn push(
    api: &RuntimeApi<'_>,
    slots: &[ServerSlot],
) -> Result<usize, RuntimeUpdateError> {
    let commands = {
        let running = api.servers_state().await?;
        plan(slots, running.servers()).map_err(RuntimeUpdateError::NotRunning)?
    };
    send(api, &commands).await?;
    let commands = commands.len();
    // The change is live in the running process from here on (the benchmarks time this).
    // An explicit target: benchmarks and log filters key on it, not on this file's path.
    tracing::debug!(target: RUNTIME_APPLIED_TARGET, node = api.node(), commands, "runtime API commands applied");
    Ok(commands)
}

/// The commands that bring servers running as `from` says to `to`: for a runtime update
/// planned from the live file edgelb left (no `show servers state` first), so the commands
/// go out at once. `Err` when a slot of `to` is not in `from`.
pub(crate) fn plan_between(
    from: &[ServerSlot],
    to: &[ServerSlot],
) -> Result<Vec<RuntimeCommand>, ServerMismatch> {
    plan(to, from.iter().map(RunningServer::as_file_says))
}

/// Sends `commands` and `show servers state` in one exchange (HAProxy runs them in order,
/// so the state read is the state after them) and checks every answer and every slot of
/// `slots` against that state. `Err` says what failed; the commands before a failing one
/// took effect.
pub(crate) async fn send_and_verify(
    api: &RuntimeApi<'_>,
    commands: &[RuntimeCommand],
    slots: &[ServerSlot],
) -> Result<usize, RuntimeUpdateError> {
    let mut lines = commands
        .iter()
        .map(RuntimeCommand::to_line)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| DeployError::Step {
            node: api.node().to_owned(),
            step: "building runtime API commands".into(),
            message: e.to_string(),
        })?;
    lines.push("show servers state".to_owned());
    let mut answers = api.pipeline(&lines).await?;
    for ((command, line), answer) in commands.iter().zip(&lines).zip(&answers) {
        if !command.accepts(answer) {
            return Err(DeployError::Step {
                node: api.node().to_owned(),
                step: format!("runtime API command `{line}`"),
                message: format!("haproxy answered: {}", answer.trim()),
            }
            .into());
        }
    }
    tracing::debug!(target: RUNTIME_APPLIED_TARGET, node = api.node(), commands = commands.len(), "runtime API commands applied");
    let state = answers.pop().unwrap_or_default();
    drop(answers);
    let running = ServersStateAnswer::read(state).map_err(|e| DeployError::Step {
        node: api.node().to_owned(),
        step: "reading `show servers state`".into(),
        message: e.to_string(),
    })?;
    compare(slots, running.servers())?;
    Ok(commands.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::servers_state::ServerState;
    use crate::live_file::LiveFile;

    const LIVE: &str = "# edgelb-digest: sha256:00\n# comment\n\nglobal\n    master-worker\n    stats socket /run/haproxy/admin.sock mode 660 level admin\n\nfrontend fe_80\n    bind :80\n    default_backend be_a\n\n# be_a: 1 of 4 slots in use\nbackend be_a\n    balance roundrobin\n    server s001 10.0.0.1:80 check send-proxy-v2\n    server s002 10.0.0.2:80 check send-proxy-v2 weight 0\n    server s003 127.0.0.1:1 check send-proxy-v2 disabled\n    server s004 [fd00::4]:8443 check send-proxy-v2\n";

    fn state(server: &str, addr: &str, port: u16, admin: u32, weight: u32) -> ServerState {
        ServerState {
            backend: "be_a".into(),
            server: server.into(),
            address: addr.into(),
            port: Some(port),
            oper_state: crate::cli::servers_state::ServerOperState::Running,
            admin_flags: admin,
            weight: Some(weight),
        }
    }

    fn running_live() -> Vec<ServerState> {
        vec![
            state("s001", "10.0.0.1", 80, 0, 1),
            state("s002", "10.0.0.2", 80, 0, 0),
            state("s003", "127.0.0.1", 1, 5, 1),
            state("s004", "fd00::4", 8443, 0, 1),
        ]
    }

    /// LIVE with s001 leaving (to the placeholder), s002's drain ending and the spare s003
    /// taking a new endpoint.
    fn moved_endpoints() -> String {
        LIVE.replace(
            "127.0.0.1:1 check send-proxy-v2 disabled",
            "10.0.0.3:81 check send-proxy-v2",
        )
        .replace(
            "10.0.0.1:80 check send-proxy-v2\n",
            "127.0.0.1:1 check send-proxy-v2 disabled\n",
        )
        .replace(
            "10.0.0.2:80 check send-proxy-v2 weight 0",
            "10.0.0.2:80 check send-proxy-v2",
        )
    }

    /// The runtime command lines that bring `running` to the servers of `config`.
    fn plan_lines(config: &str, running: &[ServerState]) -> Vec<String> {
        plan(
            &LiveFile::parse(config.as_bytes()).servers,
            running.iter().map(ServerState::view),
        )
        .unwrap()
        .iter()
        .map(|c| c.to_line().unwrap())
        .collect()
    }

    #[test]
    fn nothing_to_send_when_the_process_already_matches() {
        let split = LiveFile::parse(LIVE.as_bytes());
        let running = running_live();
        assert_eq!(
            plan(&split.servers, running.iter().map(ServerState::view)).unwrap(),
            vec![]
        );
    }

    #[test]
    fn commands_move_weight_and_switch_state_in_a_safe_order() {
        assert_eq!(
            plan_lines(&moved_endpoints(), &running_live()),
            [
                // Gains first. Drain ends: weight back to the default.
                "set server be_a/s002 weight 1",
                // A spare becomes live: moved first, then ready.
                "set server be_a/s003 addr 10.0.0.3 port 81",
                "set server be_a/s003 state ready",
                // Then losses: out first, then moved to the placeholder.
                "set server be_a/s001 state maint",
                "set server be_a/s001 addr 127.0.0.1 port 1",
            ]
        );
        // A draining endpoint is weight 0, never a state change.
        let drain = LIVE.replace(
            "10.0.0.1:80 check send-proxy-v2\n",
            "10.0.0.1:80 check send-proxy-v2 weight 0\n",
        );
        assert_eq!(
            plan_lines(&drain, &running_live()),
            ["set server be_a/s001 weight 0"]
        );
        // A server drained by hand (admin drain flag) is made ready again.
        let mut by_hand = running_live();
        by_hand[0].admin_flags = 0x08;
        assert_eq!(
            plan_lines(LIVE, &by_hand),
            ["set server be_a/s001 state ready"]
        );
    }

    #[test]
    fn a_replaced_endpoint_set_is_never_left_without_a_ready_server() {
        // Every serving slot leaves and a spare takes over, as when a Deployment's only pod
        // is replaced: the spare must be ready before the last old server goes.
        let new = LIVE
            .replace(
                "10.0.0.1:80 check send-proxy-v2\n",
                "127.0.0.1:1 check send-proxy-v2 disabled\n",
            )
            .replace(
                "10.0.0.2:80 check send-proxy-v2 weight 0",
                "127.0.0.1:1 check send-proxy-v2 disabled",
            )
            .replace(
                "127.0.0.1:1 check send-proxy-v2 disabled\n    server s004",
                "10.0.0.9:80 check send-proxy-v2\n    server s004",
            )
            .replace(
                "[fd00::4]:8443 check send-proxy-v2",
                "127.0.0.1:1 check send-proxy-v2 disabled",
            );
        let lines = plan_lines(&new, &running_live());
        let at = |line: &str| lines.iter().position(|l| l == line).unwrap();
        let ready = at("set server be_a/s003 state ready");
        assert!(ready < at("set server be_a/s001 state maint"), "{lines:#?}");
        assert!(ready < at("set server be_a/s002 state maint"), "{lines:#?}");
        assert!(ready < at("set server be_a/s004 state maint"), "{lines:#?}");
    }

    #[test]
    fn missing_or_different_servers_are_reported() {
        let split = LiveFile::parse(LIVE.as_bytes());
        let mut running = running_live();
        running.pop();
        assert!(
            plan(&split.servers, running.iter().map(ServerState::view))
                .unwrap_err()
                .to_string()
                .contains("be_a/s004")
        );
        let wrong = state("s001", "10.0.0.9", 80, 0, 1);
        assert!(
            matches(&split.servers[0], &wrong.view())
                .unwrap_err()
                .to_string()
                .contains("10.0.0.9:80")
        );
        let maint = state("s001", "10.0.0.1", 80, 1, 1);
        assert!(
            matches(&split.servers[0], &maint.view())
                .unwrap_err()
                .to_string()
                .contains("maint")
        );
        let heavy = state("s001", "10.0.0.1", 80, 0, 7);
        assert!(
            matches(&split.servers[0], &heavy.view())
                .unwrap_err()
                .to_string()
                .contains("weight")
        );
        // HAProxy's `disabled` from the file shows as flags 0x5: maintenance.
        assert!(
            matches(
                &split.servers[2],
                &state("s003", "127.0.0.1", 1, 5, 1).view()
            )
            .is_ok()
        );
    }

    #[test]
    fn servers_out_of_the_files_order_are_still_found() {
        let split = LiveFile::parse(moved_endpoints().as_bytes());
        let mut running = running_live();
        let in_order = plan_lines(&moved_endpoints(), &running);
        running.reverse();
        assert_eq!(plan_lines(&moved_endpoints(), &running), in_order);
        // A server the file does not have is passed over; every slot is still checked.
        running.insert(1, state("s999", "10.0.0.9", 80, 0, 1));
        let why = compare(&split.servers, running.iter().map(ServerState::view)).unwrap_err();
        let named: Vec<String> = why
            .0
            .iter()
            .map(|m| match m {
                ServerMismatch::Address { server, .. }
                | ServerMismatch::AdminState { server, .. }
                | ServerMismatch::Weight { server, .. }
                | ServerMismatch::NotRunning { server, .. } => server.clone(),
            })
            .collect();
        assert_eq!(
            named,
            ["s001", "s002", "s003"],
            "in the file's order: {why}"
        );
        assert_eq!(
            compare(
                &split.servers,
                split.servers.iter().map(RunningServer::as_file_says)
            ),
            Ok(())
        );
    }

    #[test]
    fn a_slot_missing_from_the_running_servers_is_reported_by_compare() {
        let split = LiveFile::parse(LIVE.as_bytes());
        let mut running = running_live();
        running.remove(1);
        let why = compare(&split.servers, running.iter().map(ServerState::view)).unwrap_err();
        assert_eq!(
            why.0,
            [ServerMismatch::NotRunning {
                backend: "be_a".into(),
                server: "s002".into()
            }]
        );
    }
}
