//! SSH key pairs made with `ssh-keygen` at test time.

use std::path::{Path, PathBuf};

use super::sys::run;

/// A key pair on disk.
#[derive(Debug, Clone)]
pub struct KeyPair {
    /// The private key file.
    pub private: PathBuf,
    /// The public key line (`ssh-ed25519 AAAA… comment`).
    pub public: String,
}

impl KeyPair {
    /// Generates a key of `kind` (`ed25519`, `rsa`) at `path` (and `path.pub`).
    pub fn generate(path: &Path, kind: &str, comment: &str) -> Result<Self, String> {
        let path_str = path.to_string_lossy().into_owned();
        let mut args = vec!["-q", "-t", kind, "-N", "", "-C", comment, "-f", &path_str];
        if kind == "rsa" {
            args.extend(["-b", "3072"]);
        }
        run("ssh-keygen", &args)?;
        let public = std::fs::read_to_string(path.with_extension("pub"))
            .map_err(|e| format!("reading {}.pub: {e}", path.display()))?
            .trim()
            .to_owned();
        Ok(Self {
            private: path.to_path_buf(),
            public,
        })
    }

    /// `TYPE BASE64` without the comment.
    pub fn public_key(&self) -> String {
        self.public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }
}
