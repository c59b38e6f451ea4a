//! Pinned host keys, read from OpenSSH `known_hosts` lines.
//!
//! Supported, as OpenSSH reads them: plain host names and addresses, `[host]:port` for a
//! port other than 22, comma-separated lists, `*`/`?` wildcards and `!` negation, hashed
//! entries (`|1|salt|hmac-sha1`, as `ssh-keygen -H` writes them) and the `@revoked` marker.
//! `@cert-authority` lines are skipped (host certificates are not accepted). There is no
//! trust on first use: a host with no matching line is refused like a host whose key changed.

use std::fmt;
use std::path::Path;

use data_encoding::BASE64;
use russh::keys::{Algorithm, HashAlg, PublicKey};

use crate::error::{Error, Result};

/// The SHA-256 fingerprint of a key as OpenSSH prints it (`SHA256:…`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Host keys pinned through `known_hosts` lines.
///
/// ```
/// use edgelb_haproxy::ssh::{HostKeyCheck, KnownHosts};
/// let pins = KnownHosts::parse(
///     "[10.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINTbyjwNk25l2GAsMVNa82VtpzMgSmt+nGmSmoLwP2aK\n",
/// )?;
/// let key = russh::keys::PublicKey::from_openssh(
///     "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINTbyjwNk25l2GAsMVNa82VtpzMgSmt+nGmSmoLwP2aK",
/// ).unwrap();
/// assert_eq!(pins.check("10.0.0.1", 2222, &key), HostKeyCheck::Trusted);
/// assert_eq!(pins.check("10.0.0.1", 22, &key), HostKeyCheck::Unknown { pinned: 0 });
/// # Ok::<(), edgelb_haproxy::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

#[derive(Clone)]
struct Entry {
    revoked: bool,
    hosts: Vec<HostPattern>,
    key: PublicKey,
}

#[derive(Clone)]
enum HostPattern {
    /// A name or address pattern, lower-cased; `negated` for `!pattern`.
    Plain { pattern: String, negated: bool },
    /// `|1|salt|hash`: HMAC-SHA1 of the host name keyed with the salt.
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

/// What [`KnownHosts::check`] decided about a key a server presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyCheck {
    /// The key is pinned for this host.
    Trusted,
    /// The key is listed as `@revoked`.
    Revoked,
    /// The key is not pinned for this host; `pinned` keys (of any type) are.
    Unknown {
        /// How many keys are pinned for this host.
        pinned: usize,
    },
}

