//! [`RenderOptions`]: the `haproxy:` section of edgelb's config file.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use edgelb_core::EdgeNode;

use super::duration::{ConfigDuration, MAX_HAPROXY_MILLIS};
use super::ident::bind_address;
use super::privilege::{
    LogTarget, RunAs, check_socket_path, default_socket_dirs, validate_socket_dirs,
};
use crate::error::{Error, Result};

/// How the renderer builds `haproxy.cfg`.
///
/// Every field has a default, so an empty section is valid. In YAML:
///
/// ```yaml
/// haproxy:
///   template_dir: /etc/edgelb/templates   # optional: your own haproxy.cfg.j2
///   stats_socket: /run/haproxy/admin.sock
///   socket_dirs: [/run/haproxy]            # where UNIX sockets (stats, binds) may be created
///   run_as: { user: haproxy, group: haproxy, chroot: /var/lib/haproxy }   # null: stay root
///   log: { target: /dev/log, facility: local0 }                         # null: no logging
///   hard_stop_after: 15m
///   maxconn: 8192                          # null: let HAProxy derive it from the fd limit
///   httpclient_system_ca: false            # true: let HAProxy's HTTP client load the CA store
///   balance: roundrobin                    # roundrobin | leastconn | source | first
///   timeouts: { connect: 5s, client: 1m, server: 1m, tunnel: 1h, client_fin: 30s, server_fin: 30s }
///   health_check: { enabled: true, interval: 2s, timeout: 5s, fall: 3, rise: 2 }
///   slots: { min_spare: 4, block: 8 }
/// ```
///
/// Durations are strings with a unit (`500ms`, `5s`, `1m`, `1h`, `1d`); see
/// [`ConfigDuration`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenderOptions {
    /// A directory holding your own `haproxy.cfg.j2` (and anything it includes). It is
    /// searched first; the built-in template is the fallback, and stays reachable as
    /// `builtin/haproxy.cfg.j2` so yours can `{% extends %}` it. Default: none (built-in).
    pub template_dir: Option<PathBuf>,
    /// Path of HAProxy's stats socket on the edge (`level admin expose-fd listeners`, used by
    /// the runtime API and seamless reloads). Default `/run/haproxy/admin.sock`. It must lie
    /// inside one of `socket_dirs`.
    pub stats_socket: String,
    /// The directories UNIX sockets may be created in: the stats socket and `unix@` binds.
    /// HAProxy's master (root) replaces whatever file a socket path names, so a path outside
    /// these is refused. Default `[/run/haproxy]`.
    pub socket_dirs: Vec<String>,
    /// Who the workers run as: by default user and group `haproxy` in a chroot at
    /// `/var/lib/haproxy`, as Debian's package sets up. `None` (`null`) keeps them as the
    /// master's user (root when started as root), with no chroot.
    pub run_as: Option<RunAs>,
    /// Where HAProxy logs (with `option tcplog`): default `/dev/log`, facility `local0`.
    /// `None` (`null`) renders no logging.
    pub log: Option<LogTarget>,
    /// How long an old worker may keep serving long-lived connections after a reload.
    /// Default `15m`.
    pub hard_stop_after: ConfigDuration,
    /// Global connection limit. HAProxy needs about two file descriptors per connection, so
    /// raise the process's fd limit with it; `null` lets HAProxy derive it from that limit.
    /// Default `8192`.
    pub maxconn: Option<u32>,
    /// Whether HAProxy's built-in HTTP client keeps its default of verifying TLS against the
    /// system CA store. edgelb's template never uses that client (Lua scripts, the expert
    /// CLI, `ocsp-update` from HAProxy 2.8 and ACME from 3.2 do), but HAProxy 2.6 loads the
    /// whole store for it on every start, reload and `haproxy -c`: about 50 ms of CPU, most of
    /// a validation's time. `false` (the default) renders `httpclient.ssl.verify none` so the
    /// store is not loaded. Set `true` if your own template uses any of those features, or if
    /// your HAProxy is built without OpenSSL (it does not know the keyword then).
    pub httpclient_system_ca: bool,
    /// Load-balancing algorithm of every backend. Default `roundrobin`.
    pub balance: Balance,
    /// Timeouts of the `defaults` section.
    pub timeouts: Timeouts,
    /// Health checks of the endpoints.
    pub health_check: HealthCheck,
    /// Sizing of the server slots of each backend.
    pub slots: SlotOptions,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            template_dir: None,
            stats_socket: "/run/haproxy/admin.sock".to_owned(),
            socket_dirs: default_socket_dirs(),
            run_as: Some(RunAs::default()),
            log: Some(LogTarget::default()),
            hard_stop_after: ConfigDuration::from_mins(15),
            maxconn: Some(8192),
            httpclient_system_ca: false,
            balance: Balance::default(),
            timeouts: Timeouts::default(),
            health_check: HealthCheck::default(),
            slots: SlotOptions::default(),
        }
    }
}

