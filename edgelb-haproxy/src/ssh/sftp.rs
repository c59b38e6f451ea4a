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

    /// The whole file, `None` when it does not exist. Its size and first chunk are asked for
    /// together, and the rest of a file of known size in requests all in flight at once, so
    /// a read costs three round trips (open, read, close) whatever the file's size; a short
    /// read or a file that changed meanwhile falls back to reading chunk by chunk to EOF.
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
        let result = self.read_open(&handle).await;
        let closed = self.raw.close(handle).await;
        let bytes = result?;
        closed?;
        Ok(Some(bytes))
    }

    /// Reads the open file `handle` to its end (see [`Sftp::read`]).
    async fn read_open(&self, handle: &str) -> Result<Vec<u8>, SftpError> {
        let (attrs, first) = futures::join!(
            self.raw.fstat(handle),
            self.raw.read(handle, 0, CHUNK as u32)
        );
        let size = attrs?.attrs.size;
        let Some(mut bytes) = data_or_eof(first)? else {
            return Ok(Vec::new());
        };
        if let Some(size) = size {
            if bytes.len() == CHUNK && (bytes.len() as u64) < size {
                let reads = (CHUNK as u64..size)
                    .step_by(CHUNK)
                    .map(|offset| self.raw.read(handle, offset, CHUNK as u32));
                for chunk in futures::future::join_all(reads).await {
                    let Some(data) = data_or_eof(chunk)? else {
                        break;
                    };
                    let full = data.len() == CHUNK;
                    bytes.extend_from_slice(&data);
                    if !full {
                        break; // the last chunk, or a short read: the loop below goes on
                    }
                }
            }
            if bytes.len() as u64 == size {
                return Ok(bytes);
            }
        }
        // Size unknown, a short read, or the file changed while it was read.
        while let Some(data) = data_or_eof(
            self.raw
                .read(handle, bytes.len() as u64, CHUNK as u32)
                .await,
        )? {
            bytes.extend_from_slice(&data);
        }
        Ok(bytes)
    }

    /// Creates or truncates `path` (mode 0644 when created), writes `contents` and flushes it
    /// to disk when the server supports `fsync@openssh.com`. The writes, the flush and the
    /// close are sent together (the server handles them in order), so a write costs two
    /// round trips (open, then the rest) whatever the file's size.
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
        let writes = contents.chunks(CHUNK).enumerate().map(|(i, chunk)| {
            self.raw
                .write(handle.as_str(), (i * CHUNK) as u64, chunk.to_vec())
        });
        let sync = async {
            if !self.fsync {
                return Ok(());
            }
            let mut data = Vec::new();
            put_string(&mut data, &handle);
            status_ok(self.raw.extended(FSYNC, data).await?)
        };
        let (written, synced, closed) = futures::join!(
            futures::future::join_all(writes),
            sync,
            self.raw.close(handle.as_str())
        );
        for w in written {
            w?;
        }
        synced?;
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

/// The bytes of a read, `None` at end of file.
fn data_or_eof(
    read: Result<russh_sftp::protocol::Data, SftpError>,
) -> Result<Option<Vec<u8>>, SftpError> {
    match read {
        Ok(d) if d.data.is_empty() => Ok(None),
        Ok(d) => Ok(Some(d.data)),
        Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => Ok(None),
        Err(e) => Err(e),
    }
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
