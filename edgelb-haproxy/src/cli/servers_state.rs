//! Reading HAProxy's answer to `show servers state` (format 1) without copying it: at 80,000
//! server slots the answer is ~8 MiB, and an owned entry per server would be half as much
//! again. The answer is checked whole once ([`ServersStateAnswer::read`]); the deploy then
//! walks its servers as [`RunningServer`] views borrowed from the text, while the public
//! [`RuntimeApi::show_servers_state`](crate::RuntimeApi::show_servers_state) still hands out
//! owned [`ServerState`]s. The server states themselves ([`ServerState`], its admin and
//! operational states) live here too, so the runtime client depends on this reader and not
//! the other way round.

use std::fmt;
use std::net::IpAddr;

use crate::live_file::ServerSlot;

/// The administrative state to put a server in (`set server <be>/<srv> state …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerAdminState {
    /// Takes traffic.
    Ready,
    /// Finishes what it has, takes nothing new.
    Drain,
    /// Out of service.
    Maint,
}

impl fmt::Display for ServerAdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ready => "ready",
            Self::Drain => "drain",
            Self::Maint => "maint",
        })
    }
}

/// A server's operational state as `show servers state` reports it (`srv_op_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerOperState {
    /// Down (0).
    Stopped,
    /// Coming up, slow start (1).
    Starting,
    /// Up (2).
    Running,
    /// Going down (3).
    Stopping,
    /// A value this client does not know.
    Other(u8),
}

impl From<u8> for ServerOperState {
    fn from(v: u8) -> Self {
        match v {
            0 => Self::Stopped,
            1 => Self::Starting,
            2 => Self::Running,
            3 => Self::Stopping,
            other => Self::Other(other),
        }
    }
}

/// One line of `show servers state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// Backend name.
    pub backend: String,
    /// Server name.
    pub server: String,
    /// Current address (as HAProxy prints it).
    pub address: String,
    /// Current port (`None` when HAProxy prints none, e.g. a port-less server).
    pub port: Option<u16>,
    /// Operational state.
    pub oper_state: ServerOperState,
    /// Raw admin state flags (`srv_admin_state`).
    pub admin_flags: u32,
    /// The user weight (`srv_uweight`; `None` when HAProxy prints no such column).
    pub weight: Option<u32>,
}

impl ServerState {
    /// The admin state the flags amount to: maintenance wins over drain.
    pub fn admin_state(&self) -> ServerAdminState {
        admin_state_of(self.admin_flags)
    }
}

/// Admin flags of `srv_admin_state`: forced, inherited or DNS-resolution maintenance.
const ADMIN_MAINT: u32 = 0x01 | 0x02 | 0x20;
/// Admin flags of `srv_admin_state`: forced or inherited drain.
const ADMIN_DRAIN: u32 = 0x08 | 0x10;

/// The admin state `srv_admin_state` flags amount to: maintenance wins over drain.
pub(crate) fn admin_state_of(flags: u32) -> ServerAdminState {
    if flags & ADMIN_MAINT != 0 {
        ServerAdminState::Maint
    } else if flags & ADMIN_DRAIN != 0 {
        ServerAdminState::Drain
    } else {
        ServerAdminState::Ready
    }
}

/// Why an answer to `show servers state` cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ServersStateError {
    /// The answer does not start with format version 1 (an error message, say).
    #[error("expected format version 1 first, got {got:?}")]
    Version {
        /// The first line, or `nothing`.
        got: String,
    },
    /// No `#` line naming the columns.
    #[error("no column header line")]
    NoHeader,
    /// A column this client needs is missing.
    #[error("no {column} column in {header:?}")]
    NoColumn {
        /// The column's name.
        column: &'static str,
        /// The header line.
        header: String,
    },
    /// A server line with fewer fields than the header.
    #[error("short line {line:?}")]
    ShortLine {
        /// The line.
        line: String,
    },
    /// A field that must be a number is not.
    #[error("not a number in column {column} of {line:?}")]
    NotANumber {
        /// The column's name.
        column: String,
        /// The line.
        line: String,
    },
}

/// A running server's address: as HAProxy printed it, or as a server line puts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunningAddr<'a> {
    /// The `srv_addr` field of `show servers state`.
    Text(&'a str),
    /// The address of a server line.
    Ip(IpAddr),
}

