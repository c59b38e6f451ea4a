//! Traffic at an edge: HAProxy's `show stat` (CSV, parsed with the `csv` crate) and
//! `show info`, read on the stats socket over the same session as the deploys, and turned
//! into bounded, typed rows for metrics: one per frontend and backend, with each backend's
//! servers counted by state and check status (never one row per server or per client).
//!
//! Whatever the socket answers, parsing ends in rows or a [`StatsError`]: answers above
//! [`MAX_ANSWER_BYTES`], more than [`MAX_ROWS`] rows, a missing header or column, or a
//! field that is not a number where one is expected are refused, never a panic.

use std::collections::BTreeMap;

use async_trait::async_trait;
use edgelb_core::{DeployError, EdgeNode};

use crate::cli::runtime::RuntimeApi;
use crate::edge_host::EdgeHost;

/// The largest `show stat` or `show info` answer parsed (64 MiB; 10,000 servers take ~3 MB).
pub const MAX_ANSWER_BYTES: usize = 64 << 20;
/// The most `show stat` rows parsed.
pub const MAX_ROWS: usize = 1_000_000;
/// Names (proxy, check status) longer than this are refused.
const MAX_NAME_CHARS: usize = 256;

/// Why an answer of the stats socket could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    /// The answer is too large to parse.
    #[error("the answer is {bytes} bytes, above the {max}-byte limit")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The answer does not start with `# pxname,svname,…` (an error message, say).
    #[error("the answer has no `# pxname,svname,…` header: {0:?}")]
    NoHeader(String),
    /// A column this parser needs is absent from the header.
    #[error("the header has no {0:?} column")]
    MissingColumn(&'static str),
    /// Too many rows.
    #[error("more than {0} rows")]
    TooManyRows(usize),
    /// A row that cannot be read.
    #[error("row {row}: {message}")]
    Row {
        /// 1-based row number after the header.
        row: usize,
        /// What is wrong with it.
        message: String,
    },
    /// `show info` did not answer as HAProxy does.
    #[error("`show info` answered {0:?}, without a `Pid:` line")]
    Info(String),
}

/// Whether a proxy row is a frontend or a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProxySide {
    /// A frontend (`type` 0).
    Frontend,
    /// A backend (`type` 1).
    Backend,
}

impl ProxySide {
    /// `frontend` or `backend`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Frontend => "frontend",
            Self::Backend => "backend",
        }
    }
}

/// A server's state as `show stat` prints it (`status`), folded to a bounded set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServerStatus {
    /// `UP`, `UP 1/3` (going down, still up).
    Up,
    /// `DOWN`, `DOWN 1/2` (going up, still down).
    Down,
    /// `MAINT`, `MAINT (via …)`, `MAINT (resolution)`: out of service (edgelb's spare slots).
    Maint,
    /// `DRAIN`: finishes what it has, takes nothing new.
    Drain,
    /// `NOLB`: up, but takes no new load-balanced traffic.
    NoLb,
    /// `no check`: not health-checked, so taken as serving.
    NoCheck,
    /// Anything else.
    Other,
}

impl ServerStatus {
    /// Folds a `status` field.
    pub fn parse(status: &str) -> Self {
        let s = status.trim();
        let word = s.split_whitespace().next().unwrap_or("");
        match word {
            "UP" => Self::Up,
            "DOWN" => Self::Down,
            "DRAIN" => Self::Drain,
            "NOLB" => Self::NoLb,
            w if w.starts_with("MAINT") => Self::Maint,
            "no" if s == "no check" => Self::NoCheck,
            _ => Self::Other,
        }
    }

    /// The label value: `UP`, `DOWN`, `MAINT`, `DRAIN`, `NOLB`, `NOCHECK` or `OTHER`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "UP",
            Self::Down => "DOWN",
            Self::Maint => "MAINT",
            Self::Drain => "DRAIN",
            Self::NoLb => "NOLB",
            Self::NoCheck => "NOCHECK",
            Self::Other => "OTHER",
        }
    }
}

/// A check status (`L4OK`, `L4CON`, `L7STS`, `INI`, …) without the `* ` HAProxy puts before
/// one in progress; empty when the server is not checked, `OTHER` when it is not a short
/// upper-case code (so a hostile answer cannot grow the label set).
pub fn check_status(field: &str) -> String {
    let code = field.trim().trim_start_matches("* ").trim();
    let plain = code.len() <= 16
        && code
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if plain { code } else { "OTHER" }.to_owned()
}

