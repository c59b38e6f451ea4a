//! Human-readable durations in config files: `250ms`, `5s`, `2m`, `1h`, `1d`, or combined as
//! `1m30s`. A bare number is rejected rather than guessed at (seconds? milliseconds?).
//! Use with `#[serde(with = "edgelb_core::duration")]`.
//!
//! ```
//! use std::time::Duration;
//! use edgelb_core::duration::{format, parse};
//! assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
//! assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
//! assert_eq!(format(Duration::from_millis(1500)), "1500ms");
//! assert!(parse("5 parsecs").is_err());
//! ```

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// The longest duration accepted: far beyond any timeout or interval edgelb uses, and short
/// enough that adding it to the current time can never overflow.
pub const MAX: Duration = Duration::from_secs(365 * 86_400);

/// Parses `500ms`, `5s`, `2m`, `1h`, `1d` or a combination such as `1m30s`, of at most
/// [`MAX`] (365 days): the one duration grammar of every edgelb setting (HAProxy's timeouts
/// included). Errors say what is wrong and how to write it.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = |why: String| format!("invalid duration {}: {why}", crate::text::quoted(text));
    if !text.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(bad(
            "it does not start with a number; write e.g. 250ms, 5s, 2m, 1h or 1m30s".into(),
        ));
    }
    let too_large = || bad("it is too large".into());
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        // `rest` starts with a digit here: units are whole runs of non-digits.
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let number = &rest[..digits];
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let unit_millis: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(bad(format!(
                    "{number} has no unit; write e.g. {number}ms or {number}s (units: ms, s, m, h, d)"
                )));
            }
            other => return Err(bad(format!("unknown unit {other:?}; use ms, s, m, h or d"))),
        };
        let millis = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit_millis))
            .ok_or_else(too_large)?;
        total = total
            .checked_add(Duration::from_millis(millis))
            .ok_or_else(too_large)?;
        rest = &rest[unit_len..];
    }
    if total > MAX {
        return Err(format!(
            "duration {} is too long: use at most 365d",
            crate::text::quoted(text)
        ));
    }
    Ok(total)
}

/// Formats a duration the way [`parse`] reads it (whole seconds as `Ns`, else `Nms`).
pub fn format(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// serde deserializer: a string [`parse`] reads. A bare number is refused with the unit to
/// add (`duration 5000 has no unit; write e.g. "5000ms" or "5000s"`); every other value with
/// what was expected. Every duration of edgelb's config goes through here, HAProxy's timeouts
/// (`edgelb_haproxy::ConfigDuration`) included.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration with a unit, e.g. \"250ms\", \"5s\", \"1m\" or \"1h\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "duration {v} has no unit; write e.g. \"{v}ms\" or \"{v}s\" (units: ms, s, m, h, d)"
        )))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "duration {v} is a bare number; write a positive number with a unit, e.g. \"5s\""
        )))
    }
}

/// serde serializer.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_errors() {
        assert_eq!(parse("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse("1h2m3s4ms"), Ok(Duration::from_millis(3_723_004)));
        assert_eq!(parse("365d"), Ok(MAX));
        for too_long in ["366d", "200000000000000d"] {
            let err = parse(too_long).unwrap_err();
            assert!(
                err.contains("at most 365d") || err.contains("too large"),
                "{err}"
            );
        }
        for (bad, hint) in [
            ("", "does not start with a number"),
            ("30", "has no unit"),
            ("1m30", "30 has no unit"),
            ("s", "does not start with a number"),
            ("5x", "unknown unit"),
            ("-5s", "does not start with a number"),
            ("5.5s", "unknown unit"),
            ("5 s", "unknown unit"),
            ("ms5", "does not start with a number"),
            ("99999999999999999999s", "too large"),
            ("18446744073709551615d", "too large"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(hint), "{bad:?}: {err}");
        }
        for d in [
            Duration::from_millis(1),
            Duration::from_secs(60),
            Duration::from_millis(2500),
        ] {
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }

    #[derive(Debug, serde::Deserialize)]
    struct Setting {
        #[serde(with = "crate::duration")]
        every: Duration,
    }

    #[test]
    fn serde_reads_strings_and_says_what_a_bare_number_lacks() {
        let ok: Setting = serde_yaml_ng::from_str("every: 1m30s").unwrap();
        assert_eq!(ok.every, Duration::from_secs(90));
        for (yaml, hint) in [
            (
                "every: 5000",
                "duration 5000 has no unit; write e.g. \"5000ms\"",
            ),
            ("every: -5", "duration -5 is a bare number"),
            ("every: 1m30", "30 has no unit"),
            ("every: [5s]", "a duration with a unit"),
        ] {
            let err = serde_yaml_ng::from_str::<Setting>(yaml)
                .unwrap_err()
                .to_string();
            assert!(err.contains(hint), "{yaml}: {err}");
        }
    }
}
