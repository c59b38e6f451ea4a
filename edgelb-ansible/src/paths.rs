//! Path checks: every path we hand to Ansible or ssh must be read as a literal by ssh's
//! `-o` parser, Ansible's `shlex` split of `ssh_args`, and ssh's `%` token expansion.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The longest control directory that leaves room for Ansible's 10-character socket name and
/// ssh's 17-character temporary suffix within a UNIX socket path (107 bytes).
pub(crate) const MAX_CONTROL_DIR_LEN: usize = 107 - 1 - 10 - 17;

/// Characters allowed in a path we hand on.
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | '@' | ':' | '=')
}

/// Checks that `path` is plain: letters, digits and `/ . _ - + @ : =` only.
pub(crate) fn check_plain_path(what: &str, path: &Path) -> Result<()> {
    let text = path.to_str().unwrap_or("\u{fffd}");
    if text.is_empty() || !text.chars().all(plain) {
        return Err(Error::invalid(
            format!("{what} {}", path.display()),
            "use a path of letters, digits and / . _ - + @ : = only",
        ));
    }
    Ok(())
}

/// `path` made absolute against the current directory, then checked with
/// [`check_plain_path`].
pub(crate) fn absolute_plain(what: &str, path: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(path)
        .map_err(|e| Error::io(format!("resolving {what} {}", path.display()), e))?;
    check_plain_path(what, &abs)?;
    Ok(abs)
}

/// `path` as UTF-8 (plain paths always are).
pub(crate) fn text(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_only() {
        assert!(check_plain_path("x", Path::new("/tmp/edgelb-ans-Ab12/cp")).is_ok());
        for bad in [
            "/tmp/a b",
            "/tmp/%h",
            "/tmp/a\"b",
            "/tmp/a'b",
            "/tmp/a\nb",
            "",
        ] {
            assert!(check_plain_path("x", Path::new(bad)).is_err(), "{bad:?}");
        }
        let abs = absolute_plain("x", Path::new("rel/key")).unwrap();
        assert!(abs.is_absolute());
    }
}
