use futures::stream::{self, BoxStream, StreamExt};

use crate::error::Result;
use crate::model::Snapshot;
use crate::traits::EndpointSource;

/// A source with one fixed snapshot, sent once.
///
/// ```
/// use edgelb_core::{EndpointSource, Snapshot, StaticSource};
/// use futures::StreamExt;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut stream = StaticSource::new(Snapshot::default()).snapshots();
/// assert_eq!(stream.next().await.unwrap().unwrap(), Snapshot::default());
/// assert!(stream.next().await.is_none());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct StaticSource {
    snapshot: Snapshot,
}

impl StaticSource {
    /// A source that yields `snapshot` once.
    pub fn new(snapshot: Snapshot) -> Self {
        Self { snapshot }
    }
}

impl EndpointSource for StaticSource {
    fn snapshots(self) -> BoxStream<'static, Result<Snapshot>> {
        stream::once(async move { Ok(self.snapshot) }).boxed()
    }
}
