use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt};
use tokio::sync::Notify;

use super::file_format::SnapshotDocument;
use crate::error::{Error, Result};
use crate::model::Snapshot;
use crate::traits::EndpointSource;
use crate::yaml::DEFAULT_MAX_FILE_BYTES;

/// A YAML endpoints file (see [`SnapshotDocument`]), re-read whenever it changes.
///
/// The file's directory is watched for events (inotify through the `notify` crate): an
/// edit is seen at once, whether the editor writes the file in place or replaces it by a
/// rename (as editors and ConfigMap volumes' symlink swaps do). The file's metadata is also
/// polled (default every 250 ms) as a fallback for filesystems without events (network
/// filesystems, some container volumes) and for a watch that could not be set up. Either
/// way the file is read again only when its size, times or inode changed. Only a regular file of at most
/// [`DEFAULT_MAX_FILE_BYTES`] (see [`FileSource::with_max_bytes`]) is read, and its YAML is
/// parsed within [`yaml`](crate::yaml)'s budget, so a hostile file costs bounded time and
/// memory. A file that fails to load yields one `Err` per bad version; the pipeline keeps
/// serving the last good snapshot.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    poll_interval: Duration,
    max_bytes: u64,
}

/// What a poll compares to notice a change without reading the file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

impl FileSource {
    /// Watches `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            poll_interval: Duration::from_millis(250),
            max_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }

    /// Changes how often the file is checked.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Changes the largest file read (default [`DEFAULT_MAX_FILE_BYTES`]); a larger one is an
    /// error, not read at all.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Reads and parses the file once.
    pub async fn load(&self) -> Result<Snapshot> {
        let (bytes, _) = self.read().await?;
        self.parse(&bytes)
    }

    /// Reads the file if it is a regular file within the size cap, without ever blocking on
    /// a FIFO or a device; returns its content and stamp.
    async fn read(&self) -> Result<(Vec<u8>, Stamp)> {
        let path = self.path.clone();
        let max = self.max_bytes;
        tokio::task::spawn_blocking(move || read_stamped(&path, max))
            .await
            .map_err(|e| self.error(format!("reading it failed: {e}")))?
            .map_err(|message| self.error(message))
    }

    fn parse(&self, bytes: &[u8]) -> Result<Snapshot> {
        let text = std::str::from_utf8(bytes).map_err(|_| self.error("is not UTF-8".into()))?;
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Err(self.error(
                "the file is empty; write `services: []` to serve nothing on purpose".into(),
            ));
        }
        let doc = SnapshotDocument::from_yaml(text).map_err(|e| self.error(e.to_string()))?;
        doc.into_snapshot_from(&self.path.display().to_string(), Some(text))
    }

    fn error(&self, message: String) -> Error {
        Error::File {
            path: self.path.clone(),
            message,
        }
    }
}

/// Reads `path` if it is a regular file of at most `max` bytes, without ever blocking on a
/// FIFO or reading a device; `Err` says why not, on one line, without the path.
pub fn read_regular_file(path: &Path, max: u64) -> std::result::Result<Vec<u8>, String> {
    read_stamped(path, max).map(|(bytes, _)| bytes)
}

/// Opens `path` without blocking (a FIFO would otherwise wait for a writer), checks that it
/// is a regular file of at most `max` bytes, and reads at most that much.
fn read_stamped(path: &Path, max: u64) -> std::result::Result<(Vec<u8>, Stamp), String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(
            "is not a regular file (a FIFO, device or directory); point source.file at a YAML file"
                .into(),
        );
    }
    if meta.len() > max {
        return Err(format!(
            "is {} bytes, more than the limit of {max}",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!(
            "grew beyond the limit of {max} bytes while being read"
        ));
    }
    Ok((bytes, Stamp::of(&meta)))
}

/// What one read gave: the content, or why it failed.
type ReadOutcome = std::result::Result<Vec<u8>, String>;