/// A backend's load-balancing algorithm (HAProxy's `balance`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// Each server in turn, by weight. HAProxy limits it to 4095 active servers per backend.
    #[default]
    Roundrobin,
    /// The server with the fewest connections: good for long-lived connections.
    Leastconn,
    /// A hash of the client address: a client sticks to one server while the set is stable.
    Source,
    /// The first server (lowest slot) with free connection slots.
    First,
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Roundrobin => "roundrobin",
            Self::Leastconn => "leastconn",
            Self::Source => "source",
            Self::First => "first",
        })
    }
}

/// Timeouts of the `defaults` section. Edges pass TCP through, so the client and server
/// timeouts only cover the start of a connection; once both sides are connected the
/// `tunnel` timeout governs idle connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Time to establish a connection to an endpoint. Default `5s`.
    pub connect: ConfigDuration,
    /// Client inactivity before the tunnel is set up. Default `1m`.
    pub client: ConfigDuration,
    /// Server inactivity before the tunnel is set up. Default `1m`.
    pub server: ConfigDuration,
    /// Inactivity on an established connection, both ways. Default `1h`.
    pub tunnel: ConfigDuration,
    /// Inactivity after the client closed its side. Default `30s`.
    pub client_fin: ConfigDuration,
    /// Inactivity after the server closed its side. Default `30s`.
    pub server_fin: ConfigDuration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: ConfigDuration::from_secs(5),
            client: ConfigDuration::from_mins(1),
            server: ConfigDuration::from_mins(1),
            tunnel: ConfigDuration::from_mins(60),
            client_fin: ConfigDuration::from_secs(30),
            server_fin: ConfigDuration::from_secs(30),
        }
    }
}

/// TCP health checks of the endpoints (`check inter … fall … rise …`). With PROXY protocol
/// on, checks send a PROXY header too (`check-send-proxy`), as the endpoints expect one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheck {
    /// Check endpoints at all. Default `true`; without checks a dead endpoint keeps getting
    /// traffic until the cluster removes it.
    pub enabled: bool,
    /// Time between two checks. Default `2s`.
    pub interval: ConfigDuration,
    /// Time a check may take (`timeout check`). Default `5s`.
    pub timeout: ConfigDuration,
    /// Failed checks in a row that take an endpoint out. Default `3`.
    pub fall: u32,
    /// Passed checks in a row that bring it back. Default `2`.
    pub rise: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: ConfigDuration::from_secs(2),
            timeout: ConfigDuration::from_secs(5),
            fall: 3,
            rise: 2,
        }
    }
}

/// How many server slots each backend gets.
///
/// A backend has room for its endpoints plus at least `min_spare` disabled slots, rounded
/// up to a multiple of `block`, so endpoints can come and go through HAProxy's runtime API
/// without a reload and the slot count changes rarely. It grows as soon as that room is
/// missing, and shrinks only when more than one whole block would be left over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlotOptions {
    /// Disabled slots kept beyond the endpoints. Default `4`.
    pub min_spare: u32,
    /// Slot counts are multiples of this. Default `8`.
    pub block: u32,
}

impl Default for SlotOptions {
    fn default() -> Self {
        Self {
            min_spare: 4,
            block: 8,
        }
    }
}

/// Upper bound on `slots.min_spare` and `slots.block`: far beyond any real backend, low
/// enough that a typo cannot make a config of millions of lines.
pub const MAX_SLOT_SETTING: u32 = 100_000;

impl RenderOptions {
    /// Checks every value for something HAProxy would reject or that could break the config.
    /// [`HaproxyRenderer::new`](crate::HaproxyRenderer::new) calls it.
    pub fn validate(&self) -> Result<()> {
        validate_socket_dirs(&self.socket_dirs)?;
        check_socket_path("stats_socket", &self.stats_socket, &self.socket_dirs)?;
        if let Some(run_as) = &self.run_as {
            run_as.validate()?;
        }
        if let Some(log) = &self.log {
            log.validate()?;
        }
        let durations = [
            ("hard_stop_after", self.hard_stop_after),
            ("timeouts.connect", self.timeouts.connect),
            ("timeouts.client", self.timeouts.client),
            ("timeouts.server", self.timeouts.server),
            ("timeouts.tunnel", self.timeouts.tunnel),
            ("timeouts.client_fin", self.timeouts.client_fin),
            ("timeouts.server_fin", self.timeouts.server_fin),
            ("health_check.interval", self.health_check.interval),
            ("health_check.timeout", self.health_check.timeout),
        ];
        for (what, d) in durations {
            if d.as_millis() == 0 || d.as_millis() > MAX_HAPROXY_MILLIS {
                return Err(Error::InvalidInput {
                    what: "duration setting",
                    value: format!("{what}: {d}"),
                    reason: "use a duration between 1ms and 24d (HAProxy's timer limit)".to_owned(),
                });
            }
        }
        let counts = [
            ("maxconn", self.maxconn.unwrap_or(1), 1, i32::MAX as u32),
            ("health_check.fall", self.health_check.fall, 1, 1_000),
            ("health_check.rise", self.health_check.rise, 1, 1_000),
            ("slots.block", self.slots.block, 1, MAX_SLOT_SETTING),
            ("slots.min_spare", self.slots.min_spare, 0, MAX_SLOT_SETTING),
        ];
        for (what, value, min, max) in counts {
            if !(min..=max).contains(&value) {
                return Err(Error::InvalidInput {
                    what: "number setting",
                    value: format!("{what}: {value}"),
                    reason: format!("use a whole number between {min} and {max}"),
                });
            }
        }
        Ok(())
    }