impl RunningAddr<'_> {
    /// The address as an IP, `None` when HAProxy printed something else (an FQDN, `-`).
    pub(crate) fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Text(text) => text.parse().ok(),
            Self::Ip(ip) => Some(*ip),
        }
    }
}

impl fmt::Display for RunningAddr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(text) => f.write_str(text),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// One running server, borrowed from an answer to `show servers state` (or made from a
/// server line: what runs once the line is applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunningServer<'a> {
    /// Backend name.
    pub(crate) backend: &'a str,
    /// Server name.
    pub(crate) server: &'a str,
    /// Current address.
    pub(crate) address: RunningAddr<'a>,
    /// Current port (`None` when HAProxy prints none).
    pub(crate) port: Option<u16>,
    /// Operational state.
    pub(crate) oper_state: ServerOperState,
    /// Raw admin state flags (`srv_admin_state`).
    pub(crate) admin_flags: u32,
    /// The user weight (`None` when HAProxy prints no such column).
    pub(crate) weight: Option<u32>,
}

impl<'a> RunningServer<'a> {
    /// The state a server line puts a server in (after a reload, or once the runtime API
    /// brought it there).
    pub(crate) fn as_file_says(slot: &'a ServerSlot) -> Self {
        Self {
            backend: &slot.backend,
            server: &slot.server,
            address: RunningAddr::Ip(slot.addr.ip()),
            port: Some(slot.addr.port()),
            oper_state: ServerOperState::Running,
            admin_flags: if slot.maint { 0x01 } else { 0 },
            weight: Some(slot.weight),
        }
    }

    /// The admin state its flags amount to.
    pub(crate) fn admin_state(&self) -> ServerAdminState {
        admin_state_of(self.admin_flags)
    }

    /// An owned copy.
    pub(crate) fn to_owned_state(self) -> ServerState {
        ServerState {
            backend: self.backend.to_owned(),
            server: self.server.to_owned(),
            address: self.address.to_string(),
            port: self.port,
            oper_state: self.oper_state,
            admin_flags: self.admin_flags,
            weight: self.weight,
        }
    }
}

#[cfg(test)]
impl ServerState {
    /// This entry as the deploy's walks take it.
    pub(crate) fn view(&self) -> RunningServer<'_> {
        RunningServer {
            backend: &self.backend,
            server: &self.server,
            address: RunningAddr::Text(&self.address),
            port: self.port,
            oper_state: self.oper_state,
            admin_flags: self.admin_flags,
            weight: self.weight,
        }
    }
}

/// Where the fields this client reads are on a server line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Columns {
    backend: usize,
    server: usize,
    addr: usize,
    op: usize,
    admin: usize,
    port: Option<usize>,
    weight: Option<usize>,
}

/// The non-empty lines of an answer, trimmed.
fn meaningful(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// The version line and the column header of `text`: where the columns are, and their names
/// (for errors).
fn header(text: &str) -> Result<(Columns, Vec<&str>), ServersStateError> {
    let mut lines = meaningful(text);
    match lines.next() {
        Some("1") => {}
        other => {
            return Err(ServersStateError::Version {
                got: other.unwrap_or("nothing").to_owned(),
            });
        }
    }
    let header = lines
        .next()
        .and_then(|h| h.strip_prefix('#'))
        .ok_or(ServersStateError::NoHeader)?;
    let names: Vec<&str> = header.split_whitespace().collect();
    let col = |name: &'static str| {
        names
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| ServersStateError::NoColumn {
                column: name,
                header: header.to_owned(),
            })
    };
    let columns = Columns {
        backend: col("be_name")?,
        server: col("srv_name")?,
        addr: col("srv_addr")?,
        op: col("srv_op_state")?,
        admin: col("srv_admin_state")?,
        port: col("srv_port").ok(),
        weight: col("srv_uweight").ok(),
    };
    Ok((columns, names))
}

