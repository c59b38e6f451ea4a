//! The one reader of the haproxy.cfg edgelb writes.
//!
//! A deploy reads the live file of an edge once, and the config it brings once, into a
//! [`LiveFile`]; every later step takes what it needs from that value: the digest comparison,
//! the listen-port check, the runtime path (servers, and the source ranges of frontends) and
//! the drift repair. The renderer's slot seeding
//! reads a live file's server slots the same way.
//!
//! What a server line means, the same after a reload and after the runtime path:
//! * `disabled` → admin state maintenance (`set server B/S state maint`);
//! * otherwise admin state ready (`set server B/S state ready`);
//! * `weight N` → user weight N, no `weight` → HAProxy's default 1 (`set server B/S weight
//!   N`); a draining endpoint is rendered `weight 0`: it keeps its connections and gets no
//!   new ones.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use edgelb_core::{Digest, RenderedConfig, live_digest_of};

use crate::acl_line::{self, SourceAcls};
use crate::config_sections::{SECTION_KEYWORDS, ports_of};
use crate::deploy::listen_addresses::{Bound, bound_by};

/// HAProxy's weight for a server line without `weight`.
pub const DEFAULT_WEIGHT: u32 = 1;

/// What one server line of a backend asks for (see the module docs for what each part means
/// to HAProxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSlot {
    /// Backend name (one allocation per backend, shared by its slots: a file of 5,000
    /// backends has tens of thousands of slots).
    pub backend: Arc<str>,
    /// Server (slot) name.
    pub server: String,
    /// Address and port.
    pub addr: SocketAddr,
    /// `disabled`: in maintenance.
    pub maint: bool,
    /// The user weight (`weight N`, else HAProxy's default, 1).
    pub weight: u32,
}

/// A haproxy.cfg, read once: what the deploy's steps need to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiveFile {
    /// The digest the file really has ([`live_digest_of`]); `None` without a digest line.
    pub(crate) digest: Option<Digest>,
    /// edgelb wrote it and nobody edited it since: only such a file says what edgelb put
    /// live ([`edgelb_core::is_edgelbs_own`]).
    pub(crate) own: bool,
    /// Every meaningful line, with server lines of backends reduced to their name and the
    /// options the runtime API cannot set; comments and blank lines are left out (HAProxy
    /// ignores them). Two files with the same skeleton differ only in what the runtime API
    /// can change. One text, a line per `\n`-ended line: a file of 100,000 lines in one
    /// allocation, not one per line.
    pub(crate) skeleton: String,
    /// The server lines of backends, in file order.
    pub(crate) servers: Vec<ServerSlot>,
    /// The source ACL lines of frontends (`spec.loadBalancerSourceRanges`), by pattern-list
    /// id; like server lines, the skeleton keeps only their id (see [`crate::acl_line`]).
    pub(crate) source_acls: SourceAcls,
    /// The path of the first `stats socket` in `global`, when it is a UNIX socket path.
    pub(crate) stats_socket: Option<String>,
    /// Every TCP port the `bind` lines listen on.
    pub(crate) bind_ports: BTreeSet<u16>,
    /// Every TCP address and port the `bind` lines take (`None`: every address), for the
    /// listen-port check.
    pub(crate) binds: BTreeSet<Bound>,
    /// Backends with a `server` line this reader cannot take apart (no `ADDR:PORT`, a weight
    /// that is not a number): such a line stays whole in the skeleton.
    pub(crate) odd_backends: BTreeSet<String>,
}

/// Why a change cannot go through the runtime API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NotRuntime {
    /// A line other than a server's address, state or weight differs.
    #[error("the config changed outside server addresses and states: {live:?} became {new:?}")]
    Structure {
        /// The first differing line of the live file (`<end>` past its end).
        live: String,
        /// The same line of the new file.
        new: String,
    },
    /// There is no runtime API socket to talk to.
    #[error("the config has no `stats socket /path` in global")]
    NoStatsSocket,
}

impl LiveFile {
    /// Reads a config file's bytes (lossily, when they are not UTF-8: such a file is never
    /// edgelb's own).
    pub(crate) fn parse(bytes: &[u8]) -> Self {
        let digest = live_digest_of(bytes);
        let text = String::from_utf8_lossy(bytes);
        let own = digest.is_some() && Digest::from_config_text(&text) == digest;
        Self::read(&text, digest, own)
    }

    /// Reads a config a renderer just made: its digest is known, so it is not hashed again.
    pub(crate) fn of_rendered(config: &RenderedConfig) -> Self {
        Self::read(&config.text, Some(config.digest), true)
    }