struct PollState {
    source: FileSource,
    /// Woken by file events in the file's directory; `None` before the first read.
    events: Option<Watch>,
    /// The last stamp seen and what reading at it gave (content, or the error).
    last: Option<(Option<Stamp>, ReadOutcome)>,
    first: bool,
    /// Unusable versions seen since the last good one.
    unusable: u32,
    #[cfg(test)]
    reads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// Polls the file's stamp and reads it only when the stamp changed; yields what changed.
fn poll_stream(state: PollState) -> BoxStream<'static, Result<Snapshot>> {
    futures::stream::unfold(state, |mut st| async move {
            loop {
                if st.first {
                    st.events = Some(Watch::start(&st.source.path));
                } else if let Some(events) = &st.events {
                    events.next_change(st.source.poll_interval).await;
                } else {
                    tokio::time::sleep(st.source.poll_interval).await;
                }
                st.first = false;
                let stamp = tokio::fs::metadata(&st.source.path)
                    .await
                    .ok()
                    .map(|m| Stamp::of(&m));
                if let (Some(stamp), Some((Some(last), _))) = (&stamp, &st.last)
                    && stamp == last
                {
                    continue;
                }
                #[cfg(test)]
                st.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (stamp, read) = match st.source.read().await {
                    Ok((bytes, stamp)) => (Some(stamp), Ok(bytes)),
                    Err(Error::File { message, .. }) => (stamp, Err(message)),
                    Err(e) => (stamp, Err(e.to_string())),
                };
                let unchanged = st.last.as_ref().is_some_and(|(_, last)| *last == read);
                st.last = Some((stamp, read.clone()));
                if unchanged {
                    continue;
                }
                let item = match read {
                    Ok(bytes) => st.source.parse(&bytes),
                    Err(e) => Err(st.source.error(e)),
                };
                let path = st.source.path.display();
                match &item {
                    Err(e) => {
                        st.unusable = st.unusable.saturating_add(1);
                        tracing::warn!(error = %e, "endpoints file is unusable; keeping the last good state");
                    }
                    Ok(_) if st.unusable > 0 => {
                        tracing::info!(
                            %path,
                            unusable_versions = st.unusable,
                            "endpoints file is usable again"
                        );
                        st.unusable = 0;
                    }
                    Ok(_) => tracing::info!(%path, "endpoints file changed"),
                }
                return Some((item, st));
            }
        })
        .boxed()
}

/// How long the directory must stay quiet after an event before the file is looked at: an
/// editor's truncate-then-write, or a delete-then-create, is one change, not two. Short next
/// to the pipeline's debounce.
const SETTLE: Duration = Duration::from_millis(5);
/// The most events one settling waits through, so a directory that never quiets down is
/// still looked at.
const MAX_SETTLE_EVENTS: usize = 20;

/// File events in the directory of the endpoints file.
struct Watch {
    wake: std::sync::Arc<Notify>,
    /// Kept for its events; `None` when the directory could not be watched (polling only).
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Watch {
    /// Watches the directory holding `path` (not the file itself: a file replaced by a rename
    /// is a new inode, which a watch on the old one would never report).
    fn start(path: &Path) -> Self {
        let wake = std::sync::Arc::new(Notify::new());
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let waker = wake.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.as_ref().is_ok_and(is_change) || event.is_err() {
                waker.notify_one();
            }
        })
        .and_then(|mut watcher| {
            notify::Watcher::watch(&mut watcher, &dir, notify::RecursiveMode::NonRecursive)
                .map(|()| watcher)
        });
        let watcher = match watcher {
            Ok(watcher) => Some(watcher),
            Err(e) => {
                tracing::info!(dir = %dir.display(), error = %e, "cannot watch the endpoints file's directory for changes; polling only");
                None
            }
        };
        Self {
            wake,
            _watcher: watcher,
        }
    }

    /// Returns after a file event (once the directory settled) or after `poll_interval`,
    /// whichever comes first.
    async fn next_change(&self, poll_interval: Duration) {
        if tokio::time::timeout(poll_interval, self.wake.notified())
            .await
            .is_err()
        {
            return; // the poll
        }
        for _ in 0..MAX_SETTLE_EVENTS {
            if tokio::time::timeout(SETTLE, self.wake.notified())
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// Whether an event may have changed a file: anything but opening, reading and closing
/// without writing (which our own reads cause).
fn is_change(event: &notify::Event) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

impl EndpointSource for FileSource {
    fn snapshots(self) -> BoxStream<'static, Result<Snapshot>> {
        poll_stream(PollState {
            source: self,
            events: None,
            last: None,
            first: true,
            unusable: 0,
            #[cfg(test)]
            reads: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests;
