//! Pinned host keys, as OpenSSH `known_hosts` lines (the representation the native SSH
//! deployer reads too), checked and gathered into the file ssh gets as `UserKnownHostsFile`.

use std::path::Path;

use crate::error::{Error, Result};

/// Checks `known_hosts` lines from `sources` (a name for errors, and its text) and returns the
/// file to give ssh. Blank lines and `#` comments are dropped; at least one key is required.
pub(crate) fn known_hosts_file(sources: &[(String, String)]) -> Result<String> {
    let mut out = String::new();
    let mut keys = 0usize;
    for (source, text) in sources {
        for (index, line) in text.split('\n').enumerate() {
            let line = line.trim_end_matches('\r').trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            check_line(line)
                .map_err(|reason| Error::invalid(format!("{source} line {}", index + 1), reason))?;
            out.push_str(line);
            out.push('\n');
            keys += 1;
        }
    }
    if keys == 0 {
        return Err(Error::invalid(
            "pinned host keys",
            "none given; pin each edge's host key with known_hosts_file or known_hosts \
             (lines like `[203.0.113.10]:22 ssh-ed25519 AAAA…`, e.g. from `ssh-keyscan`); \
             unknown keys are never accepted",
        ));
    }
    Ok(out)
}

/// Reads a `known_hosts` file for [`known_hosts_file`].
pub(crate) fn read_source(path: &Path) -> Result<(String, String)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading known_hosts file {}", path.display()), e))?;
    Ok((format!("known_hosts file {}", path.display()), text))
}

/// One line: `[@marker] hosts keytype base64 [comment]`.
fn check_line(line: &str) -> std::result::Result<(), String> {
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err("control characters are not allowed".into());
    }
    let mut fields = line.split_whitespace().peekable();
    if fields.peek().is_some_and(|f| f.starts_with('@')) {
        let marker = fields.next().unwrap_or_default();
        if marker != "@cert-authority" && marker != "@revoked" {
            return Err(format!(
                "unknown marker {marker:?} (known_hosts knows @cert-authority and @revoked)"
            ));
        }
    }
    let (Some(hosts), Some(key_type), Some(key)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err("expected `HOSTS KEYTYPE BASE64-KEY [COMMENT]`".into());
    };
    if hosts.is_empty() {
        return Err("no host pattern".into());
    }
    let known_type = ["ssh-", "ecdsa-sha2-", "sk-", "rsa-sha2-"]
        .iter()
        .any(|prefix| key_type.starts_with(prefix));
    if !known_type {
        return Err(format!(
            "{key_type:?} is not an SSH key type (ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa, …)"
        ));
    }
    if key.len() < 16
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
    {
        return Err("the key is not base64".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHmCZmOO7eh5G3xHbBRlFUK6kH2XnZbC6yq4n6+7a2kO";

    fn one(text: &str) -> Result<String> {
        known_hosts_file(&[("known_hosts".into(), text.into())])
    }

    #[test]
    fn keeps_keys_drops_comments_and_merges_sources() {
        let file = known_hosts_file(&[
            (
                "known_hosts file /etc/edgelb/known_hosts".into(),
                format!("# edges\n\n[10.0.0.1]:2222 {ED25519} root@edge-1\r\n"),
            ),
            (
                "known_hosts".into(),
                format!("|1|c2FsdA==|aG1hYw== {ED25519}\n@revoked * {ED25519}"),
            ),
        ])
        .unwrap();
        assert_eq!(
            file,
            format!(
                "[10.0.0.1]:2222 {ED25519} root@edge-1\n|1|c2FsdA==|aG1hYw== {ED25519}\n@revoked * {ED25519}\n"
            )
        );
    }

    #[test]
    fn refuses_no_keys_and_malformed_lines_with_their_number() {
        let err = one("# nothing\n").unwrap_err().to_string();
        assert!(err.contains("never accepted"), "{err}");
        for (bad, why) in [
            ("edge-1 ssh-ed25519\n", "expected"),
            (
                "edge-1 not-a-type AAAAC3NzaC1lZDI1NTE5AAAAIA\n",
                "not an SSH key type",
            ),
            ("edge-1 ssh-ed25519 AAAA$(id)AAAAAAAAAAAA\n", "base64"),
            (
                "@nonsense edge-1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA\n",
                "marker",
            ),
            (
                "edge-1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA \u{1b}[0m\n",
                "control",
            ),
        ] {
            let err = one(&format!("# first\n{bad}")).unwrap_err().to_string();
            assert!(
                err.contains("line 2") && err.contains(why),
                "{bad:?}: {err}"
            );
        }
    }
}
