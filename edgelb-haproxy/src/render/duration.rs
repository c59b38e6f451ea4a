//! Durations as written in the config file and in `haproxy.cfg`: `500ms`, `5s`, `1m`, `1h`,
//! `1d`, or combined as `1m30s`: the grammar of [`edgelb_core::duration`], every setting's.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest duration HAProxy takes for a timer: its timers are signed 32-bit milliseconds
/// (about 24.8 days).
pub const MAX_HAPROXY_MILLIS: u64 = i32::MAX as u64;

/// A duration with whole-millisecond precision, written as a number and a unit.
///
/// Accepted units: `ms`, `s`, `m` (minutes), `h`, `d`, e.g. `500ms`, `5s`, `1m`, `1h`, and
/// combinations such as `1m30s`, as every duration of edgelb's config reads them
/// ([`edgelb_core::duration::parse`]). A bare number is rejected rather than guessed at: write
/// `5000ms` or `5s`. It is displayed (and
/// serialized, and rendered into `haproxy.cfg`, whose timers take the same units) in the
/// largest unit that divides it exactly, so `90s` shows as `90s` and `120s` as `2m`.
///
/// ```
/// use edgelb_haproxy::ConfigDuration;
/// let d: ConfigDuration = "1500ms".parse()?;
/// assert_eq!(d.as_millis(), 1500);
/// assert_eq!("120s".parse::<ConfigDuration>()?.to_string(), "2m");
/// assert_eq!("1m30s".parse::<ConfigDuration>()?.to_string(), "90s");
/// assert!("5".parse::<ConfigDuration>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigDuration {
    millis: u64,
}

const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

impl ConfigDuration {
    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self { millis }
    }

    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self {
            millis: secs.saturating_mul(1_000),
        }
    }

    /// A duration of `mins` minutes.
    pub const fn from_mins(mins: u64) -> Self {
        Self {
            millis: mins.saturating_mul(60_000),
        }
    }

    /// The duration in milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    /// The duration as a [`std::time::Duration`].
    pub const fn as_std(self) -> Duration {
        Duration::from_millis(self.millis)
    }
}

impl From<ConfigDuration> for Duration {
    fn from(d: ConfigDuration) -> Self {
        d.as_std()
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis == 0 {
            return f.write_str("0ms");
        }
        for (unit, size) in UNITS {
            if self.millis.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.millis / size);
            }
        }
        // Unreachable: every whole number of milliseconds divides by 1 ms.
        write!(f, "{}ms", self.millis)
    }
}

impl FromStr for ConfigDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::try_from(edgelb_core::duration::parse(s)?)
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    /// Through [`edgelb_core::duration::deserialize`], the one reader of every duration.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let d = edgelb_core::duration::deserialize(deserializer)?;
        Self::try_from(d).map_err(de::Error::custom)
    }
}

impl TryFrom<Duration> for ConfigDuration {
    type Error = String;

    /// Whole milliseconds of `d` (sub-millisecond parts are dropped); an error for a
    /// duration whose milliseconds do not fit in 64 bits.
    fn try_from(d: Duration) -> Result<Self, String> {
        u64::try_from(d.as_millis())
            .map(Self::from_millis)
            .map_err(|_| format!("duration {d:?} is too large"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> ConfigDuration {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_unit() {
        assert_eq!(d("500ms").as_millis(), 500);
        assert_eq!(d("5s").as_millis(), 5_000);
        assert_eq!(d("1m").as_millis(), 60_000);
        assert_eq!(d("1h").as_millis(), 3_600_000);
        assert_eq!(d("2d").as_millis(), 172_800_000);
        assert_eq!(d(" 7s ").as_millis(), 7_000);
        assert_eq!(d("0s").as_millis(), 0);
        assert_eq!(d("1m30s").as_millis(), 90_000);
        assert_eq!(d("1h2m3s4ms").as_millis(), 3_723_004);
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        for (input, shown) in [
            ("1500ms", "1500ms"),
            ("1000ms", "1s"),
            ("90s", "90s"),
            ("120s", "2m"),
            ("60m", "1h"),
            ("24h", "1d"),
            ("0h", "0ms"),
        ] {
            assert_eq!(d(input).to_string(), shown, "{input}");
            assert_eq!(d(shown), d(input), "round trip of {shown}");
        }
    }

    #[test]
    fn rejects_what_it_cannot_read_and_says_how_to_fix_it() {
        for (bad, hint) in [
            ("5", "has no unit"),
            ("1m30", "30 has no unit"),
            ("", "does not start with a number"),
            ("s", "does not start with a number"),
            ("5 s", "unknown unit"),
            ("5sec", "unknown unit"),
            ("1.5s", "unknown unit"),
            ("-5s", "does not start with a number"),
            ("99999999999999999999s", "too large"),
            ("18446744073709551615d", "too large"),
        ] {
            let err = bad.parse::<ConfigDuration>().unwrap_err();
            assert!(err.contains(hint), "{bad:?}: {err}");
        }
    }

    #[test]
    fn serde_round_trip_and_bare_numbers() {
        let yaml = serde_yaml_ng::to_string(&d("90s")).unwrap();
        assert_eq!(yaml.trim(), "90s");
        let back: ConfigDuration = serde_yaml_ng::from_str("1h").unwrap();
        assert_eq!(back, ConfigDuration::from_mins(60));
        let err = serde_yaml_ng::from_str::<ConfigDuration>("5000")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"5000ms\""), "{err}");
    }
}
