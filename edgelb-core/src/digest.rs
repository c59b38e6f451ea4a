//! Content digests of rendered configs.
//!
//! A rendered config starts with one line, `# edgelb-digest: sha256:<hex>`, the SHA-256 of
//! everything after that line. Deployers read it back from the live file to tell whether a
//! node already runs what is desired (drift detection) without fetching the whole file.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// The first characters of a rendered config's digest line.
pub const DIGEST_LINE_PREFIX: &str = "# edgelb-digest: sha256:";

/// SHA-256 of a config body.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Reads the digest line at the top of a rendered config, if there is one.
    ///
    /// ```
    /// use edgelb_core::{Digest, RenderedConfig};
    /// let cfg = RenderedConfig::from_body("global\n".to_string());
    /// assert_eq!(Digest::from_config_text(&cfg.text), Some(cfg.digest));
    /// assert_eq!(Digest::from_config_text("global\n"), None);
    /// ```
    pub fn from_config_text(text: &str) -> Option<Self> {
        let first = text.lines().next()?;
        first.strip_prefix(DIGEST_LINE_PREFIX)?.trim().parse().ok()
    }

    /// The first 12 hex digits, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short())
    }
}

impl FromStr for Digest {
    type Err = hex::FromHexError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(Self(out))
    }
}

/// The digest a config file on an edge really has: its digest line when the body still
/// matches it, or the digest of the whole file when someone edited the body by hand (so it
/// matches no rendered config and a resync repairs the drift). `None` for a file without a
/// digest line, or one that is not UTF-8.
///
/// ```
/// use edgelb_core::{RenderedConfig, live_digest_of};
/// let cfg = RenderedConfig::from_body("global\n".to_string());
/// assert_eq!(live_digest_of(cfg.text.as_bytes()), Some(cfg.digest));
/// let edited = format!("{}    maxconn 10\n", cfg.text);
/// assert_ne!(live_digest_of(edited.as_bytes()), Some(cfg.digest));
/// assert_eq!(live_digest_of(b"global\n"), None);
/// ```
pub fn live_digest_of(bytes: &[u8]) -> Option<Digest> {
    let text = std::str::from_utf8(bytes).ok()?;
    let claimed = Digest::from_config_text(text)?;
    let body = text.split_once('\n').map_or("", |(_, body)| body);
    if Digest::of(body.as_bytes()) == claimed {
        Some(claimed)
    } else {
        Some(Digest::of(bytes))
    }
}

/// Whether `text` is a config edgelb rendered that nobody edited since (its digest line
/// matches its body): only such a file says what edgelb put live.
///
/// ```
/// use edgelb_core::{RenderedConfig, is_edgelbs_own};
/// let cfg = RenderedConfig::from_body("global\n".to_string());
/// assert!(is_edgelbs_own(&cfg.text));
/// assert!(!is_edgelbs_own(&cfg.text.replace("global", "defaults")));
/// assert!(!is_edgelbs_own("global\n"));
/// ```
pub fn is_edgelbs_own(text: &str) -> bool {
    let claimed = Digest::from_config_text(text);
    claimed.is_some() && live_digest_of(text.as_bytes()) == claimed
}

/// A config ready to deploy: its full text (digest line included) and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedConfig {
    /// The file contents, starting with the digest line.
    pub text: String,
    /// The digest of everything after the digest line.
    pub digest: Digest,
}

impl RenderedConfig {
    /// Prepends the digest line to `body`.
    pub fn from_body(mut body: String) -> Self {
        let digest = Digest::of(body.as_bytes());
        // In place: a config of a few thousand Services is several MiB, and a second copy
        // would be held next to the body until this returns.
        body.insert_str(0, &format!("{DIGEST_LINE_PREFIX}{digest}\n"));
        Self { text: body, digest }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_line_round_trips_and_tracks_the_body() {
        let a = RenderedConfig::from_body("a\n".into());
        let b = RenderedConfig::from_body("b\n".into());
        assert_ne!(a.digest, b.digest);
        assert_eq!(Digest::from_config_text(&a.text), Some(a.digest));
        assert_eq!(a.digest.to_string().len(), 64);
        assert!(Digest::from_config_text("# edgelb-digest: sha256:zz\n").is_none());
    }
}
