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
        doc.into_snapshot_from(&self.path.display().to_string(), Some(text))
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
    /// Unusable versions seen since the last good one.
    unusable: u32,
}

impl EndpointSource for FileSource {
    fn snapshots(self) -> BoxStream<'static, Result<Snapshot>> {
        let state = PollState {
            source: self,
            last: None,
            first: true,
            unusable: 0,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Log lines written while it lives (this thread only).
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    #[tokio::test]
    async fn emits_on_change_only_and_reports_bad_versions() {
        let logs = Captured::default();
        let writer = logs.clone();
        let _guard = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish(),
        );
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
        let text = logs.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains("endpoints file changed"), "{text}");
        assert!(lines[1].contains("endpoints file is unusable"), "{text}");
        assert!(
            lines[2].contains("endpoints file is usable again")
                && lines[2].contains("unusable_versions=1"),
            "{text}"
        );
    }
}
