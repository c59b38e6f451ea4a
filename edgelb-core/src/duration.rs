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

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// The longest duration accepted: far beyond any timeout or interval edgelb uses, and short
/// enough that adding it to the current time can never overflow.
pub const MAX: Duration = Duration::from_secs(365 * 86_400);

/// Parses `500ms`, `5s`, `2m`, `1h`, `1d` or a combination such as `1m30s`, of at most
/// [`MAX`] (365 days).
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "invalid duration {}: use a number with a unit, e.g. 250ms, 5s, 2m or 1h",
            crate::text::quoted(text)
        )
    };
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.saturating_mul(60)),
            "h" => Duration::from_secs(value.saturating_mul(3600)),
            "d" => Duration::from_secs(value.saturating_mul(86_400)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(unit);
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

/// serde deserializer (a string with a unit).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d).map_err(|_| {
        serde::de::Error::custom("expected a duration with a unit, e.g. 250ms, 5s or 1m")
    })?;
    parse(&text).map_err(serde::de::Error::custom)
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
        for too_long in ["366d", "200000000000000d", "99999999999999999999s"] {
            let err = parse(too_long).unwrap_err();
            assert!(
                err.contains("at most 365d") || err.contains("invalid"),
                "{err}"
            );
        }
        for bad in ["", "30", "s", "5x", "-5s", "5.5s", "5 s", "ms5"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        for d in [
            Duration::from_millis(1),
            Duration::from_secs(60),
            Duration::from_millis(2500),
        ] {
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
