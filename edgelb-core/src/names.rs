//! Validation of names that end up in rendered configs and on edge nodes.
//!
//! Every name that reaches a config file, a remote path or a command goes through
//! [`validate_name`] first. The allowed alphabet (`A-Z a-z 0-9 . -`, starting and ending
//! with a letter or digit) covers Kubernetes object names (RFC 1123 subdomains) and IANA
//! service names, and leaves no room for whitespace, quotes, `#`, newlines or non-ASCII.

use crate::error::{Error, Result};

/// The longest name accepted (the Kubernetes limit for object names).
pub const MAX_NAME_LEN: usize = 253;

/// Checks that `value` is a safe name for `kind` (used in the error message).
///
/// ```
/// use edgelb_core::names::validate_name;
/// assert!(validate_name("service name", "traefik").is_ok());
/// assert!(validate_name("service name", "web\nbind :1").is_err());
/// ```
pub fn validate_name(kind: &'static str, value: &str) -> Result<()> {
    let fail = |reason: &str| {
        Err(Error::InvalidName {
            kind,
            value: value.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if value.is_empty() {
        return fail("it is empty");
    }
    if value.len() > MAX_NAME_LEN {
        return fail("it is longer than 253 characters");
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return fail(&format!(
            "character {bad:?} is not allowed; use ASCII letters, digits, '-' and '.'"
        ));
    }
    let first_last_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_last_ok(value.chars().next()) || !first_last_ok(value.chars().last()) {
        return fail("it must start and end with a letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kubernetes_names() {
        for ok in ["a", "kube-system", "traefik", "web.v2", "Http", "x1-2.y"] {
            assert!(validate_name("name", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_anything_that_could_inject() {
        for bad in [
            "", "-a", "a-", ".a", "a b", "a\nb", "a#b", "a\"b", "a'b", "é", "a_b", "a/b", "a;b",
            "a$b", "a`b",
        ] {
            let err = validate_name("service name", bad).unwrap_err();
            assert!(err.to_string().contains("invalid service name"), "{err}");
        }
        assert!(validate_name("name", &"a".repeat(254)).is_err());
    }

    #[test]
    fn a_huge_or_forged_name_makes_a_short_single_line_error() {
        let huge = format!(
            "web\n2026-01-01T00:00:00Z INFO forged{}",
            "a".repeat(50 << 20)
        );
        let err = validate_name("service name", &huge)
            .unwrap_err()
            .to_string();
        assert!(err.len() < 500, "{} bytes", err.len());
        assert!(!err.contains('\n') && err.contains(r"web\n2026"), "{err}");
        assert!(err.contains("bytes in all"), "{err}");
    }
}
