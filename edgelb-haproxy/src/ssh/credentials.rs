//! Who we are to an edge (a client key) and who the edge must be (its pinned host keys).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use russh::keys::{HashAlg, PrivateKey};

use super::host_keys::KnownHosts;
use crate::error::{Error, Result};

/// A private key to log in to edges with: ed25519, ECDSA or RSA, in OpenSSH, PEM (PKCS#1) or
/// PKCS#8 format, optionally passphrase-protected.
///
/// Its `Debug` output shows the key type and public fingerprint only, never key material.
#[derive(Clone)]
pub struct ClientKey {
    key: Arc<PrivateKey>,
}

impl ClientKey {
    /// Reads a key file (e.g. `/etc/edgelb/id_ed25519`).
    pub fn from_file(path: impl AsRef<Path>, passphrase: Option<&str>) -> Result<Self> {
        let path = path.as_ref();
        let mut bytes = std::fs::read(path)
            .map_err(|e| Error::io(format!("reading SSH private key {}", path.display()), e))?;
        let parsed = Self::from_bytes(&bytes, passphrase);
        // Do not leave the key file's text in freed memory (black_box keeps the writes).
        bytes.fill(0);
        std::hint::black_box(&bytes);
        parsed.map_err(|e| match e {
            Error::InvalidInput { what, reason, .. } => Error::InvalidInput {
                what,
                value: path.display().to_string(),
                reason,
            },
            other => other,
        })
    }

    /// Parses key text held in memory (e.g. a mounted Kubernetes Secret).
    pub fn from_bytes(bytes: &[u8], passphrase: Option<&str>) -> Result<Self> {
        let bad = |reason: String| Error::InvalidInput {
            what: "SSH private key",
            value: "(key material not shown)".to_owned(),
            reason,
        };
        let text = std::str::from_utf8(bytes).map_err(|_| {
            bad("it is not text; expected an OpenSSH, PEM or PKCS#8 private key".into())
        })?;
        let key = russh::keys::decode_secret_key(text, passphrase).map_err(|e| {
            if passphrase.is_none() && matches!(e, russh::keys::Error::KeyIsEncrypted) {
                return bad(
                    "it is encrypted and no passphrase was given: give its passphrase (edgelb: \
                     `deployer.ssh.key_passphrase_file`), or remove it with \
                     `ssh-keygen -p -N '' -f KEY` and protect the file instead"
                        .into(),
                );
            }
            bad(format!(
                "it does not parse as an OpenSSH, PEM or PKCS#8 private key{}: {e}",
                if passphrase.is_some() {
                    " with the given passphrase"
                } else {
                    ""
                }
            ))
        })?;
        Ok(Self { key: Arc::new(key) })
    }

    /// The public key's SHA-256 fingerprint (`SHA256:…`), to find it in `authorized_keys`.
    pub fn fingerprint(&self) -> String {
        self.key
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }

    /// The key type (`ssh-ed25519`, `ssh-rsa`, …).
    pub fn algorithm(&self) -> String {
        self.key.algorithm().as_str().to_owned()
    }

    /// The public half in OpenSSH format, for an `authorized_keys` line.
    pub fn public_key_openssh(&self) -> String {
        self.key.public_key().to_openssh().unwrap_or_default()
    }

    pub(crate) fn is_rsa(&self) -> bool {
        self.key.algorithm().is_rsa()
    }

    pub(crate) fn private(&self) -> Arc<PrivateKey> {
        self.key.clone()
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("algorithm", &self.algorithm())
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// How to log in to one edge and how to recognise it.
#[derive(Debug, Clone)]
pub struct SshCredentials {
    /// Our private key.
    pub key: ClientKey,
    /// The host keys the edge must present. Lines for other hosts may be present (one file
    /// for all edges): only those matching the edge's address and port count.
    pub known_hosts: KnownHosts,
}

impl SshCredentials {
    /// Bundles a key and pinned host keys.
    pub fn new(key: ClientKey, known_hosts: KnownHosts) -> Self {
        Self { key, known_hosts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keygen(dir: &Path, kind: &str, passphrase: &str) -> Option<std::path::PathBuf> {
        let path = dir.join(format!("id_{kind}"));
        let mut cmd = std::process::Command::new("ssh-keygen");
        cmd.args(["-q", "-t", kind, "-N", passphrase, "-C", "", "-f"])
            .arg(&path);
        if kind == "rsa" {
            cmd.args(["-b", "2048"]);
        }
        match cmd.status() {
            Ok(s) if s.success() => Some(path),
            _ => {
                eprintln!("ssh-keygen (openssh-client) not available; skipping");
                None
            }
        }
    }

    #[test]
    fn loads_ed25519_and_rsa_from_files_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        for kind in ["ed25519", "rsa"] {
            let Some(path) = keygen(dir.path(), kind, "") else {
                return;
            };
            let from_file = ClientKey::from_file(&path, None).unwrap();
            let from_bytes = ClientKey::from_bytes(&std::fs::read(&path).unwrap(), None).unwrap();
            assert_eq!(from_file.fingerprint(), from_bytes.fingerprint());
            assert_eq!(from_file.is_rsa(), kind == "rsa");
            // The fingerprint is the one ssh-keygen prints for the public half.
            let out = std::process::Command::new("ssh-keygen")
                .arg("-lf")
                .arg(path.with_extension("pub"))
                .output()
                .unwrap();
            let printed = String::from_utf8(out.stdout).unwrap();
            assert!(printed.contains(&from_file.fingerprint()), "{printed}");
            // Debug never shows key material.
            let debug = format!("{from_file:?}");
            assert!(
                debug.contains("SHA256:") && !debug.contains("PRIVATE"),
                "{debug}"
            );
        }
    }

    #[test]
    fn encrypted_key_needs_its_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let Some(path) = keygen(dir.path(), "ed25519", "s3cret") else {
            return;
        };
        let err = ClientKey::from_file(&path, None).unwrap_err().to_string();
        assert!(
            err.contains("it is encrypted and no passphrase was given")
                && err.contains("key_passphrase_file"),
            "{err}"
        );
        let err = ClientKey::from_file(&path, Some("wrong"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("with the given passphrase"), "{err}");
        assert!(ClientKey::from_file(&path, Some("s3cret")).is_ok());
    }

    #[test]
    fn garbage_is_refused_without_echoing_it() {
        let err = ClientKey::from_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0\n", None)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("c2VjcmV0"), "{err}");
        assert!(err.contains("SSH private key"), "{err}");
    }
}
