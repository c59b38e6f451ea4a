//! The SSH channels edgelb's SSH host opens, as its debug events on
//! [`CHANNEL_TARGET`](edgelb_haproxy::ssh::CHANNEL_TARGET) tell them: benchmarks count the
//! round trips they cost, tests check that a request used what was opened ahead.

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};

/// One channel the SSH host opened.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChannelSeen {
    /// `exec`, `stream-local` or `tcp`.
    pub kind: String,
    /// Opened before the request that uses it, off its path.
    pub ahead: bool,
    /// The server accepted it.
    pub opened: bool,
}

/// The channel `event` reports, when it is an event of the channel target.
pub fn channel_seen(event: &tracing::Event<'_>) -> Option<ChannelSeen> {
    if event.metadata().target() != edgelb_haproxy::ssh::CHANNEL_TARGET {
        return None;
    }
    struct Fields(ChannelSeen);
    impl Visit for Fields {
        fn record_bool(&mut self, field: &Field, value: bool) {
            match field.name() {
                "ahead" => self.0.ahead = value,
                "opened" => self.0.opened = value,
                _ => {}
            }
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "kind" {
                self.0.kind = value.to_owned();
            }
        }
        fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
    }
    let mut fields = Fields(ChannelSeen::default());
    event.record(&mut fields);
    Some(fields.0)
}

/// A `tracing` layer that keeps every channel event; clones share the log.
#[derive(Debug, Clone, Default)]
pub struct ChannelLog(Arc<Mutex<Vec<ChannelSeen>>>);

impl ChannelLog {
    /// A log installed as the process's global subscriber (the only subscriber: for a test
    /// binary of its own).
    pub fn install_global() -> Self {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::{EnvFilter, Layer};
        let log = Self::default();
        let filter = EnvFilter::new(format!("{}=debug", edgelb_haproxy::ssh::CHANNEL_TARGET));
        let subscriber = tracing_subscriber::registry().with(log.clone().with_filter(filter));
        let _ = tracing::subscriber::set_global_default(subscriber);
        log
    }

    /// The channels seen since the last call.
    pub fn take(&self) -> Vec<ChannelSeen> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ChannelLog {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if let Some(seen) = channel_seen(event) {
            self.0.lock().unwrap().push(seen);
        }
    }
}