impl fmt::Debug for KnownHosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KnownHosts")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl KnownHosts {
    /// No pinned keys: every host is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `known_hosts` text. Blank lines and `#` comments are skipped; a malformed line is
    /// an error naming its number (a pinning file with a typo must not silently pin nothing).
    pub fn parse(text: &str) -> Result<Self> {
        let mut pins = Self::new();
        for (i, line) in text.lines().enumerate() {
            pins.add_line_numbered(line, i + 1)?;
        }
        Ok(pins)
    }

    /// Parses the given lines (e.g. from a config list or a mounted Secret).
    pub fn from_lines<I, S>(lines: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut pins = Self::new();
        for (i, line) in lines.into_iter().enumerate() {
            pins.add_line_numbered(line.as_ref(), i + 1)?;
        }
        Ok(pins)
    }

    /// Reads and parses a `known_hosts` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading known_hosts file {}", path.display()), e))?;
        Self::parse(&text).map_err(|e| match e {
            Error::InvalidInput {
                what,
                value,
                reason,
            } => Error::InvalidInput {
                what,
                value: format!("{} {value}", path.display()),
                reason,
            },
            other => other,
        })
    }

    /// Adds one `known_hosts` line.
    pub fn add_line(&mut self, line: &str) -> Result<()> {
        self.add_line_numbered(line, self.entries.len() + 1)
    }

    /// Builder form of [`KnownHosts::add_line`].
    pub fn with_line(mut self, line: &str) -> Result<Self> {
        self.add_line(line)?;
        Ok(self)
    }

    /// Adds every pin of `other`.
    pub fn extend(&mut self, other: &KnownHosts) {
        self.entries.extend(other.entries.iter().cloned());
    }

    /// How many keys are pinned (revoked ones included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is pinned.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn add_line_numbered(&mut self, line: &str, number: usize) -> Result<()> {
        let bad = |reason: String| Error::InvalidInput {
            what: "known_hosts entry",
            value: format!("line {number}"),
            reason,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or_default();
        let mut revoked = false;
        if let Some(marker) = first.strip_prefix('@') {
            match marker {
                "revoked" => revoked = true,
                "cert-authority" => {
                    tracing::debug!(
                        line = number,
                        "known_hosts: @cert-authority lines are not supported; skipped"
                    );
                    return Ok(());
                }
                other => return Err(bad(format!("unknown marker @{other}"))),
            }
            first = fields.next().unwrap_or_default();
        }
        let (Some(key_type), Some(key_b64)) = (fields.next(), fields.next()) else {
            return Err(bad(
                "expected `HOSTS KEYTYPE BASE64-KEY [comment]`, e.g. `[203.0.113.10]:22 ssh-ed25519 AAAA…` (ssh-keyscan prints such lines)".into(),
            ));
        };
        if !is_supported_key_type(key_type) {
            tracing::warn!(
                line = number,
                key_type,
                "known_hosts: key type not supported; line skipped"
            );
            return Ok(());
        }
        let key = russh::keys::parse_public_key_base64(key_b64)
            .map_err(|e| bad(format!("the {key_type} key does not parse: {e}")))?;
        if key.algorithm().as_str() != key_type
            && !(key_type.starts_with("rsa-sha2-") && key.algorithm().as_str() == "ssh-rsa")
        {
            return Err(bad(format!(
                "the line says {key_type} but the key is {}",
                key.algorithm().as_str()
            )));
        }
        let hosts = first
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| parse_host_pattern(h).map_err(&bad))
            .collect::<Result<Vec<_>>>()?;
        if hosts.is_empty() {
            return Err(bad("no host names before the key".into()));
        }
        self.entries.push(Entry {
            revoked,
            hosts,
            key,
        });
        Ok(())
    }

    /// Decides about `key`, presented by the server at `host`:`port`.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> HostKeyCheck {
        let name = host_port_name(host, port);
        let mut pinned = 0;
        let mut trusted = false;
        for entry in self.entries.iter().filter(|e| e.matches(&name)) {
            let same = entry.key.key_data() == key.key_data();
            if entry.revoked {
                if same {
                    return HostKeyCheck::Revoked;
                }
                continue;
            }
            pinned += 1;
            trusted |= same;
        }
        if trusted {
            HostKeyCheck::Trusted
        } else {
            HostKeyCheck::Unknown { pinned }
        }
    }

    /// The algorithms of the keys pinned for `host`:`port`, in file order: offered first in
    /// the key exchange, so a server with several host keys presents a pinned one.
    pub fn pinned_algorithms(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let name = host_port_name(host, port);
        let mut algs: Vec<Algorithm> = Vec::new();
        for entry in self
            .entries
            .iter()
            .filter(|e| !e.revoked && e.matches(&name))
        {
            let alg = entry.key.algorithm();
            let list: Vec<Algorithm> = match alg {
                // An RSA key is used with SHA-2 signatures; OpenSSH 8.8+ refuses SHA-1.
                Algorithm::Rsa { .. } => vec![
                    Algorithm::Rsa {
                        hash: Some(HashAlg::Sha512),
                    },
                    Algorithm::Rsa {
                        hash: Some(HashAlg::Sha256),
                    },
                ],
                other => vec![other],
            };
            for a in list {
                if !algs.contains(&a) {
                    algs.push(a);
                }
            }
        }
        algs
    }
}

impl Entry {
    /// OpenSSH semantics: some positive pattern matches and no negated one does.
    fn matches(&self, name: &str) -> bool {
        let mut positive = false;
        for pattern in &self.hosts {
            match pattern {
                HostPattern::Plain { pattern, negated } => {
                    if wildcard_match(pattern, name) {
                        if *negated {
                            return false;
                        }
                        positive = true;
                    }
                }
                HostPattern::Hashed { salt, hash } => {
                    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
                    if ring::hmac::verify(&key, name.as_bytes(), hash).is_ok() {
                        positive = true;
                    }
                }
            }
        }
        positive
    }
}

/// Host key types a server can present to us (and so worth pinning).
fn is_supported_key_type(key_type: &str) -> bool {
    matches!(
        key_type,
        "ssh-ed25519"
            | "ssh-rsa"
            | "rsa-sha2-256"
            | "rsa-sha2-512"
            | "ecdsa-sha2-nistp256"
            | "ecdsa-sha2-nistp384"
            | "ecdsa-sha2-nistp521"
    )
}

/// The name known_hosts lists a host under: `host` on port 22, `[host]:port` otherwise.
fn host_port_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

