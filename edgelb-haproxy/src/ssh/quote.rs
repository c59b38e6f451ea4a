//! Shell quoting for remote command lines.
//!
//! sshd hands the command line of an `exec` request to the login user's shell (`$SHELL -c`),
//! so every argument must reach that shell as one literal word. [`quote`] wraps anything that
//! is not plainly safe in single quotes, inside which a POSIX shell (bash, dash, zsh, ksh)
//! interprets nothing; a single quote itself is written as `'\''` (close, escaped quote,
//! reopen). Arguments holding a NUL byte cannot be passed at all and are refused.

use std::borrow::Cow;

/// Characters that no POSIX shell treats specially anywhere in a word. `=` and `~` are left
/// out on purpose (zsh expands `=cmd`, every shell expands a leading `~`).
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | ',' | '@' | '%' | '+')
}

/// Quotes one argument so a POSIX shell reads it back as exactly `arg`.
///
/// Returns `None` for an argument with a NUL byte, which no command line can carry.
///
/// ```
/// use edgelb_haproxy::ssh::quote;
/// assert_eq!(quote("/etc/haproxy/haproxy.cfg").as_deref(), Some("/etc/haproxy/haproxy.cfg"));
/// assert_eq!(quote("a b").as_deref(), Some("'a b'"));
/// assert_eq!(quote("it's").as_deref(), Some(r"'it'\''s'"));
/// assert_eq!(quote("").as_deref(), Some("''"));
/// ```
pub fn quote(arg: &str) -> Option<Cow<'_, str>> {
    if arg.contains('\0') {
        return None;
    }
    if !arg.is_empty() && arg.chars().all(is_plain) {
        return Some(Cow::Borrowed(arg));
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            out.push_str(r"'\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Some(Cow::Owned(out))
}

/// Joins `argv` into one command line, every element quoted with [`quote`].
///
/// Returns the index of the first argument that cannot be quoted (it holds a NUL byte).
pub fn command_line(argv: &[impl AsRef<str>]) -> Result<String, usize> {
    let mut line = String::new();
    for (i, arg) in argv.iter().enumerate() {
        let quoted = quote(arg.as_ref()).ok_or(i)?;
        if i > 0 {
            line.push(' ');
        }
        line.push_str(&quoted);
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_stay_as_they_are() {
        for w in [
            "haproxy",
            "-c",
            "-f",
            "/etc/haproxy/haproxy.cfg.edgelb-new",
            "a@b:c,d%e+f",
        ] {
            assert_eq!(quote(w).unwrap(), w);
        }
    }

    #[test]
    fn everything_else_is_single_quoted() {
        let cases = [
            ("", "''"),
            ("a b", "'a b'"),
            ("$(id)", "'$(id)'"),
            ("`id`", "'`id`'"),
            ("a;b", "'a;b'"),
            ("a\nb", "'a\nb'"),
            ("~root", "'~root'"),
            ("=ls", "'=ls'"),
            ("*", "'*'"),
            ("x'y", r"'x'\''y'"),
            ("''", r"''\'''\'''"),
            ("é", "'é'"),
        ];
        for (arg, want) in cases {
            assert_eq!(quote(arg).unwrap(), want, "{arg:?}");
        }
    }

    #[test]
    fn nul_is_refused_and_reported_by_position() {
        assert!(quote("a\0b").is_none());
        assert_eq!(command_line(&["ok", "a\0b"]), Err(1));
    }

    #[test]
    fn command_line_joins_quoted_words() {
        let line = command_line(&["cat", "/tmp/a b", "it's"]).unwrap();
        assert_eq!(line, r"cat '/tmp/a b' 'it'\''s'");
    }

    /// The real test: a shell reads each quoted word back as the original bytes.
    #[test]
    fn a_real_shell_reads_the_words_back() {
        let nasty = [
            "plain",
            "",
            "a b",
            "it's",
            "'",
            "\"",
            "\\",
            "$HOME",
            "$(echo pwned)",
            "`echo pwned`",
            "a;echo pwned",
            "a|b&c>d<e",
            "line1\nline2",
            "tab\there",
            "*?[a]",
            "~",
            "!x",
            "#comment",
            "{a,b}",
            "é ü",
        ];
        for shell in ["sh", "bash"] {
            let Ok(path) = which(shell) else { continue };
            // printf '%s\0' prints each argument NUL-terminated, exactly as the shell got it.
            let mut argv = vec!["printf".to_owned(), "%s\\0".to_owned()];
            argv.extend(nasty.iter().map(|s| s.to_string()));
            let line = command_line(&argv).unwrap();
            let out = std::process::Command::new(&path)
                .args(["-c", &line])
                .output()
                .unwrap();
            assert!(out.status.success(), "{shell}: {out:?}");
            let got: Vec<String> = out
                .stdout
                .split(|b| *b == 0)
                .map(|b| String::from_utf8(b.to_vec()).unwrap())
                .collect();
            let mut want: Vec<String> = nasty.iter().map(|s| s.to_string()).collect();
            want.push(String::new()); // after the last NUL
            assert_eq!(got, want, "{shell}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Any string without NUL comes back unchanged through `sh -c`.
        #[test]
        fn any_string_round_trips_through_sh(arg in "[^\\x00]{0,40}") {
            let Ok(sh) = which("sh") else { return Ok(()) };
            let line = command_line(&["printf", "%s", &arg]).unwrap();
            let out = std::process::Command::new(sh).args(["-c", &line]).output().unwrap();
            proptest::prop_assert!(out.status.success());
            proptest::prop_assert_eq!(String::from_utf8(out.stdout).unwrap(), arg);
        }
    }

    fn which(name: &str) -> Result<std::path::PathBuf, ()> {
        for dir in ["/bin", "/usr/bin"] {
            let p = std::path::Path::new(dir).join(name);
            if p.exists() {
                return Ok(p);
            }
        }
        Err(())
    }
}
