//! Endpoint-only changes without a reload.
//!
//! When a new config differs from the live one only in server lines of backends (address,
//! port, `weight`, `disabled`) and in the source ranges of frontends (see
//! [`acl_update`](crate::acl_update)), the running HAProxy is brought to what the new file says
//! through the runtime API, the new file is validated and swapped in (a later reload or
//! restart then gives the same state: a reload forgets runtime changes), and `show servers
//! state` is checked against the file. Anything else, or any mismatch, falls back to the
//! validated reload of [`apply_config`](crate::apply::apply_config).
//!
//! What a server line means, the same after a reload and after the runtime path:
//! * `disabled` → admin state maintenance (`set server B/S state maint`);
//! * otherwise admin state ready (`set server B/S state ready`);
//! * `weight N` → user weight N, no `weight` → HAProxy's default 1 (`set server B/S weight
//!   N`); a draining endpoint is rendered `weight 0`: it keeps its connections and gets no
//!   new ones.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use edgelb_core::DeployError;

use crate::runtime_api::{RuntimeApi, RuntimeCommand, ServerAdminState, ServerState};

/// HAProxy's weight for a server line without `weight`.
pub const DEFAULT_WEIGHT: u32 = 1;

/// Runtime commands per request: HAProxy reads one request line into one buffer
/// (`tune.bufsize`, 16 KiB by default), so long batches are split below that.
const MAX_REQUEST_CHARS: usize = 8 * 1024;

/// What one server line of a backend asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSlot {
    /// Backend name.
    pub backend: String,
    /// Server (slot) name.
    pub server: String,
    /// Address and port.
    pub addr: SocketAddr,
    /// `disabled`: in maintenance.
    pub maint: bool,
    /// The user weight (`weight N`, else [`DEFAULT_WEIGHT`]).
    pub weight: u32,
}

/// A config split into what only a reload can change (the skeleton) and the server slots
/// the runtime API can change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitConfig {
    /// Every meaningful line, with server lines of backends reduced to their name and
    /// options; comments and blank lines are left out (HAProxy ignores them).
    pub skeleton: Vec<String>,
    /// The server lines of backends, in file order.
    pub servers: Vec<ServerSlot>,
    /// The path of the first `stats socket` in `global`, when it is a UNIX socket path.
    pub stats_socket: Option<String>,
}

/// Section keywords of haproxy.cfg.
const SECTIONS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "peers",
    "resolvers",
    "userlist",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
];

/// Splits a config text: see [`SplitConfig`].
pub fn split_config(text: &str) -> SplitConfig {
    let mut skeleton = Vec::new();
    let mut servers = Vec::new();
    let mut stats_socket = None;
    let mut section = String::new();
    let mut backend: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(&first) = words.first()
            && SECTIONS.contains(&first)
        {
            section = first.to_owned();
            backend = (first == "backend")
                .then(|| words.get(1).map(|w| (*w).to_owned()))
                .flatten();
        }
        if section == "global"
            && words.len() >= 3
            && words[0] == "stats"
            && words[1] == "socket"
            && stats_socket.is_none()
            && words[2].starts_with('/')
        {
            stats_socket = Some(words[2].to_owned());
        }
        if let Some(be) = &backend
            && let Some((slot, rest)) = server_line(be, &words)
        {
            skeleton.push(format!("server {} {rest}", slot.server));
            servers.push(slot);
            continue;
        }
        // Source ranges are runtime-API material too (see `acl_update`).
        if let Some(line) = crate::acl_update::skeleton_line(&section, &words) {
            skeleton.push(line);
            continue;
        }
        skeleton.push(words.join(" "));
    }
    SplitConfig {
        skeleton,
        servers,
        stats_socket,
    }
}

