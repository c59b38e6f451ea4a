use std::path::PathBuf;
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt};

use super::file_format::SnapshotDocument;
use crate::error::{Error, Result};
use crate::model::Snapshot;
use crate::traits::EndpointSource;

/// A YAML endpoints file (see [`SnapshotDocument`]), re-read whenever its content changes.
///
/// The file is polled (default every 250 ms), which works the same on every filesystem,
/// including ConfigMap volumes whose files are swapped by symlink. A file that fails to parse
/// yields one `Err` per bad version; the pipeline keeps serving the last good snapshot.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    poll_interval: Duration,
}

impl FileSource {
    /// Watches `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            poll_interval: Duration::from_millis(250),
        }
    }

    /// Changes how often the file is checked.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Reads and parses the file once.
    pub async fn load(&self) -> Result<Snapshot> {
        let bytes = tokio::fs::read(&self.path)
            .await
            .map_err(|e| self.error(e.to_string()))?;
        self.parse(&bytes)
    }

    fn parse(&self, bytes: &[u8]) -> Result<Snapshot> {
        let text = std::str::from_utf8(bytes).map_err(|_| self.error("is not UTF-8".into()))?;
        let doc = SnapshotDocument::from_yaml(text).map_err(|e| self.error(e.to_string()))?;
        doc.into_snapshot(&self.path.display().to_string())
    }

    fn error(&self, message: String) -> Error {
        Error::File {
            path: self.path.clone(),
            message,
        }
    }
}

struct PollState {
    source: FileSource,
    last: Option<std::result::Result<Vec<u8>, String>>,
    first: bool,
}

impl EndpointSource for FileSource {
    fn snapshots(self) -> BoxStream<'static, Result<Snapshot>> {
        let state = PollState {
            source: self,
            last: None,
            first: true,
        };
        futures::stream::unfold(state, |mut st| async move {
            loop {
                if !st.first {
                    tokio::time::sleep(st.source.poll_interval).await;
                }
                st.first = false;
                let read = tokio::fs::read(&st.source.path).await.map_err(|e| e.to_string());
                if st.last.as_ref() == Some(&read) {
                    continue;
                }
                st.last = Some(read.clone());
                let item = match read {
                    Ok(bytes) => st.source.parse(&bytes),
                    Err(e) => Err(st.source.error(e)),
                };
                if let Err(e) = &item {
                    tracing::warn!(error = %e, "endpoints file is unusable; keeping the last good state");
                } else {
                    tracing::info!(path = %st.source.path.display(), "endpoints file changed");
                }
                return Some((item, st));
            }
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn emits_on_change_only_and_reports_bad_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eps.yaml");
        let v1 = "services:\n  - name: web\n    ports:\n      - {name: http, listen: 80, endpoints: [\"10.0.0.1:80\"]}\n";
        std::fs::write(&path, v1).unwrap();
        let mut stream = FileSource::new(&path)
            .with_poll_interval(Duration::from_millis(10))
            .snapshots();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.endpoint_count(), 1);

        std::fs::write(&path, "services: [oops").unwrap();
        let err = stream.next().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("eps.yaml"), "{err}");

        std::fs::write(
            &path,
            v1.replace("[\"10.0.0.1:80\"]", "[\"10.0.0.1:80\", \"10.0.0.2:80\"]"),
        )
        .unwrap();
        let next = stream.next().await.unwrap().unwrap();
        assert_eq!(next.endpoint_count(), 2);
    }
}
