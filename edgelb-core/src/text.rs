//! User data made safe to print: control characters escaped, long values cut.
//!
//! Values from input files and the cluster end up in error messages and logs. A newline in
//! one would forge a log line in the text format; a 50 MB name would make a 50 MB log line.
//! Every error that carries user data passes it through [`quoted`] (one value) or
//! [`one_line`] (a whole message from a parser that may quote input).
//!
//! ```
//! use edgelb_core::text::{one_line, quoted};
//! assert_eq!(quoted("web\nINFO forged"), r#""web\nINFO forged""#);
//! assert!(quoted(&"a".repeat(10_000)).len() < 200);
//! assert_eq!(one_line("line 1\nline 2"), r"line 1\nline 2");
//! ```

/// The longest value (in characters) an error quotes in full.
pub const MAX_VALUE_CHARS: usize = 120;

/// The longest message (in characters) [`one_line`] keeps.
pub const MAX_MESSAGE_CHARS: usize = 2_000;

/// `value` in double quotes with control characters, quotes and backslashes escaped (as
/// Rust's `{:?}` does), cut after [`MAX_VALUE_CHARS`] characters with a note of its length.
pub fn quoted(value: &str) -> String {
    let (head, cut) = cut_chars(value, MAX_VALUE_CHARS);
    let mut out = format!("{head:?}");
    if cut {
        out.push_str(&format!("… ({} bytes in all)", value.len()));
    }
    out
}

/// `message` on one line: control characters (newlines included) escaped, cut after
/// [`MAX_MESSAGE_CHARS`] characters with a note of its length.
pub fn one_line(message: &str) -> String {
    let (head, cut) = cut_chars(message, MAX_MESSAGE_CHARS);
    let mut out = String::with_capacity(head.len());
    for c in head.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if cut {
        out.push_str(&format!("… ({} bytes in all)", message.len()));
    }
    out
}

/// The first `max` characters of `s`, and whether anything was cut.
fn cut_chars(s: &str, max: usize) -> (&str, bool) {
    match s.char_indices().nth(max) {
        Some((at, _)) => (&s[..at], true),
        None => (s, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_pass_through() {
        for bad in ["a\nb", "a\rb", "a\u{1b}[31mb", "a\tb", "a\u{85}b"] {
            for out in [quoted(bad), one_line(bad)] {
                assert!(!out.chars().any(char::is_control), "{bad:?} → {out:?}");
            }
        }
    }

    #[test]
    fn long_values_are_cut_and_say_how_long_they_were() {
        let long = "é".repeat(1_000_000);
        let q = quoted(&long);
        assert!(q.chars().count() < MAX_VALUE_CHARS + 40, "{}", q.len());
        assert!(q.contains("2000000 bytes in all"), "{q}");
        let m = one_line(&long);
        assert!(m.chars().count() < MAX_MESSAGE_CHARS + 40);
        assert_eq!(quoted("short"), "\"short\"");
    }
}
