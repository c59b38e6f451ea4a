//! What the SSH deployer needs from an edge's `sshd_config`, checkable against the file: the
//! same prerequisites the module docs list, so a test can hold an edge image to them.

/// Settings the deployer depends on: the keyword, the values that work, and why. An absent
/// keyword takes OpenSSH's default, which works for each of them.
pub const SSHD_PREREQUISITES: &[(&str, &[&str], &str)] = &[
    (
        "AllowStreamLocalForwarding",
        &["yes", "all", "local"],
        "HAProxy's master and stats sockets are reached by forwarding to UNIX sockets",
    ),
    (
        "AllowTcpForwarding",
        &["yes", "all", "local"],
        "OpenSSH refuses forwarding to UNIX sockets unless TCP forwarding is allowed too (`local` is enough)",
    ),
    (
        "DisableForwarding",
        &["no"],
        "it turns off every kind of forwarding, UNIX sockets included",
    ),
    (
        "PubkeyAuthentication",
        &["yes"],
        "the deployer logs in with its key only",
    ),
];

/// The prerequisites `text` (an `sshd_config`) breaks, one sentence each; empty when it
/// meets them all. As OpenSSH reads the file, the first value of a keyword counts and
/// keywords are case-insensitive; `Match` blocks (which apply to some connections only) and
/// `Include`d files are not followed.
///
/// ```
/// use edgelb_haproxy::ssh::sshd_config_problems;
/// assert!(sshd_config_problems("AllowTcpForwarding local\n").is_empty());
/// let problems = sshd_config_problems("AllowTcpForwarding no\n");
/// assert!(problems[0].contains("AllowTcpForwarding no"));
/// ```
pub fn sshd_config_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (keyword, good, why) in SSHD_PREREQUISITES {
        let Some(value) = first_value(text, keyword) else {
            continue;
        };
        if !good.iter().any(|g| g.eq_ignore_ascii_case(&value)) {
            problems.push(format!(
                "{keyword} {value}: set it to {} or leave it out: {why}",
                good.join(" or ")
            ));
        }
    }
    problems
}

/// The first value of `keyword` before any `Match` line.
fn first_value(text: &str, keyword: &str) -> Option<String> {
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.splitn(2, |c: char| c.is_whitespace() || c == '=');
        let key = words.next().unwrap_or_default();
        if key.eq_ignore_ascii_case("Match") {
            return None;
        }
        if key.eq_ignore_ascii_case(keyword) {
            let value = words.next().unwrap_or_default();
            let value = value.trim_start_matches(|c: char| c.is_whitespace() || c == '=');
            return value.split_whitespace().next().map(str::to_owned);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_good_values_pass() {
        assert!(sshd_config_problems("").is_empty());
        assert!(
            sshd_config_problems(
                "AllowStreamLocalForwarding yes\nallowtcpforwarding=local\nPubkeyAuthentication yes\n"
            )
            .is_empty()
        );
    }

    #[test]
    fn forwarding_turned_off_is_named_with_the_fix() {
        let problems = sshd_config_problems(
            "# comment\nAllowTcpForwarding no\nAllowTcpForwarding yes\nDisableForwarding yes\n",
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("AllowTcpForwarding no: set it to yes or all or local"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("DisableForwarding yes"),
            "{problems:?}"
        );
    }

    #[test]
    fn match_blocks_are_not_read() {
        assert!(sshd_config_problems("Match User other\n  AllowTcpForwarding no\n").is_empty());
    }
}