/// Parses `server NAME ADDR:PORT options…`: the slot, and the options without the ones the
/// runtime API sets (`disabled`, `enabled`, `weight N`). `None` for anything else (such a
/// line stays in the skeleton whole).
fn server_line(backend: &str, words: &[&str]) -> Option<(ServerSlot, String)> {
    let [keyword, name, addr, options @ ..] = words else {
        return None;
    };
    if *keyword != "server" {
        return None;
    }
    let addr: SocketAddr = addr.parse().ok()?;
    let mut maint = false;
    let mut weight = DEFAULT_WEIGHT;
    let mut rest = Vec::new();
    let mut i = 0;
    while let Some(&word) = options.get(i) {
        match word {
            "disabled" => maint = true,
            "enabled" => maint = false,
            "weight" => {
                weight = options.get(i + 1)?.parse().ok()?;
                i += 1;
            }
            other => rest.push(other),
        }
        i += 1;
    }
    Some((
        ServerSlot {
            backend: backend.to_owned(),
            server: (*name).to_owned(),
            addr,
            maint,
            weight,
        },
        rest.join(" "),
    ))
}

/// Why a change cannot go through the runtime API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotRuntime(pub String);

impl fmt::Display for NotRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The server slots of `new` when it differs from `live` only in them; else why not.
pub fn runtime_servers(live: &str, new: &str) -> Result<SplitConfig, NotRuntime> {
    let live = split_config(live);
    let new = split_config(new);
    if live.skeleton != new.skeleton {
        let first = live
            .skeleton
            .iter()
            .zip(&new.skeleton)
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| live.skeleton.len().min(new.skeleton.len()));
        let show = |s: &SplitConfig| {
            s.skeleton
                .get(first)
                .map_or_else(|| "<end>".to_owned(), Clone::clone)
        };
        return Err(NotRuntime(format!(
            "the config changed outside server addresses and states: {:?} became {:?}",
            show(&live),
            show(&new)
        )));
    }
    if new.stats_socket.is_none() {
        return Err(NotRuntime(
            "the config has no `stats socket /path` in global".to_owned(),
        ));
    }
    Ok(new)
}

