use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

const V1: &str = "services:\n  - name: web\n    ports:\n      - {name: http, listen: 80, endpoints: [\"10.0.0.1:80\"]}\n";

/// Bad input must be refused well within this; the limits make it milliseconds.
const GENEROUS: Duration = Duration::from_secs(10);

async fn load_err(source: FileSource) -> String {
    tokio::time::timeout(GENEROUS, source.load())
        .await
        .expect("loading returns instead of hanging")
        .unwrap_err()
        .to_string()
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
    std::fs::write(&path, V1).unwrap();
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
        V1.replace("[\"10.0.0.1:80\"]", "[\"10.0.0.1:80\", \"10.0.0.2:80\"]"),
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

/// Log lines written while it lives (this thread only).
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

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
async fn an_unchanged_file_is_not_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eps.yaml");
    std::fs::write(&path, V1).unwrap();
    let reads = Arc::new(AtomicUsize::new(0));
    let mut stream = poll_stream(PollState {
        source: FileSource::new(&path).with_poll_interval(Duration::from_millis(5)),
        events: None,
        last: None,
        first: true,
        unusable: 0,
        reads: reads.clone(),
    });
    assert_eq!(stream.next().await.unwrap().unwrap().endpoint_count(), 1);
    // Forty polls of an unchanged file: stat only.
    let idle = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
    assert!(idle.is_err(), "nothing changed, nothing is emitted");
    assert_eq!(reads.load(Ordering::Relaxed), 1);
    std::fs::write(&path, V1.replace("10.0.0.1", "10.0.0.2")).unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().endpoint_count(), 1);
    assert_eq!(reads.load(Ordering::Relaxed), 2);
}

/// With a poll interval of an hour, only a file event can deliver the change: an edit in
/// place and a replacement by rename (how editors save) are both seen.
#[tokio::test]
async fn an_edit_is_seen_without_waiting_for_the_poll() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eps.yaml");
    std::fs::write(&path, V1).unwrap();
    let mut stream = FileSource::new(&path)
        .with_poll_interval(Duration::from_secs(3600))
        .snapshots();
    assert_eq!(stream.next().await.unwrap().unwrap().endpoint_count(), 1);

    let two = V1.replace("[\"10.0.0.1:80\"]", "[\"10.0.0.1:80\", \"10.0.0.2:80\"]");
    std::fs::write(&path, &two).unwrap();
    let next = tokio::time::timeout(GENEROUS, stream.next()).await;
    let next = next.expect("an edit in place is delivered before the hourly poll");
    assert_eq!(next.unwrap().unwrap().endpoint_count(), 2);

    let tmp = dir.path().join(".eps.yaml.swp");
    std::fs::write(&tmp, V1.replace("10.0.0.1", "10.0.0.9")).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let next = tokio::time::timeout(GENEROUS, stream.next()).await;
    let snapshot = next
        .expect("a replacement by rename is delivered before the hourly poll")
        .unwrap()
        .unwrap();
    assert_eq!(snapshot.endpoint_count(), 1);
    assert!(format!("{snapshot:?}").contains("10.0.0.9"), "{snapshot:?}");
}

#[tokio::test]
async fn an_empty_file_is_an_error_not_an_empty_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eps.yaml");
    for empty in ["", "\n\n", "# nothing yet\n"] {
        std::fs::write(&path, empty).unwrap();
        let err = load_err(FileSource::new(&path)).await;
        assert!(err.contains("eps.yaml") && err.contains("empty"), "{err}");
    }
    std::fs::write(&path, "services: []\n").unwrap();
    let on_purpose = FileSource::new(&path).load().await.unwrap();
    assert_eq!(on_purpose.services.len(), 0);
}

#[tokio::test]
async fn devices_and_fifos_are_refused_without_reading() {
    let err = load_err(FileSource::new("/dev/zero")).await;
    assert!(err.contains("not a regular file"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("eps.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let err = load_err(FileSource::new(&fifo)).await;
    assert!(err.contains("not a regular file"), "{err}");
    let err = load_err(FileSource::new(dir.path())).await;
    assert!(err.contains("not a regular file"), "{err}");
}

#[tokio::test]
async fn a_file_over_the_size_cap_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eps.yaml");
    let padding = format!("# {}\n", "x".repeat(2_000));
    std::fs::write(&path, format!("{V1}{padding}")).unwrap();
    let err = load_err(FileSource::new(&path).with_max_bytes(1_000)).await;
    assert!(err.contains("more than the limit of 1000"), "{err}");
    assert!(read_regular_file(&path, 10).is_err());
    assert_eq!(
        FileSource::new(&path)
            .load()
            .await
            .unwrap()
            .endpoint_count(),
        1
    );
}
