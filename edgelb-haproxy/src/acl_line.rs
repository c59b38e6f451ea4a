//! edgelb's source ACL lines in `haproxy.cfg` (`spec.loadBalancerSourceRanges`), read
//! apart: what the renderer writes (`render/acl.rs`), the live file's reader takes apart
//! (`live_file.rs`) and the runtime API replaces (`cli/acl.rs`).
//!
//! ```text
//!     acl edgelb_source_allowed src -u 1000443000 10.0.0.0/8 192.168.0.0/16 …
//! ```

use std::collections::BTreeMap;

use edgelb_core::IpNet;

/// The name of the ACL that holds a frontend's allowed source ranges.
pub const SOURCE_ACL_NAME: &str = "edgelb_source_allowed";

/// The source ACL lines of a config: pattern-list id → ranges, in file order of the ranges.
pub type SourceAcls = BTreeMap<u32, Vec<IpNet>>;

/// If `words` (a config line split on whitespace) is one of edgelb's source ACL lines
/// (`acl edgelb_source_allowed src -u ID RANGE…`): its id and its ranges as written.
fn parse_line<'a>(words: &'a [&'a str]) -> Option<(u32, &'a [&'a str])> {
    match words {
        ["acl", name, "src", "-u", id, ranges @ ..] if *name == SOURCE_ACL_NAME => {
            Some((id.parse().ok()?, ranges))
        }
        _ => None,
    }
}

/// The line as the config's skeleton keeps it (what only a reload can change): an edgelb
/// source ACL line of a frontend without its ranges, which the runtime API can change.
/// `None` for any other line.
pub(crate) fn skeleton_line(section: &str, words: &[&str]) -> Option<String> {
    if section != "frontend" {
        return None;
    }
    let (id, ranges) = parse_line(words)?;
    // Only ranges this module can send; anything else stays in the skeleton whole.
    ranges
        .iter()
        .all(|r| r.parse::<IpNet>().is_ok())
        .then(|| format!("acl {SOURCE_ACL_NAME} src -u {id}"))
}

/// If `words` (a line of a frontend) is one of edgelb's source ACL lines whose ranges all
/// parse: its id and its ranges, for the live file's reader.
pub(crate) fn ranges_of_line(words: &[&str]) -> Option<(u32, Vec<IpNet>)> {
    let (id, ranges) = parse_line(words)?;
    let ranges = ranges
        .iter()
        .map(|r| r.parse())
        .collect::<Result<_, _>>()
        .ok()?;
    Some((id, ranges))
}