/// One frontend's or backend's counters, as HAProxy keeps them since its worker started (a
/// reload starts them again, which Prometheus's `rate()` reads as a counter reset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Current sessions (`scur`).
    pub sessions_current: u64,
    /// Sessions since start (`stot`).
    pub sessions_total: u64,
    /// Bytes from clients (`bin`).
    pub bytes_in: u64,
    /// Bytes to clients (`bout`).
    pub bytes_out: u64,
    /// Requests queued for a server (`qcur`, backends).
    pub queue_current: u64,
    /// Request errors (`ereq`, frontends: a client closed or sent garbage).
    pub request_errors: u64,
    /// Failed connections to a server (`econ`, backends).
    pub connection_errors: u64,
    /// Response errors (`eresp`, backends: a server aborted).
    pub response_errors: u64,
    /// Connections rejected by `tcp-request connection` rules (`dcon`, frontends).
    pub denied_connections: u64,
    /// Sessions rejected by `tcp-request session` rules (`dses`, frontends).
    pub denied_sessions: u64,
    /// Requests denied (`dreq`).
    pub denied_requests: u64,
    /// Responses denied (`dresp`).
    pub denied_responses: u64,
    /// The backend's servers, counted by state and check status.
    pub servers: BTreeMap<(ServerStatus, String), u64>,
}

/// What `show info` says of the HAProxy process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InfoStats {
    /// Seconds since the worker started (`Uptime_sec`).
    pub uptime_seconds: Option<u64>,
    /// Current connections (`CurrConns`).
    pub current_connections: Option<u64>,
    /// Connections since start (`CumConns`).
    pub total_connections: Option<u64>,
}

/// One poll of an edge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeStats {
    /// `show info`.
    pub info: InfoStats,
    /// Every frontend and backend, by (side, proxy name).
    pub proxies: BTreeMap<(ProxySide, String), ProxyStats>,
    /// Bytes the two answers took (the poll's cost on the link, before SSH framing).
    pub answer_bytes: usize,
}

/// Reads the stats of the edges a deployer holds sessions to. The SSH and local deployers
/// implement it over the sessions they deploy through.
#[async_trait]
pub trait StatsSource: Send + Sync {
    /// `show stat` and `show info` on `stats_socket` of `node`.
    async fn edge_stats(
        &self,
        node: &EdgeNode,
        stats_socket: &str,
    ) -> Result<EdgeStats, DeployError>;
}

/// `show stat` and `show info` on `socket` of `host`, parsed.
pub async fn read(host: &dyn EdgeHost, socket: &str) -> Result<EdgeStats, DeployError> {
    // Validates the socket path as the runtime API client does.
    let api = RuntimeApi::new(host, socket)?;
    let (stat, info) = futures::future::join(
        host.socket_command(api.socket(), "show stat"),
        host.socket_command(api.socket(), "show info"),
    )
    .await;
    let (stat, info) = (stat?, info?);
    let failed = |step: &str, e: StatsError| DeployError::Step {
        node: host.node().to_owned(),
        step: format!("reading `{step}` on {socket}"),
        message: e.to_string(),
    };
    let proxies = parse_show_stat(&stat).map_err(|e| failed("show stat", e))?;
    let info_stats = parse_show_info(&info).map_err(|e| failed("show info", e))?;
    Ok(EdgeStats {
        info: info_stats,
        proxies,
        answer_bytes: stat.len() + info.len(),
    })
}

/// Parses `show info` (`Name: value` lines).
pub fn parse_show_info(text: &str) -> Result<InfoStats, StatsError> {
    if text.len() > MAX_ANSWER_BYTES {
        return Err(StatsError::TooLarge {
            bytes: text.len(),
            max: MAX_ANSWER_BYTES,
        });
    }
    let mut pid = false;
    let mut info = InfoStats::default();
    for (key, value) in text.lines().filter_map(|l| l.split_once(':')) {
        let value = value.trim().parse::<u64>().ok();
        match key.trim() {
            "Pid" => pid = true,
            "Uptime_sec" => info.uptime_seconds = value,
            "CurrConns" => info.current_connections = value,
            "CumConns" => info.total_connections = value,
            _ => {}
        }
    }
    if !pid {
        return Err(StatsError::Info(text.chars().take(80).collect()));
    }
    Ok(info)
}

/// The columns read, by name (HAProxy adds columns between versions; positions move).
struct Columns {
    pxname: usize,
    svname: usize,
    kind: usize,
    status: usize,
    check_status: usize,
    counters: [usize; 12],
}

