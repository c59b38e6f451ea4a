//! Ready-made [`EndpointSource`](crate::EndpointSource)s that need no cluster.

mod channel;
mod file;
mod file_format;
mod static_source;

pub use channel::{ChannelSource, SnapshotSender};
pub use file::{FileSource, read_regular_file};
pub use file_format::{EndpointEntry, PortEntry, ServiceEntry, SnapshotDocument};
pub use static_source::StaticSource;