    /// Reads `text`, whose digest and own-ness are known.
    fn read(text: &str, digest: Option<Digest>, own: bool) -> Self {
        let mut file = Self {
            digest,
            own,
            skeleton: String::new(),
            servers: Vec::new(),
            source_acls: SourceAcls::new(),
            stats_socket: None,
            bind_ports: BTreeSet::new(),
            binds: BTreeSet::new(),
            odd_backends: BTreeSet::new(),
        };
        let mut section = "";
        let mut backend: Option<Arc<str>> = None;
        for raw in text.lines() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            if let Some(&first) = words.first()
                && SECTION_KEYWORDS.contains(&first)
            {
                section = first;
                backend = (first == "backend")
                    .then(|| words.get(1).map(|&name| Arc::from(name)))
                    .flatten();
            }
            file.read_line(section, backend.as_ref(), &words);
        }
        // Growth by doubling leaves up to half of each unused; the file is kept for a
        // whole deploy, and a host's cache keeps one for longer.
        file.skeleton.shrink_to_fit();
        file.servers.shrink_to_fit();
        file
    }

    /// Appends one line to the skeleton.
    fn push_skeleton(&mut self, line: std::fmt::Arguments<'_>) {
        use std::fmt::Write;
        // Writing to a String does not fail.
        let _ = writeln!(self.skeleton, "{line}");
    }

    /// The skeleton, line by line.
    pub(crate) fn skeleton_lines(&self) -> std::str::Lines<'_> {
        self.skeleton.lines()
    }

    /// Takes one meaningful line of `section` (of backend `backend`) apart.
    fn read_line(&mut self, section: &str, backend: Option<&Arc<str>>, words: &[&str]) {
        match words {
            ["stats", "socket", path, ..]
                if section == "global" && self.stats_socket.is_none() && path.starts_with('/') =>
            {
                self.stats_socket = Some((*path).to_owned());
            }
            ["bind", addresses, ..] if !section.is_empty() => {
                self.bind_ports
                    .extend(addresses.split(',').flat_map(ports_of));
                self.binds.extend(bound_by(addresses));
            }
            ["server", ..] => {
                if let Some(be) = backend {
                    match server_line(be, words) {
                        Some((slot, rest)) => {
                            self.push_skeleton(format_args!("server {} {rest}", slot.server));
                            self.servers.push(slot);
                            return;
                        }
                        None => {
                            self.odd_backends.insert(be.to_string());
                        }
                    }
                }
            }
            ["acl", ..] if section == "frontend" => {
                // Source ranges are runtime-API material too.
                if let (Some(line), Some((id, ranges))) = (
                    acl_line::skeleton_line(section, words),
                    acl_line::ranges_of_line(words),
                ) {
                    self.push_skeleton(format_args!("{line}"));
                    self.source_acls.insert(id, ranges);
                    return;
                }
            }
            _ => {}
        }
        let mut words = words.iter();
        if let Some(first) = words.next() {
            self.skeleton.push_str(first);
        }
        for word in words {
            self.skeleton.push(' ');
            self.skeleton.push_str(word);
        }
        self.skeleton.push('\n');
    }

    /// `Ok` when `new` differs from this file only in what the runtime API can change (server
    /// addresses, states and weights, and the source ranges of frontends) and has a stats socket to change it through.
    pub(crate) fn endpoint_only_change_to(&self, new: &LiveFile) -> Result<(), NotRuntime> {
        if self.skeleton != new.skeleton {
            let first = self
                .skeleton_lines()
                .zip(new.skeleton_lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| {
                    self.skeleton_lines()
                        .count()
                        .min(new.skeleton_lines().count())
                });
            let show = |file: &LiveFile| {
                file.skeleton_lines()
                    .nth(first)
                    .map_or_else(|| "<end>".to_owned(), str::to_owned)
            };
            return Err(NotRuntime::Structure {
                live: show(self),
                new: show(new),
            });
        }
        if new.stats_socket.is_none() {
            return Err(NotRuntime::NoStatsSocket);
        }
        Ok(())
    }
}

/// Parses `server NAME ADDR:PORT options…`: the slot, and the options without the ones the
/// runtime API sets (`disabled`, `enabled`, `weight N`). `None` for anything else (such a
/// line stays in the skeleton whole).
fn server_line(backend: &Arc<str>, words: &[&str]) -> Option<(ServerSlot, String)> {
    let [_server, name, addr, options @ ..] = words else {
        return None;
    };
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
            backend: Arc::clone(backend),
            server: (*name).to_owned(),
            addr,
            maint,
            weight,
        },
        rest.join(" "),
    ))
}

#[cfg(test)]
mod tests {
    use edgelb_core::RenderedConfig;

    use super::*;

