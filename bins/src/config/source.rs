use std::path::{Path, PathBuf};

use edgelb_core::source::{ServiceEntry, SnapshotDocument};
use edgelb_core::{EndpointSource, FileSource, Snapshot, StaticSource};
use futures::stream::BoxStream;
use serde::Deserialize;

/// `source:` — where the desired state comes from. Exactly one key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SourceConfig {
    /// `file: endpoints.yaml` — a YAML endpoints file, re-read when it changes.
    File(PathBuf),
    /// `services: [...]` — a fixed list, in the endpoints file's format.
    Services(Vec<ServiceEntry>),
}

impl SourceConfig {
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        if let Self::File(path) = self {
            *path = base.join(&*path);
        }
    }

    /// Reads the current desired state once (for `render` and `check`).
    pub async fn load_once(&self) -> edgelb_core::Result<Snapshot> {
        match self {
            Self::File(path) => FileSource::new(path).load().await,
            Self::Services(services) => SnapshotDocument {
                services: services.clone(),
            }
            .into_snapshot("source.services"),
        }
    }

    /// The source to run the pipeline on.
    pub fn into_source(
        self,
    ) -> edgelb_core::Result<BoxStream<'static, edgelb_core::Result<Snapshot>>> {
        Ok(match self {
            Self::File(path) => FileSource::new(path).snapshots(),
            Self::Services(services) => {
                StaticSource::new(SnapshotDocument { services }.into_snapshot("source.services")?)
                    .snapshots()
            }
        })
    }
}