fn parse_host_pattern(text: &str) -> std::result::Result<HostPattern, String> {
    if let Some(rest) = text.strip_prefix("|1|") {
        let (salt, hash) = rest
            .split_once('|')
            .ok_or_else(|| "a hashed host must look like |1|SALT|HASH".to_owned())?;
        let decode = |what: &str, b64: &str| {
            BASE64
                .decode(b64.as_bytes())
                .map_err(|e| format!("the hashed host's {what} is not base64: {e}"))
        };
        let (salt, hash) = (decode("salt", salt)?, decode("hash", hash)?);
        if hash.len() != 20 {
            return Err("the hashed host's hash is not an HMAC-SHA1 (20 bytes)".into());
        }
        return Ok(HostPattern::Hashed { salt, hash });
    }
    if text.starts_with('|') {
        return Err(format!("unknown hashed host format {text:?}"));
    }
    let (negated, pattern) = match text.strip_prefix('!') {
        Some(p) => (true, p),
        None => (false, text),
    };
    if pattern.is_empty() {
        return Err("an empty host pattern".into());
    }
    Ok(HostPattern::Plain {
        pattern: pattern.to_ascii_lowercase(),
        negated,
    })
}

/// Matches `*` (any run of characters) and `?` (one character).
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Classic two-pointer glob match with backtracking to the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    // Public keys and a file hashed by `ssh-keygen -H` (OpenSSH 9.2): test vectors.
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINTbyjwNk25l2GAsMVNa82VtpzMgSmt+nGmSmoLwP2aK";
    const ED25519_FP: &str = "SHA256:YBvwPDx2E7izJ0NrrUk0FnH9P/k4Q9rw6AEO7gUwY20";
    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCp+3sOwUyOZGEyA3/JVZq+0rKLh/MawnU9V8SRCBPEcGT3m9GrZCKwRadGfoST9XcS4VxCptwIngFgB4LvUYB467CRg8Lbh1EwKgY8udo+HIOXHMvkpjhaW6eeW+JXK0K3i+ygfZkZTY3Cb6yeD+RH0b4xtmR/rDOoZi5FSBBGw2UJqAteFHxC2bNjkV0mD2BcdXXtzIXPC/3INxn5tTht7yEyaIhPM342l/k8GfAIg9PjKTH8paHYF/xL9WbhHAwq4RJIE11CRMVITG0m9mFJzXGIxntQTIZOU+1LVZ8rp6g/nZ9pwaOIvXXOTbvCqa6NWzR+0Xw0qM2lRei5JFtp";
    const RSA_FP: &str = "SHA256:6SImJ86UzZqbGg3Xr+/PDUMWwun11kNoahATztlz/RM";
    /// `edge-1.example.com` (ed25519) and `[10.0.0.1]:2222` (RSA), hashed.
    const HASHED: &str = "|1|bJq01HcwMg7ei3PSpi9RyhCp2R4=|rVql3DVUcSYLo61CUpSNzgjmEoQ= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINTbyjwNk25l2GAsMVNa82VtpzMgSmt+nGmSmoLwP2aK
