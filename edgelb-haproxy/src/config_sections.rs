//! The sections of a haproxy.cfg (`global`, `defaults`, `frontend NAME`, `backend NAME`, …)
//! with their line spans and the TCP ports their `bind` lines listen on: what the deploy's
//! listen-port check and the blame of a refused config need to know about a file.

use std::collections::BTreeSet;

/// Binds of one line that name a port range wider than this are left out of the port check
/// (a range that wide is a deliberate choice of a hand-written template, and the check would
/// otherwise build huge sets).
const MAX_RANGE: u32 = 1024;

/// One section of a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section<'a> {
    /// `global`, `defaults`, `frontend`, `backend`, `listen`, …
    pub kind: &'a str,
    /// The section's name (`""` for `global` and unnamed `defaults`).
    pub name: &'a str,
    /// Its first line (the keyword line), 1-based as HAProxy counts.
    pub first_line: usize,
    /// Its last line, 1-based.
    pub last_line: usize,
    /// TCP ports its `bind` lines listen on.
    pub bind_ports: BTreeSet<u16>,
}

/// The keywords that open a section.
const SECTION_KEYWORDS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "resolvers",
    "peers",
    "userlist",
    "program",
    "http-errors",
    "ring",
    "cache",
    "mailers",
];

/// Splits `text` into sections; lines before the first section belong to none.
pub(crate) fn sections(text: &str) -> Vec<Section<'_>> {
    let mut out: Vec<Section<'_>> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else {
            continue;
        };
        if first.starts_with('#') {
            continue;
        }
        if !line.starts_with(char::is_whitespace) && SECTION_KEYWORDS.contains(&first) {
            if let Some(last) = out.last_mut() {
                last.last_line = number - 1;
            }
            out.push(Section {
                kind: first,
                name: words.next().unwrap_or(""),
                first_line: number,
                last_line: number,
                bind_ports: BTreeSet::new(),
            });
            continue;
        }
        let Some(section) = out.last_mut() else {
            continue;
        };
        section.last_line = number;
        if first == "bind"
            && let Some(addresses) = words.next()
        {
            section
                .bind_ports
                .extend(addresses.split(',').flat_map(ports_of));
        }
    }
    out
}

/// Every TCP port the `bind` lines of `text` listen on.
pub(crate) fn bind_ports(text: &str) -> BTreeSet<u16> {
    sections(text)
        .into_iter()
        .flat_map(|s| s.bind_ports)
        .collect()
}

/// The TCP ports of one bind address (`:443`, `*:443`, `10.0.0.1:443`, `[::]:443`,
/// `ipv6@:443`, `:8000-8010`); none for UNIX sockets, inherited descriptors and the like.
pub(crate) fn ports_of(address: &str) -> Vec<u16> {
    let rest = match address.split_once('@') {
        Some(("ipv4" | "ipv6" | "tcp" | "tcp4" | "tcp6", rest)) => rest,
        Some(_) => return Vec::new(), // unix@, abns@, fd@, sockpair@, udp@…
        None if address.starts_with('/') => return Vec::new(),
        None => address,
    };
    let Some((_, ports)) = rest.rsplit_once(':') else {
        return Vec::new();
    };
    let one = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0);
    match ports.split_once('-') {
        Some((low, high)) => match (one(low), one(high)) {
            (Some(l), Some(h)) if l <= h && u32::from(h - l) < MAX_RANGE => (l..=h).collect(),
            _ => Vec::new(),
        },
        None => one(ports).into_iter().collect(),
    }
}

/// The section holding line `line` (1-based), if any.
pub(crate) fn section_at<'s, 'a>(
    sections: &'s [Section<'a>],
    line: usize,
) -> Option<&'s Section<'a>> {
    sections
        .iter()
        .find(|s| (s.first_line..=s.last_line).contains(&line))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "# edgelb-digest: sha256:00\n\nglobal\n    master-worker\n\ndefaults\n    mode tcp\n\n# a/b port https\nfrontend fe_443\n    bind :443\n    bind ipv6@:443,10.0.0.1:8443\n    bind /run/x.sock\n    default_backend be_a_b_https\n\nbackend be_a_b_https\n    server s001 10.0.0.2:80\n";

    #[test]
    fn sections_have_their_lines_and_bind_ports() {
        let s = sections(CFG);
        let kinds: Vec<(&str, &str, usize, usize)> = s
            .iter()
            .map(|s| (s.kind, s.name, s.first_line, s.last_line))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("global", "", 3, 5),
                ("defaults", "", 6, 9),
                ("frontend", "fe_443", 10, 15),
                ("backend", "be_a_b_https", 16, 17),
            ]
        );
        assert_eq!(s[2].bind_ports, [443, 8443].into());
        assert_eq!(section_at(&s, 12).map(|s| s.name), Some("fe_443"));
        assert_eq!(section_at(&s, 1), None);
        assert_eq!(bind_ports(CFG), [443, 8443].into());
    }

    #[test]
    fn bind_addresses_of_every_form() {
        assert_eq!(ports_of("*:80"), vec![80]);
        assert_eq!(ports_of("[::1]:80"), vec![80]);
        assert_eq!(ports_of("ipv4@0.0.0.0:81"), vec![81]);
        assert_eq!(ports_of(":8000-8002"), vec![8000, 8001, 8002]);
        assert!(ports_of(":1-65535").is_empty(), "too wide to check");
        assert!(ports_of("unix@/run/a.sock").is_empty());
        assert!(ports_of("fd@3").is_empty());
        assert!(ports_of(":0").is_empty());
        assert!(ports_of("garbage").is_empty());
    }
}
