//! File transfer over one SFTP subsystem channel kept open beside the session: a file read
//! or write costs a few round trips and starts no process on the edge.

use russh::Channel;
use russh::client::Msg;
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};

/// OpenSSH's atomic rename (rename(2), replacing the target); plain SFTP rename refuses to
/// replace an existing file.
const POSIX_RENAME: &str = "posix-rename@openssh.com";
const FSYNC: &str = "fsync@openssh.com";
/// Bytes per read or write request: well under every server's packet limit.
const CHUNK: usize = 32 * 1024;

/// An open SFTP session.
pub(crate) struct Sftp {
    raw: RawSftpSession,
    posix_rename: bool,
    fsync: bool,
}

/// Whether an SFTP error came from the server (a status) or from the transport.
pub(crate) fn is_transport_error(e: &SftpError) -> bool {
    !matches!(e, SftpError::Status(_))
}

impl Sftp {
    /// Starts the `sftp` subsystem on `channel` and negotiates the protocol.
    pub(crate) async fn start(channel: Channel<Msg>, timeout_secs: u64) -> Result<Self, SftpError> {
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| SftpError::IO(e.to_string()))?;
        let raw = RawSftpSession::new(channel.into_stream());
        raw.set_timeout(timeout_secs.max(1));
        let version = raw.init().await?;
        let has = |name: &str| version.extensions.contains_key(name);
        Ok(Self {
            posix_rename: has(POSIX_RENAME),
            fsync: has(FSYNC),
            raw,
        })
    }

    /// Whether the server renames atomically over an existing file.
    pub(crate) fn can_rename(&self) -> bool {
        self.posix_rename
    }

    /// The whole file, `None` when it does not exist.
    pub(crate) async fn read(&self, path: &str) -> Result<Option<Vec<u8>>, SftpError> {
        let handle = match self
            .raw
            .open(path, OpenFlags::READ, FileAttributes::empty())
            .await
        {
            Ok(h) => h.handle,
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        let result = loop {
            match self
                .raw
                .read(handle.as_str(), bytes.len() as u64, CHUNK as u32)
                .await
            {
                Ok(data) if data.data.is_empty() => break Ok(()),
                Ok(data) => bytes.extend_from_slice(&data.data),
                Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let closed = self.raw.close(handle).await;
        result?;
        closed?;
        Ok(Some(bytes))
    }

    /// Creates or truncates `path` (mode 0644 when created), writes `contents` and flushes it
    /// to disk when the server supports `fsync@openssh.com`.
    pub(crate) async fn write(&self, path: &str, contents: &[u8]) -> Result<(), SftpError> {
        let attrs = FileAttributes {
            permissions: Some(0o644),
            ..FileAttributes::empty()
        };
        let handle = self
            .raw
            .open(
                path,
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
                attrs,
            )
            .await?
            .handle;
        let result = async {
            for (i, chunk) in contents.chunks(CHUNK).enumerate() {
                self.raw
                    .write(handle.as_str(), (i * CHUNK) as u64, chunk.to_vec())
                    .await?;
            }
            if self.fsync {
                let mut data = Vec::new();
                put_string(&mut data, &handle);
                status_ok(self.raw.extended(FSYNC, data).await?)?;
            }
            Ok::<_, SftpError>(())
        }
        .await;
        let closed = self.raw.close(handle).await;
        result?;
        closed?;
        Ok(())
    }

    /// Removes a file; a missing one is fine.
    pub(crate) async fn remove(&self, path: &str) -> Result<(), SftpError> {
        match self.raw.remove(path).await {
            Ok(_) => Ok(()),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// rename(2) `from` over `to` (only when [`Sftp::can_rename`]).
    pub(crate) async fn rename(&self, from: &str, to: &str) -> Result<(), SftpError> {
        let mut data = Vec::new();
        put_string(&mut data, from);
        put_string(&mut data, to);
        status_ok(self.raw.extended(POSIX_RENAME, data).await?)
    }
}

/// SSH wire `string`: a big-endian u32 length, then the bytes.
fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn status_ok(packet: Packet) -> Result<(), SftpError> {
    match packet {
        Packet::Status(s) if s.status_code == StatusCode::Ok => Ok(()),
        Packet::Status(s) => Err(SftpError::Status(s)),
        _ => Err(SftpError::UnexpectedPacket),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_strings_are_length_prefixed() {
        let mut out = Vec::new();
        put_string(&mut out, "/a");
        put_string(&mut out, "");
        assert_eq!(out, [0, 0, 0, 2, b'/', b'a', 0, 0, 0, 0]);
    }
}
