use futures::stream::{BoxStream, StreamExt};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::model::Snapshot;
use crate::traits::EndpointSource;

/// A source fed by hand through a [`SnapshotSender`]: for tests and for embedders with their
/// own discovery.
///
/// ```
/// use edgelb_core::{ChannelSource, EndpointSource, Snapshot};
/// use futures::StreamExt;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let (source, tx) = ChannelSource::new();
/// tx.send(Snapshot::default()).unwrap();
/// drop(tx);
/// let all: Vec<_> = source.snapshots().collect().await;
/// assert_eq!(all.len(), 1);
/// # });
/// ```
#[derive(Debug)]
pub struct ChannelSource {
    rx: mpsc::UnboundedReceiver<Result<Snapshot>>,
}

/// The sending half of a [`ChannelSource`]. The stream ends when every sender is dropped.
#[derive(Debug, Clone)]
pub struct SnapshotSender {
    tx: mpsc::UnboundedSender<Result<Snapshot>>,
}

impl ChannelSource {
    /// A connected source and sender.
    pub fn new() -> (Self, SnapshotSender) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { rx }, SnapshotSender { tx })
    }
}

impl SnapshotSender {
    /// Sends a full snapshot.
    pub fn send(&self, snapshot: Snapshot) -> Result<()> {
        self.tx.send(Ok(snapshot)).map_err(|_| Error::SourceClosed)
    }

    /// Reports a source error (the pipeline logs it and keeps the last snapshot).
    pub fn send_error(&self, error: Error) -> Result<()> {
        self.tx.send(Err(error)).map_err(|_| Error::SourceClosed)
    }
}

impl EndpointSource for ChannelSource {
    fn snapshots(self) -> BoxStream<'static, Result<Snapshot>> {
        futures::stream::unfold(self.rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed()
    }
}
