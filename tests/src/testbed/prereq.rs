//! What the testbed needs from the machine, and what a test does when it is missing:
//! fail with the package to install when `CI` is set, skip with a message otherwise.

use super::sys::find_program;

/// Programs the testbed runs, with the Debian package that provides each.
const PROGRAMS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("haproxy", "haproxy"),
    ("/usr/sbin/sshd", "openssh-server"),
    ("/usr/lib/openssh/sftp-server", "openssh-sftp-server"),
    ("ssh-keygen", "openssh-client"),
    ("ssh", "openssh-client"),
    ("unshare", "util-linux"),
    ("nsenter", "util-linux"),
    ("mount", "mount"),
    ("nft", "nftables"), // link faults (packet loss, a cut link)
];

/// Everything missing, one line each (empty when the testbed can run).
pub fn missing() -> Vec<String> {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push(
            "root (network namespaces, bridges and mounts need it; run the tests as root)"
                .to_owned(),
        );
    }
    let mut packages: Vec<&str> = Vec::new();
    for (program, package) in PROGRAMS {
        if find_program(program).is_none() && !packages.contains(package) {
            packages.push(package);
            missing.push(format!("{program} (apt-get install -y {package})"));
        }
    }
    // Rendered configs run HAProxy's workers as user haproxy in a chroot; Debian's haproxy
    // package creates both (each edge mounts its own empty directory over the chroot).
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    if !passwd.lines().any(|l| l.starts_with("haproxy:"))
        || !std::path::Path::new("/var/lib/haproxy").is_dir()
    {
        missing
            .push("the haproxy user and /var/lib/haproxy (apt-get install -y haproxy)".to_owned());
    }
    missing
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Whether testbed tests run here: `true` when everything is present. Otherwise prints why
/// and returns `false` (skip), or panics when the `CI` environment variable is set, so CI
/// never passes by skipping.
pub fn ready_or_skip(test: &str) -> bool {
    let missing = missing();
    if missing.is_empty() {
        return true;
    }
    report(test, &missing.join("; "))
}

/// The skip-or-fail decision for a reason found later (e.g. the kernel refuses a netns).
pub fn report(test: &str, why: &str) -> bool {
    let message = format!("testbed test {test} cannot run: missing {why}");
    if std::env::var_os("CI").is_some() {
        panic!(
            "{message}. CI is set, so this is a failure, not a skip: install what is named above (scripts/test does)."
        );
    }
    eprintln!("SKIPPED: {message}");
    false
}