/// Whether a running server is what its slot asks for (`Err` says how it differs).
pub fn matches(slot: &ServerSlot, state: &ServerState) -> Result<(), String> {
    let name = format!("{}/{}", slot.backend, slot.server);
    let addr = state.address.parse::<IpAddr>().ok();
    if addr != Some(slot.addr.ip()) || state.port != Some(slot.addr.port()) {
        return Err(format!(
            "{name} runs {}:{} instead of {}",
            state.address,
            state.port.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            slot.addr
        ));
    }
    let want = if slot.maint {
        ServerAdminState::Maint
    } else {
        ServerAdminState::Ready
    };
    if state.admin_state() != want {
        return Err(format!(
            "{name} is {} instead of {want} (admin flags {:#x})",
            state.admin_state(),
            state.admin_flags
        ));
    }
    if state.weight != Some(slot.weight) {
        return Err(format!(
            "{name} has weight {:?} instead of {}",
            state.weight, slot.weight
        ));
    }
    Ok(())
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
/// or weight.
pub fn plan(slots: &[ServerSlot], running: &[ServerState]) -> Result<Vec<RuntimeCommand>, String> {
    let index = by_name(running);
    let (mut gains, mut losses, mut idle) = (Vec::new(), Vec::new(), Vec::new());
    for slot in slots {
        let Some(state) = index.get(&(slot.backend.as_str(), slot.server.as_str())) else {
            return Err(format!(
                "server {}/{} is not running",
                slot.backend, slot.server
            ));
        };
        if matches(slot, state).is_ok() {
            continue;
        }
        let was_maint = state.admin_state() == ServerAdminState::Maint;
        let bucket = match (was_maint, slot.maint) {
            (true, true) => &mut idle,
            (_, true) => &mut losses,
            (true, false) => &mut gains,
            (false, false) if state.weight.is_some_and(|w| slot.weight < w) => &mut losses,
            (false, false) => &mut gains,
        };
        bucket.extend(server_commands(slot, state));
    }
    gains.extend(losses);
    gains.extend(idle);
    Ok(gains)
}

/// The running servers by (backend, server) name.
fn by_name(running: &[ServerState]) -> HashMap<(&str, &str), &ServerState> {
    running
        .iter()
        .map(|s| ((s.backend.as_str(), s.server.as_str()), s))
        .collect()
}

/// The commands that bring one running server to its slot, in a safe order for that server.
fn server_commands(slot: &ServerSlot, state: &ServerState) -> Vec<RuntimeCommand> {
    let (backend, server) = (&slot.backend, &slot.server);
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
    let addr_now = state.address.parse::<IpAddr>().ok();
    if addr_now != Some(slot.addr.ip()) || state.port != Some(slot.addr.port()) {
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
pub async fn send(api: &RuntimeApi<'_>, commands: &[RuntimeCommand]) -> Result<(), DeployError> {
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
pub async fn send_plan(
    api: &RuntimeApi<'_>,
    slots: &[ServerSlot],
    running: &[ServerState],
) -> Result<usize, String> {
    let commands = plan(slots, running)?;
    send(api, &commands).await.map_err(|e| e.to_string())?;
    Ok(commands.len())
}

/// Checks every slot of the file against `show servers state`.
pub async fn verify(api: &RuntimeApi<'_>, slots: &[ServerSlot]) -> Result<(), String> {
    let running = api
        .show_servers_state(None)
        .await
        .map_err(|e| e.to_string())?;
    compare(slots, &running)
}

/// Checks every slot against the running servers (`show servers state`); `Err` names up to
/// three that differ or do not run.
pub fn compare(slots: &[ServerSlot], running: &[ServerState]) -> Result<(), String> {
    let index = by_name(running);
    let mut wrong = Vec::new();
    for slot in slots {
        match index.get(&(slot.backend.as_str(), slot.server.as_str())) {
            Some(state) => {
                if let Err(e) = matches(slot, state) {
                    wrong.push(e);
                }
            }
            None => wrong.push(format!(
                "server {}/{} is not running",
                slot.backend, slot.server
            )),
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        let more = wrong.len().saturating_sub(3);
        wrong.truncate(3);
        let mut message = wrong.join("; ");
        if more > 0 {
            message.push_str(&format!(" (and {more} more)"));
        }
        Err(message)
    }
}

/// Brings the running process behind `api` to `slots`: reads `show servers state`, sends
/// the difference. `Err` says what failed; some commands may have taken effect.
pub async fn push(api: &RuntimeApi<'_>, slots: &[ServerSlot]) -> Result<usize, String> {
    let running = api
        .show_servers_state(None)
        .await
        .map_err(|e| e.to_string())?;
    let commands = send_plan(api, slots, &running).await?;
    // The change is live in the running process from here on (the benchmarks time this).
    tracing::debug!(node = api.node(), commands, "runtime API commands applied");
    Ok(commands)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim_edge::SimEdge;

    const LIVE: &str = "# edgelb-digest: sha256:00\n# comment\n\nglobal\n    master-worker\n    stats socket /run/haproxy/admin.sock mode 660 level admin\n\nfrontend fe_80\n    bind :80\n    default_backend be_a\n\n# be_a: 1 of 4 slots in use\nbackend be_a\n    balance roundrobin\n    server s001 10.0.0.1:80 check send-proxy-v2\n    server s002 10.0.0.2:80 check send-proxy-v2 weight 0\n    server s003 127.0.0.1:1 check send-proxy-v2 disabled\n    server s004 [fd00::4]:8443 check send-proxy-v2\n";

    fn state(server: &str, addr: &str, port: u16, admin: u32, weight: u32) -> ServerState {
        ServerState {
            backend: "be_a".into(),
            server: server.into(),
            address: addr.into(),
            port: Some(port),
            oper_state: crate::runtime_api::ServerOperState::Running,
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
        plan(&split_config(config).servers, running)
            .unwrap()
            .iter()
            .map(|c| c.to_line().unwrap())
            .collect()
    }

    #[test]
    fn splits_servers_from_the_skeleton() {
        let split = split_config(LIVE);
        assert_eq!(
            split.stats_socket.as_deref(),
            Some("/run/haproxy/admin.sock")
        );
        assert_eq!(split.servers.len(), 4);
        assert_eq!(split.servers[1].weight, 0);
        assert!(!split.servers[1].maint);
        assert!(split.servers[2].maint);
        assert_eq!(split.servers[3].addr, "[fd00::4]:8443".parse().unwrap());
        assert!(
            split
                .skeleton
                .contains(&"server s002 check send-proxy-v2".to_owned())
        );
        assert!(split.skeleton.iter().all(|l| !l.starts_with('#')));
    }

    #[test]
    fn endpoint_only_changes_are_runtime_material() {
        // Comments (the digest, the slot count) change with the endpoints: ignored.
        let new = moved_endpoints()
            .replace("sha256:00", "sha256:11")
            .replace("1 of 4", "2 of 4");
        let split = runtime_servers(LIVE, &new).unwrap();
        assert!(split.servers[0].maint);
        assert_eq!(split.servers[1].weight, 1);
        assert_eq!(split.servers[2].addr, "10.0.0.3:81".parse().unwrap());
    }

    #[test]
    fn anything_else_needs_a_reload() {
        let cases = [
            LIVE.replace("balance roundrobin", "balance source"),
            LIVE.replace("check send-proxy-v2 disabled", "check send-proxy disabled"),
            LIVE.replace("bind :80", "bind :81"),
            // One more slot: the slot count changed.
            format!("{LIVE}    server s005 127.0.0.1:1 check send-proxy-v2 disabled\n"),
            LIVE.replace("server s004", "server s005"),
            LIVE.replace("master-worker", "master-worker\n    maxconn 10"),
        ];
        for new in cases {
            let err = runtime_servers(LIVE, &new).unwrap_err();
            assert!(err.0.contains("changed outside"), "{err}");
        }
        let no_socket = LIVE.replace(
            "stats socket /run/haproxy/admin.sock",
            "stats socket ipv4@:9999",
        );
        assert!(
            runtime_servers(&no_socket, &no_socket)
                .unwrap_err()
                .0
                .contains("stats socket")
        );
    }

    #[test]
    fn nothing_to_send_when_the_process_already_matches() {
        let split = split_config(LIVE);
        assert_eq!(plan(&split.servers, &running_live()).unwrap(), vec![]);
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
        let split = split_config(LIVE);
        let mut running = running_live();
        running.pop();
        assert!(
            plan(&split.servers, &running)
                .unwrap_err()
                .contains("be_a/s004")
        );
        let wrong = state("s001", "10.0.0.9", 80, 0, 1);
        assert!(
            matches(&split.servers[0], &wrong)
                .unwrap_err()
                .contains("10.0.0.9:80")
        );
        let maint = state("s001", "10.0.0.1", 80, 1, 1);
        assert!(
            matches(&split.servers[0], &maint)
                .unwrap_err()
                .contains("maint")
        );
        let heavy = state("s001", "10.0.0.1", 80, 0, 7);
        assert!(
            matches(&split.servers[0], &heavy)
                .unwrap_err()
                .contains("weight")
        );
        // HAProxy's `disabled` from the file shows as flags 0x5: maintenance.
        assert!(matches(&split.servers[2], &state("s003", "127.0.0.1", 1, 5, 1)).is_ok());
    }

    fn rendered(body: &str) -> edgelb_core::RenderedConfig {
        edgelb_core::RenderedConfig::from_body(body.to_owned())
    }

    /// [`moved_endpoints`] without its digest line, as a renderer's body.
    fn changed_body() -> String {
        moved_endpoints().split_once('\n').unwrap().1.to_owned()
    }

    fn live_config() -> edgelb_core::RenderedConfig {
        rendered(LIVE.split_once('\n').unwrap().1)
    }

    #[tokio::test]
    async fn endpoint_change_goes_through_the_runtime_api_without_a_reload() {
        let live = live_config();
        let sim = SimEdge::start(&live.text, false, false);
        let new = rendered(&changed_body());
        let layout = crate::HaproxyLayout::default();
        let applied = crate::apply::apply_config(&sim, &layout, &new)
            .await
            .unwrap();
        assert_eq!(applied, edgelb_core::Applied::RuntimeUpdated);
        assert!(!sim.reloaded(), "{:?}", sim.log.lock().unwrap());
        assert_eq!(sim.live(), new.text);
        assert_eq!(
            sim.files.lock().unwrap()[&layout.prev_path()],
            live.text.as_bytes()
        );
        let log = sim.log.lock().unwrap().clone();
        assert!(
            log.iter().any(|l| l.starts_with("haproxy -c -f")),
            "validated: {log:?}"
        );
        assert!(
            log.iter().any(|l| l.contains(
                "set server be_a/s003 addr 10.0.0.3 port 81; set server be_a/s003 state ready"
            ) || l.contains("set server be_a/s003 addr 10.0.0.3 port 81")),
            "{log:?}"
        );
        // What a reload of the new file gives is what the runtime API set.
        let after_runtime = sim.servers.lock().unwrap().clone();
        sim.load(&sim.live());
        let mut after_reload = sim.servers.lock().unwrap().clone();
        // `disabled` from the file is flags 0x5, `state maint` 0x1: both maintenance.
        for v in after_reload.values_mut() {
            if v.2 == 5 {
                v.2 = 1;
            }
        }
        assert_eq!(after_runtime, after_reload);
        // The same config again: unchanged.
        assert_eq!(
            crate::apply::apply_config(&sim, &layout, &new)
                .await
                .unwrap(),
            edgelb_core::Applied::Unchanged
        );
    }

    #[tokio::test]
    async fn a_mismatch_after_the_commands_falls_back_to_a_reload() {
        let sim = SimEdge::start(&live_config().text, true, false);
        let new = rendered(&changed_body());
        let applied = crate::apply::apply_config(&sim, &crate::HaproxyLayout::default(), &new)
            .await
            .unwrap();
        assert_eq!(applied, edgelb_core::Applied::Reloaded);
        assert!(sim.reloaded());
        assert_eq!(sim.live(), new.text);
    }

    #[tokio::test]
    async fn a_stats_socket_the_runtime_api_cannot_use_means_a_reload() {
        // A user template's socket path that HAProxy takes but the runtime API client does
        // not (it allows letters, digits and / . _ - @ only).
        let odd =
            |body: String| body.replace("/run/haproxy/admin.sock", "/run/haproxy/admin+1.sock");
        let live = rendered(&odd(LIVE.split_once('\n').unwrap().1.to_owned()));
        let sim = SimEdge::start(&live.text, false, false);
        let new = rendered(&odd(changed_body()));
        let applied = crate::apply::apply_config(&sim, &crate::HaproxyLayout::default(), &new)
            .await
            .unwrap();
        assert_eq!(applied, edgelb_core::Applied::Reloaded);
        assert_eq!(sim.live(), new.text);
    }

    #[tokio::test]
    async fn a_structural_change_reloads_without_runtime_commands() {
        let sim = SimEdge::start(&live_config().text, false, false);
        let new = rendered(&changed_body().replace("bind :80", "bind :81"));
        let applied = crate::apply::apply_config(&sim, &crate::HaproxyLayout::default(), &new)
            .await
            .unwrap();
        assert_eq!(applied, edgelb_core::Applied::Reloaded);
        assert!(
            sim.log
                .lock()
                .unwrap()
                .iter()
                .all(|l| !l.starts_with("set server")),
            "{:?}",
            sim.log.lock().unwrap()
        );
    }

    #[tokio::test]
    async fn a_rejected_file_is_reported_and_the_runtime_changes_undone() {
        let live = live_config();
        let sim = SimEdge::start(&live.text, false, true);
        let err = crate::apply::apply_config(
            &sim,
            &crate::HaproxyLayout::default(),
            &rendered(&changed_body()),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, DeployError::ConfigRejected { .. }), "{err}");
        assert_eq!(sim.live(), live.text, "the live file stays");
        assert!(
            !sim.reloaded(),
            "the runtime changes are undone through the runtime API"
        );
        verify(
            &RuntimeApi::new(&sim, "/run/haproxy/admin.sock").unwrap(),
            &split_config(&live.text).servers,
        )
        .await
        .unwrap();
    }
}