/// One server line (`names`: the header's column names, for errors).
fn server_line<'a>(
    columns: &Columns,
    names: &[&str],
    line: &'a str,
) -> Result<RunningServer<'a>, ServersStateError> {
    let fields: Vec<&'a str> = line.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .copied()
            .ok_or_else(|| ServersStateError::ShortLine {
                line: line.to_owned(),
            })
    };
    let number = |i: usize| -> Result<u32, ServersStateError> {
        get(i)?
            .parse::<u32>()
            .map_err(|_| ServersStateError::NotANumber {
                column: names.get(i).copied().unwrap_or_default().to_owned(),
                line: line.to_owned(),
            })
    };
    Ok(RunningServer {
        backend: get(columns.backend)?,
        server: get(columns.server)?,
        address: RunningAddr::Text(get(columns.addr)?),
        port: columns
            .port
            .and_then(|i| fields.get(i))
            .and_then(|p| p.parse().ok()),
        oper_state: ServerOperState::from(u8::try_from(number(columns.op)?).unwrap_or(u8::MAX)),
        admin_flags: number(columns.admin)?,
        weight: columns
            .weight
            .and_then(|i| fields.get(i))
            .and_then(|w| w.parse().ok()),
    })
}

/// An answer to `show servers state`, checked whole: every server line reads.
#[derive(Debug)]
pub(crate) struct ServersStateAnswer {
    text: String,
    columns: Columns,
}

impl ServersStateAnswer {
    /// Checks `text` (the answer as HAProxy sent it) and keeps it.
    pub(crate) fn read(text: String) -> Result<Self, ServersStateError> {
        let (columns, names) = header(&text)?;
        for line in meaningful(&text).skip(2) {
            server_line(&columns, &names, line)?;
        }
        Ok(Self { text, columns })
    }

    /// Every server, in HAProxy's order.
    pub(crate) fn servers(&self) -> impl Iterator<Item = RunningServer<'_>> {
        // Every line was read once already: none fails now.
        meaningful(&self.text)
            .skip(2)
            .filter_map(|line| server_line(&self.columns, &[], line).ok())
    }
}

/// Parses `show servers state` (format 1) into owned entries: the `#` header names the
/// columns.
pub(crate) fn parse_servers_state(text: &str) -> Result<Vec<ServerState>, ServersStateError> {
    let (columns, names) = header(text)?;
    meaningful(text)
        .skip(2)
        .map(|line| server_line(&columns, &names, line).map(RunningServer::to_owned_state))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from HAProxy 2.6.12.
    const STATE: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n3 be_x 1 s1 127.0.0.2 2 8 1 1 0 1 0 2 0 0 0 0 - 18083 - 0 0 - - 0\n3 be_x 2 s2 127.0.0.1 0 5 1 1 0 1 0 0 8 0 0 0 - 18082 - 0 0 - - 0\n\n";

    #[test]
    fn parses_servers_state() {
        let servers = parse_servers_state(STATE).unwrap();
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].backend, "be_x");
        assert_eq!(servers[0].server, "s1");
        assert_eq!(servers[0].address, "127.0.0.2");
        assert_eq!(servers[0].port, Some(18083));
        assert_eq!(servers[0].oper_state, ServerOperState::Running);
        assert_eq!(servers[0].admin_state(), ServerAdminState::Drain);
        assert_eq!(servers[0].weight, Some(1));
        assert_eq!(servers[1].oper_state, ServerOperState::Stopped);
        assert_eq!(servers[1].admin_state(), ServerAdminState::Maint);
        assert!(parse_servers_state("Unknown command\n").is_err());
    }

    #[test]
    fn a_checked_answer_lends_the_same_servers() {
        let answer = ServersStateAnswer::read(STATE.to_owned()).unwrap();
        let lent: Vec<ServerState> = answer
            .servers()
            .map(RunningServer::to_owned_state)
            .collect();
        assert_eq!(lent, parse_servers_state(STATE).unwrap());
        assert_eq!(
            answer.servers().next().map(|s| s.address.ip()),
            Some("127.0.0.2".parse().ok())
        );
    }

    #[test]
    fn a_bad_line_anywhere_fails_the_whole_answer() {
        let short = format!("{STATE}3 be_x 3 s3\n");
        assert!(matches!(
            ServersStateAnswer::read(short),
            Err(ServersStateError::ShortLine { .. })
        ));
        let not_a_number = STATE.replace("127.0.0.1 0 5", "127.0.0.1 0 x");
        let err = ServersStateAnswer::read(not_a_number).unwrap_err();
        assert!(
            matches!(&err, ServersStateError::NotANumber { column, .. } if column == "srv_admin_state"),
            "{err}"
        );
        assert!(matches!(
            ServersStateAnswer::read("1\nno header\n".into()),
            Err(ServersStateError::NoHeader)
        ));
    }
}