|1|lr/keGz+EbOi4ZiaiBYejpFaYWg=|A4OyQOjAgNpcGiAnY/SM63sIqrw= ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCp+3sOwUyOZGEyA3/JVZq+0rKLh/MawnU9V8SRCBPEcGT3m9GrZCKwRadGfoST9XcS4VxCptwIngFgB4LvUYB467CRg8Lbh1EwKgY8udo+HIOXHMvkpjhaW6eeW+JXK0K3i+ygfZkZTY3Cb6yeD+RH0b4xtmR/rDOoZi5FSBBGw2UJqAteFHxC2bNjkV0mD2BcdXXtzIXPC/3INxn5tTht7yEyaIhPM342l/k8GfAIg9PjKTH8paHYF/xL9WbhHAwq4RJIE11CRMVITG0m9mFJzXGIxntQTIZOU+1LVZ8rp6g/nZ9pwaOIvXXOTbvCqa6NWzR+0Xw0qM2lRei5JFtp
";

    fn key(line: &str) -> PublicKey {
        PublicKey::from_openssh(line).unwrap()
    }

    #[test]
    fn fingerprints_match_ssh_keygen() {
        assert_eq!(fingerprint(&key(ED25519)), ED25519_FP);
        assert_eq!(fingerprint(&key(RSA)), RSA_FP);
    }

    #[test]
    fn plain_and_bracketed_entries() {
        let pins = KnownHosts::parse(&format!(
            "# pinned\n\nedge-1.example.com,10.0.0.9 {ED25519} comment words\n[10.0.0.1]:2222 {RSA}\n"
        ))
        .unwrap();
        assert_eq!(pins.len(), 2);
        let ed = key(ED25519);
        let rsa = key(RSA);
        assert_eq!(
            pins.check("edge-1.example.com", 22, &ed),
            HostKeyCheck::Trusted
        );
        assert_eq!(
            pins.check("EDGE-1.example.com", 22, &ed),
            HostKeyCheck::Trusted
        );
        assert_eq!(pins.check("10.0.0.9", 22, &ed), HostKeyCheck::Trusted);
        // A plain entry does not cover another port, as in OpenSSH.
        assert_eq!(
            pins.check("edge-1.example.com", 2222, &ed),
            HostKeyCheck::Unknown { pinned: 0 }
        );
        assert_eq!(pins.check("10.0.0.1", 2222, &rsa), HostKeyCheck::Trusted);
        assert_eq!(
            pins.check("10.0.0.1", 22, &rsa),
            HostKeyCheck::Unknown { pinned: 0 }
        );
    }

    #[test]
    fn a_different_key_or_type_is_refused() {
        let pins = KnownHosts::parse(&format!("edge-1 {ED25519}\n")).unwrap();
        assert_eq!(
            pins.check("edge-1", 22, &key(RSA)),
            HostKeyCheck::Unknown { pinned: 1 }
        );
        let pins = KnownHosts::parse(&format!("edge-1 {RSA}\n")).unwrap();
        assert_eq!(
            pins.check("edge-1", 22, &key(ED25519)),
            HostKeyCheck::Unknown { pinned: 1 }
        );
    }

    #[test]
    fn hashed_entries_from_ssh_keygen() {
        let pins = KnownHosts::parse(HASHED).unwrap();
        assert_eq!(
            pins.check("edge-1.example.com", 22, &key(ED25519)),
            HostKeyCheck::Trusted
        );
        assert_eq!(
            pins.check("10.0.0.1", 2222, &key(RSA)),
            HostKeyCheck::Trusted
        );
        assert_eq!(
            pins.check("edge-2.example.com", 22, &key(ED25519)),
            HostKeyCheck::Unknown { pinned: 0 }
        );
        assert_eq!(
            pins.check("10.0.0.1", 2222, &key(ED25519)),
            HostKeyCheck::Unknown { pinned: 1 }
        );
    }

    #[test]
    fn wildcards_negation_and_revocation() {
        let pins = KnownHosts::parse(&format!(
            "*.edges.example.com,!bad.edges.example.com {ED25519}\n@revoked * {RSA}\nrsa-host {RSA}\n"
        ))
        .unwrap();
        let ed = key(ED25519);
        assert_eq!(
            pins.check("a.edges.example.com", 22, &ed),
            HostKeyCheck::Trusted
        );
        assert_eq!(
            pins.check("bad.edges.example.com", 22, &ed),
            HostKeyCheck::Unknown { pinned: 0 }
        );
        assert_eq!(pins.check("rsa-host", 22, &key(RSA)), HostKeyCheck::Revoked);
        assert!(wildcard_match("e?ge-*", "edge-12"));
        assert!(!wildcard_match("e?ge-*", "eedge-12"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("*a*b", "xxaxxb"));
        assert!(!wildcard_match("*a*b", "xxaxxbc"));
    }

    #[test]
    fn malformed_lines_are_errors_with_line_numbers() {
        for (text, needle) in [
            ("edge-1\n", "line 1"),
            ("# ok\nedge-1 ssh-ed25519\n", "line 2"),
            ("edge-1 ssh-ed25519 !!!notbase64\n", "does not parse"),
            (
                &format!("edge-1 ssh-rsa {}\n", &ED25519[12..]),
                "says ssh-rsa",
            ),
            ("|1|x edge\n", "line 1"),
            ("@bogus edge-1 ssh-ed25519 AAAA\n", "unknown marker"),
        ] {
            let err = KnownHosts::parse(text).err().unwrap().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        // cert-authority lines and unknown key types are skipped, not errors.
        let pins = KnownHosts::parse(&format!(
            "@cert-authority *.example.com {ED25519}\nedge sk-ssh-ed25519@openssh.com AAAA\n"
        ))
        .unwrap();
        assert!(pins.is_empty());
    }

    #[test]
    fn pinned_algorithms_put_pinned_types_first() {
        let pins = KnownHosts::parse(&format!("h {RSA}\nh {ED25519}\n")).unwrap();
        let algs = pins.pinned_algorithms("h", 22);
        assert_eq!(algs.len(), 3);
        assert!(matches!(
            algs[0],
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512)
            }
        ));
        assert_eq!(algs[2], Algorithm::Ed25519);
        assert!(pins.pinned_algorithms("other", 22).is_empty());
    }
}