    const LIVE: &str = "# edgelb-digest: sha256:00\n# comment\n\nglobal\n    master-worker\n    stats socket /run/haproxy/admin.sock mode 660 level admin\n\nfrontend fe_80\n    bind :80\n    bind ipv6@:443,10.0.0.1:8443\n    default_backend be_a\n\n# be_a: 1 of 4 slots in use\nbackend be_a\n    balance roundrobin\n    server s001 10.0.0.1:80 check send-proxy-v2\n    server s002 10.0.0.2:80 check send-proxy-v2 weight 0\n    server s003 127.0.0.1:1 check send-proxy-v2 disabled\n    server s004 [fd00::4]:8443 check send-proxy-v2\n";

    fn parse(text: &str) -> LiveFile {
        LiveFile::parse(text.as_bytes())
    }

    #[test]
    fn splits_servers_from_the_skeleton() {
        let file = parse(LIVE);
        assert_eq!(
            file.stats_socket.as_deref(),
            Some("/run/haproxy/admin.sock")
        );
        assert_eq!(file.servers.len(), 4);
        assert_eq!(file.servers[1].weight, 0);
        assert!(!file.servers[1].maint);
        assert!(file.servers[2].maint);
        assert_eq!(file.servers[3].addr, "[fd00::4]:8443".parse().unwrap());
        assert!(
            file.skeleton_lines()
                .any(|l| l == "server s002 check send-proxy-v2")
        );
        assert!(file.skeleton_lines().all(|l| !l.starts_with('#')));
        assert_eq!(file.bind_ports, [80, 443, 8443].into());
        assert!(file.odd_backends.is_empty());
    }

    #[test]
    fn only_an_unedited_file_with_a_digest_line_is_edgelbs_own() {
        let rendered = RenderedConfig::from_body(LIVE.split_once('\n').unwrap().1.to_owned());
        let file = parse(&rendered.text);
        assert_eq!((file.digest, file.own), (Some(rendered.digest), true));
        let edited = parse(
            &rendered
                .text
                .replace("balance roundrobin", "balance source"),
        );
        assert!(edited.digest.is_some() && edited.digest != Some(rendered.digest));
        assert!(!edited.own);
        let foreign = parse("global\n    master-worker\n");
        assert_eq!((foreign.digest, foreign.own), (None, false));
        let not_utf8 = LiveFile::parse(b"# edgelb-digest: sha256:00\n\xff\n");
        assert_eq!((not_utf8.digest, not_utf8.own), (None, false));
    }

    #[test]
    fn a_rendered_config_reads_as_the_same_file_on_the_edge() {
        let rendered = RenderedConfig::from_body(LIVE.split_once('\n').unwrap().1.to_owned());
        assert_eq!(
            LiveFile::of_rendered(&rendered),
            LiveFile::parse(rendered.text.as_bytes())
        );
    }

    #[test]
    fn a_server_line_it_cannot_take_apart_marks_its_backend() {
        let file = parse(
            "backend be_x\n    server web1 db.example:80\n    server web2 10.0.0.1:80 weight x\n",
        );
        assert!(file.servers.is_empty());
        assert_eq!(file.odd_backends, ["be_x".to_owned()].into());
        assert!(
            file.skeleton_lines()
                .any(|l| l == "server web1 db.example:80")
        );
    }

    #[test]
    fn endpoint_only_changes_are_runtime_material() {
        // Comments (the digest, the slot count) change with the endpoints: ignored.
        let new = LIVE
            .replace("sha256:00", "sha256:11")
            .replace("1 of 4", "2 of 4")
            .replace(
                "127.0.0.1:1 check send-proxy-v2 disabled",
                "10.0.0.3:81 check send-proxy-v2",
            )
            .replace(
                "10.0.0.2:80 check send-proxy-v2 weight 0",
                "10.0.0.2:80 check send-proxy-v2",
            );
        let new = parse(&new);
        assert_eq!(parse(LIVE).endpoint_only_change_to(&new), Ok(()));
        assert_eq!(new.servers[1].weight, 1);
        assert_eq!(new.servers[2].addr, "10.0.0.3:81".parse().unwrap());
        assert!(!new.servers[2].maint);
    }

    #[test]
    fn anything_else_needs_a_reload() {
        let live = parse(LIVE);
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
            let err = live.endpoint_only_change_to(&parse(&new)).unwrap_err();
            assert!(matches!(err, NotRuntime::Structure { .. }), "{err}");
            assert!(err.to_string().contains("changed outside"), "{err}");
        }
        let no_socket = parse(&LIVE.replace(
            "stats socket /run/haproxy/admin.sock",
            "stats socket ipv4@:9999",
        ));
        assert_eq!(
            no_socket.endpoint_only_change_to(&no_socket),
            Err(NotRuntime::NoStatsSocket)
        );
    }
}