const COUNTERS: [&str; 12] = [
    "scur", "stot", "bin", "bout", "qcur", "ereq", "econ", "eresp", "dcon", "dses", "dreq", "dresp",
];

impl Columns {
    fn find(header: &csv::StringRecord) -> Result<Self, StatsError> {
        let at = |name: &'static str| {
            header
                .iter()
                .position(|h| h.trim() == name)
                .ok_or(StatsError::MissingColumn(name))
        };
        let mut counters = [0; 12];
        for (slot, name) in counters.iter_mut().zip(COUNTERS) {
            *slot = at(name)?;
        }
        Ok(Self {
            pxname: at("pxname")?,
            svname: at("svname")?,
            kind: at("type")?,
            status: at("status")?,
            check_status: at("check_status")?,
            counters,
        })
    }
}

/// Parses `show stat` (CSV after a `# ` header line) into frontends and backends, with the
/// servers of each backend counted by state and check status. Listener rows are skipped.
pub fn parse_show_stat(
    text: &str,
) -> Result<BTreeMap<(ProxySide, String), ProxyStats>, StatsError> {
    if text.len() > MAX_ANSWER_BYTES {
        return Err(StatsError::TooLarge {
            bytes: text.len(),
            max: MAX_ANSWER_BYTES,
        });
    }
    let Some(body) = text.strip_prefix("# ") else {
        return Err(StatsError::NoHeader(text.chars().take(80).collect()));
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(body.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| StatsError::NoHeader(e.to_string()))?
        .clone();
    let columns = Columns::find(&header)?;
    let mut proxies: BTreeMap<(ProxySide, String), ProxyStats> = BTreeMap::new();
    let mut servers: BTreeMap<String, BTreeMap<(ServerStatus, String), u64>> = BTreeMap::new();
    for (index, record) in reader.records().enumerate() {
        let row = index + 1;
        if row > MAX_ROWS {
            return Err(StatsError::TooManyRows(MAX_ROWS));
        }
        let record = record.map_err(|e| StatsError::Row {
            row,
            message: e.to_string(),
        })?;
        let field = |i: usize| record.get(i).unwrap_or("");
        let bad = |message: String| StatsError::Row { row, message };
        let name = field(columns.pxname);
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(bad(format!(
                "a proxy name of {} characters",
                name.chars().count()
            )));
        }
        match field(columns.kind) {
            "0" | "1" => {
                let side = if field(columns.kind) == "0" {
                    ProxySide::Frontend
                } else {
                    ProxySide::Backend
                };
                let mut values = [0u64; 12];
                for (value, (col, what)) in
                    values.iter_mut().zip(columns.counters.iter().zip(COUNTERS))
                {
                    let text = field(*col).trim();
                    *value = if text.is_empty() {
                        0
                    } else {
                        text.parse()
                            .map_err(|_| bad(format!("{what} is {text:?}, not a count")))?
                    };
                }
                let [
                    scur,
                    stot,
                    bin,
                    bout,
                    qcur,
                    ereq,
                    econ,
                    eresp,
                    dcon,
                    dses,
                    dreq,
                    dresp,
                ] = values;
                let stats = proxies.entry((side, name.to_owned())).or_default();
                *stats = ProxyStats {
                    sessions_current: scur,
                    sessions_total: stot,
                    bytes_in: bin,
                    bytes_out: bout,
                    queue_current: qcur,
                    request_errors: ereq,
                    connection_errors: econ,
                    response_errors: eresp,
                    denied_connections: dcon,
                    denied_sessions: dses,
                    denied_requests: dreq,
                    denied_responses: dresp,
                    servers: BTreeMap::new(),
                };
            }
            "2" => {
                if field(columns.svname).is_empty() {
                    return Err(bad("a server without a name".into()));
                }
                let key = (
                    ServerStatus::parse(field(columns.status)),
                    check_status(field(columns.check_status)),
                );
                *servers
                    .entry(name.to_owned())
                    .or_default()
                    .entry(key)
                    .or_default() += 1;
            }
            "3" => {}
            other => {
                return Err(bad(format!("type {other:?} is not 0 to 3")));
            }
        }
    }
    for (backend, counted) in servers {
        if let Some(stats) = proxies.get_mut(&(ProxySide::Backend, backend)) {
            stats.servers = counted;
        }
    }
    Ok(proxies)
}

#[cfg(test)]
#[path = "edge_stats_tests.rs"]
mod tests;
