//! What a host knows of its live config file without reading it back: the bytes edgelb
//! last swapped in there ([`LiveFile`] of them) and the file's [`FileStamp`] right after.
//!
//! A deploy that finds the cache filled skips reading the live file: it decides on the
//! cached file, and the host's [`stage_and_swap`](crate::EdgeHost::stage_and_swap) checks
//! the stamp in the same request that validates and swaps the new file. A stamp that no
//! longer matches (a hand edit, a restore by someone else) swaps nothing, empties the cache,
//! and the deploy reads the file as it always did, so the edit is seen and repaired. Every
//! other way the live file changes under edgelb (a rollback, a reload that failed) empties
//! the cache too.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::live_file::LiveFile;

/// A cheap fingerprint of a file (size, inode, modification and change times), as the
/// host's `stat` prints it: a changed stamp means someone touched the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp(pub String);

/// The live file as edgelb last left it.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    /// The live file's path.
    pub(crate) path: String,
    /// What it says.
    pub(crate) file: Arc<LiveFile>,
    /// Its stamp right after the swap.
    pub(crate) stamp: FileStamp,
}

/// The cache of one host; empty until a deploy swapped a file in with a stamp.
#[derive(Debug, Default)]
pub struct LiveCache {
    known: Mutex<Option<Known>>,
}

impl LiveCache {
    fn slot(&self) -> MutexGuard<'_, Option<Known>> {
        // A panic elsewhere while holding the lock leaves a value that is still whole.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What is known of `path`, if anything.
    pub(crate) fn get(&self, path: &str) -> Option<Known> {
        self.slot().clone().filter(|k| k.path == path)
    }

    /// Records the file just swapped in at `path`.
    pub(crate) fn set(&self, path: &str, file: impl Into<Arc<LiveFile>>, stamp: FileStamp) {
        *self.slot() = Some(Known {
            path: path.to_owned(),
            file: file.into(),
            stamp,
        });
    }

    /// Forgets everything: the next deploy reads the live file.
    pub fn clear(&self) {
        *self.slot() = None;
    }
}
