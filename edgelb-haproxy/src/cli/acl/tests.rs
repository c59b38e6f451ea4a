use super::*;
use crate::acl_line::{SOURCE_ACL_NAME, skeleton_line};
use crate::live_file::LiveFile;

/// The source ACL lines of frontends in `text`, as the live file's reader takes them.
fn source_acls(text: &str) -> SourceAcls {
    LiveFile::parse(text.as_bytes()).source_acls
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|t| t.parse().unwrap()).collect()
}

const CFG: &str = "\
global
    stats socket /run/haproxy/admin.sock mode 660 level admin

frontend fe_443
    bind :443
    acl edgelb_source_allowed src -u 1000443000 10.0.0.0/8 fd00::/8
    acl edgelb_source_allowed src -u 1000443001 192.168.0.0/16
    tcp-request connection reject if !edgelb_source_allowed
    default_backend be

backend be
    acl edgelb_source_allowed src -u 7 10.0.0.0/8
    server s001 10.42.0.7:8443 id 1
";

#[test]
fn reads_the_source_acls_of_frontends_only() {
    let acls = source_acls(CFG);
    assert_eq!(acls.len(), 2, "{acls:?}");
    assert_eq!(acls[&1_000_443_000], nets(&["10.0.0.0/8", "fd00::/8"]));
    assert_eq!(acls[&1_000_443_001], nets(&["192.168.0.0/16"]));
}

#[test]
fn skeleton_keeps_the_id_and_drops_the_ranges() {
    let words = [
        "acl",
        SOURCE_ACL_NAME,
        "src",
        "-u",
        "1000443000",
        "10.0.0.0/8",
    ];
    assert_eq!(
        skeleton_line("frontend", &words).as_deref(),
        Some("acl edgelb_source_allowed src -u 1000443000")
    );
    assert_eq!(skeleton_line("backend", &words), None);
    // Another ACL, or a pattern this module would not send, stays whole in the skeleton.
    let other = ["acl", "mine", "src", "-u", "1", "10.0.0.0/8"];
    assert_eq!(skeleton_line("frontend", &other), None);
    let injected = [
        "acl",
        SOURCE_ACL_NAME,
        "src",
        "-u",
        "1",
        "10.0.0.0/8;shutdown",
    ];
    assert_eq!(skeleton_line("frontend", &injected), None);
}

#[test]
fn a_ranges_only_change_is_runtime_material_and_an_id_change_is_not() {
    let changed = CFG.replace("192.168.0.0/16", "172.16.0.0/12 192.168.0.0/16");
    let live = LiveFile::parse(CFG.as_bytes());
    let new = LiveFile::parse(changed.as_bytes());
    assert!(live.endpoint_only_change_to(&new).is_ok());
    assert_eq!(new.servers.len(), 1);
    let more_lines = CFG.replace(
        "    tcp-request",
        "    acl edgelb_source_allowed src -u 1000443002 1.2.3.4/32\n    tcp-request",
    );
    let more = LiveFile::parse(more_lines.as_bytes());
    assert!(live.endpoint_only_change_to(&more).is_err());
}

#[test]
fn one_changed_list_is_replaced_directly() {
    let live = source_acls(CFG);
    let new = source_acls(&CFG.replace("fd00::/8", "fc00::/7"));
    let steps = plan(&live, &new);
    assert_eq!(
        steps,
        vec![AclReplacement {
            id: 1_000_443_000,
            ranges: nets(&["10.0.0.0/8", "fc00::/7"])
        }]
    );
    // The same ranges in another order are no change.
    let reordered = source_acls(&CFG.replace("10.0.0.0/8 fd00::/8", "fd00::/8 10.0.0.0/8"));
    assert!(plan(&live, &reordered).is_empty());
}

#[test]
fn a_range_moving_between_lists_is_never_missing() {
    // 10.0.0.0/8 moves from the first list to the second.
    let live = source_acls(CFG);
    let new = source_acls(&CFG.replace("10.0.0.0/8 fd00::/8", "fd00::/8").replace(
        "-u 1000443001 192.168.0.0/16",
        "-u 1000443001 10.0.0.0/8 192.168.0.0/16",
    ));
    let steps = plan(&live, &new);
    assert_eq!(steps.len(), 4, "{steps:?}");
    let moved: IpNet = "10.0.0.0/8".parse().unwrap();
    // Simulate the commits one by one: the range stays in some list at every point.
    let mut running = live.clone();
    for step in &steps {
        running.insert(step.id, step.ranges.clone());
        assert!(running.values().any(|r| r.contains(&moved)), "{running:?}");
    }
    let want: BTreeMap<u32, BTreeSet<IpNet>> = new
        .iter()
        .map(|(id, r)| (*id, r.iter().copied().collect()))
        .collect();
    let got: BTreeMap<u32, BTreeSet<IpNet>> = running
        .iter()
        .map(|(id, r)| (*id, r.iter().copied().collect()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn show_acl_is_parsed_and_garbage_refused() {
    let text = "0x55f9a1523e90 10.0.0.0/8\n0x55f9a1523f30 fd00::/8\n0x55f9a1523f40 127.0.0.1\n\n";
    let got = parse_show_acl(text).unwrap();
    assert_eq!(
        got,
        nets(&["10.0.0.0/8", "fd00::/8", "127.0.0.1/32"])
            .into_iter()
            .collect()
    );
    assert!(parse_show_acl("Unknown ACL identifier. Please use #<id> or <file>.\n").is_err());
    assert!(parse_show_acl("0x1 not-a-range\n").is_err());
    assert!(parse_show_acl("").unwrap().is_empty());
}

#[test]
fn a_plan_splits_into_phases_where_a_list_comes_up_again() {
    let step = |id| AclReplacement {
        id,
        ranges: Vec::new(),
    };
    let steps = [step(1), step(2), step(1), step(2)];
    let got: Vec<Vec<u32>> = phases(&steps)
        .iter()
        .map(|p| p.iter().map(|s| s.id).collect())
        .collect();
    assert_eq!(got, vec![vec![1, 2], vec![1, 2]]);
    assert_eq!(phases(&[step(7)]).len(), 1);
    assert!(phases(&[]).is_empty());
}

#[test]
fn answers_split_at_their_empty_lines() {
    let text = "New version created: 3\n\n\n0x1 10.0.0.0/8\n0x2 fd00::/8\n\n";
    assert_eq!(
        split_answers(text),
        ["New version created: 3", "", "0x1 10.0.0.0/8\n0x2 fd00::/8"]
    );
}