    /// Checks `node` as the renderer will use it: its names and addresses, and every one of
    /// its `extra_binds`, also on listen ports no service uses yet (a bad one would otherwise
    /// fail only when a service appears there, freezing the edge at that moment).
    pub fn validate_node(&self, node: &EdgeNode) -> Result<()> {
        node.validate().map_err(|source| Error::Validation {
            object: format!("edge node {}", edgelb_core::text::quoted(&node.name)),
            source,
        })?;
        for (port, binds) in &node.extra_binds {
            if *port == 0 {
                return Err(Error::InvalidInput {
                    what: "extra_binds listen port",
                    value: "0".to_owned(),
                    reason: format!("of node {}: use a port between 1 and 65535", node.name),
                });
            }
            for bind in binds {
                bind_address(bind, &node.name, *port, &self.socket_dirs)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_yaml_gives_the_defaults() {
        let opts: RenderOptions = serde_yaml_ng::from_str("{}").unwrap();
        assert_eq!(opts, RenderOptions::default());
        opts.validate().unwrap();
    }

    #[test]
    fn yaml_reads_well_and_round_trips() {
        let yaml = "\
template_dir: /etc/edgelb/templates
stats_socket: /run/haproxy/admin.sock
hard_stop_after: 30m
maxconn: null
balance: leastconn
timeouts: { connect: 3s, tunnel: 2h }
health_check: { enabled: false, interval: 500ms }
slots: { min_spare: 0, block: 1 }
";
        let opts: RenderOptions = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(opts.balance, Balance::Leastconn);
        assert_eq!(opts.maxconn, None);
        assert_eq!(opts.timeouts.connect.as_millis(), 3_000);
        assert_eq!(opts.timeouts.client, Timeouts::default().client);
        assert_eq!(opts.health_check.interval.as_millis(), 500);
        assert!(!opts.health_check.enabled);
        opts.validate().unwrap();
        let again: RenderOptions =
            serde_yaml_ng::from_str(&serde_yaml_ng::to_string(&opts).unwrap()).unwrap();
        assert_eq!(again, opts);
    }

    #[test]
    fn unknown_fields_are_rejected_at_every_level() {
        for yaml in [
            "balanse: first",
            "timeouts: { conect: 5s }",
            "health_check: { intervall: 5s }",
            "slots: { spare: 3 }",
        ] {
            let err = serde_yaml_ng::from_str::<RenderOptions>(yaml).unwrap_err();
            assert!(err.to_string().contains("unknown field"), "{yaml}: {err}");
        }
        let err = serde_yaml_ng::from_str::<RenderOptions>("balance: random").unwrap_err();
        assert!(err.to_string().contains("roundrobin"), "{err}");
    }

    #[test]
    fn validation_names_the_setting() {
        type Change = Box<dyn Fn(&mut RenderOptions)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|o| o.stats_socket = "relative.sock".into()),
                "stats_socket",
            ),
            (
                Box::new(|o| o.stats_socket = "/run/a b.sock".into()),
                "stats_socket",
            ),
            (
                Box::new(|o| o.stats_socket = "/run/x\nlisten".into()),
                "stats_socket",
            ),
            (
                Box::new(|o| o.stats_socket = format!("/run/haproxy/{}", "a".repeat(100))),
                "stats_socket",
            ),
            (
                Box::new(|o| o.stats_socket = "/etc/passwd".into()),
                "stats_socket",
            ),
            (
                Box::new(|o| o.socket_dirs = vec!["/".into()]),
                "socket_dirs",
            ),
            (
                Box::new(|o| o.log.as_mut().unwrap().facility = "local9".into()),
                "log.facility",
            ),
            (
                Box::new(|o| o.run_as.as_mut().unwrap().user = "root\nchroot /".into()),
                "run_as.user",
            ),
            (
                Box::new(|o| o.timeouts.connect = ConfigDuration::from_millis(0)),
                "timeouts.connect",
            ),
            (
                Box::new(|o| o.timeouts.tunnel = "30d".parse().unwrap()),
                "timeouts.tunnel",
            ),
            (Box::new(|o| o.maxconn = Some(0)), "maxconn"),
            (Box::new(|o| o.health_check.rise = 0), "health_check.rise"),
            (Box::new(|o| o.slots.block = 0), "slots.block"),
            (
                Box::new(|o| o.slots.min_spare = 1_000_000),
                "slots.min_spare",
            ),
        ];
        for (change, name) in cases {
            let mut opts = RenderOptions::default();
            change(&mut opts);
            let err = opts.validate().unwrap_err().to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
    }
}
