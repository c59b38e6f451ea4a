//! Kubernetes Events (`events.k8s.io/v1`), rate-limited.
//!
//! A flapping edge must not flood the cluster with Events: each `(object, reason, key)` is
//! recorded at most once per [`EventConfig::min_interval`], and the whole publisher sends at
//! most [`EventConfig::max_per_minute`]. What was held back is counted and mentioned in the
//! next Event of the same key.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::time::Instant;

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something went as it should (a deploy applied).
    Normal,
    /// Something needs attention (a deploy failed, a port was skipped).
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// Settings of the [`EventPublisher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventConfig {
    /// `reportingController` of every Event (default `edgelb.io/controller`).
    pub controller: String,
    /// `reportingInstance`: this replica, e.g. its pod name (default: `$POD_NAME`, else
    /// `$HOSTNAME`, else `edgelb`).
    pub instance: String,
    /// The shortest time between two Events with the same object, reason and key
    /// (default 5 minutes).
    pub min_interval: Duration,
    /// The most Events sent per minute, all objects together (default 30).
    pub max_per_minute: usize,
}

impl Default for EventConfig {
    fn default() -> Self {
        let instance = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "edgelb".to_owned());
        Self {
            controller: "edgelb.io/controller".to_owned(),
            instance,
            min_interval: Duration::from_secs(300),
            max_per_minute: 30,
        }
    }
}

/// The longest `note` the API server accepts.
const MAX_NOTE_BYTES: usize = 1024;

struct Limiter {
    last: HashMap<String, (Instant, u32)>,
    sent: VecDeque<Instant>,
}

impl Limiter {
    /// `Some(suppressed)` when an Event for `key` may go out now (with how many were held
    /// back since the last one), `None` when it is held back.
    fn admit(&mut self, cfg: &EventConfig, key: &str, now: Instant) -> Option<u32> {
        if self.last.len() > 4096 {
            self.last
                .retain(|_, (at, n)| *n > 0 || now.duration_since(*at) < cfg.min_interval);
        }
        let held_back = match self.last.get_mut(key) {
            Some((at, n)) if now.duration_since(*at) < cfg.min_interval => {
                *n += 1;
                return None;
            }
            Some((_, n)) => *n,
            None => 0,
        };
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            self.sent.pop_front();
        }
        if self.sent.len() >= cfg.max_per_minute {
            self.last
                .entry(key.to_owned())
                .and_modify(|(_, n)| *n += 1)
                .or_insert((now - cfg.min_interval, 1));
            return None;
        }
        self.sent.push_back(now);
        self.last.insert(key.to_owned(), (now, 0));
        Some(held_back)
    }
}

/// Records Events on objects, rate-limited. Cheap to clone; clones share the limits.
///
/// RBAC: `create` on `events` in `events.k8s.io` in the objects' namespaces.
#[derive(Clone)]
pub struct EventPublisher {
    client: Client,
    config: Arc<EventConfig>,
    limiter: Arc<Mutex<Limiter>>,
}

impl std::fmt::Debug for EventPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventPublisher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl EventPublisher {
    /// The client Events go out with (the placement conditions use it too).
    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    /// A publisher with `config`.
    pub fn new(client: Client, config: EventConfig) -> Self {
        Self {
            client,
            config: Arc::new(config),
            limiter: Arc::new(Mutex::new(Limiter {
                last: HashMap::new(),
                sent: VecDeque::new(),
            })),
        }
    }

    /// Records an Event on `regarding` unless the limits hold it back. `key` groups Events
    /// for the per-key interval (e.g. `Service a/b edge-1 DeployFailed`); `action` says what
    /// edgelb was doing (`Deploy`, `Sync`). Failures are logged, never returned: Events are
    /// best effort. Returns whether the Event was sent.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
        key: &str,
    ) -> bool {
        let admitted = match self.limiter.lock() {
            Ok(mut limiter) => limiter.admit(&self.config, key, Instant::now()),
            Err(_) => None,
        };
        let Some(held_back) = admitted else {
            tracing::debug!(key, reason, "event held back by the rate limit");
            return false;
        };
        let mut note = note.to_owned();
        if held_back > 0 {
            note.push_str(&format!(
                " ({held_back} similar event(s) held back since the last one)"
            ));
        }
        truncate(&mut note, MAX_NOTE_BYTES);
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!(
                    "{}.",
                    regarding.name.as_deref().unwrap_or("edgelb")
                )),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(Timestamp::now())),
            action: Some(action.to_owned()),
            reason: Some(reason.to_owned()),
            note: Some(note),
            type_: Some(type_.as_str().to_owned()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.config.controller.clone()),
            reporting_instance: Some(self.config.instance.clone()),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(
                    reason,
                    object = ?regarding.name,
                    error = %e,
                    hint = crate::error::hint(&e),
                    "recording an Event failed"
                );
                false
            }
        }
    }
}

fn truncate(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str("...");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limiter_holds_back_repeats_and_caps_the_rate() {
        let cfg = EventConfig {
            min_interval: Duration::from_secs(300),
            max_per_minute: 3,
            ..EventConfig::default()
        };
        let mut l = Limiter {
            last: HashMap::new(),
            sent: VecDeque::new(),
        };
        let t0 = Instant::now();
        assert_eq!(l.admit(&cfg, "a", t0), Some(0));
        // Same key within the interval: held back, counted.
        assert_eq!(l.admit(&cfg, "a", t0 + Duration::from_secs(10)), None);
        assert_eq!(l.admit(&cfg, "a", t0 + Duration::from_secs(20)), None);
        // Other keys go until the global cap.
        assert_eq!(l.admit(&cfg, "b", t0), Some(0));
        assert_eq!(l.admit(&cfg, "c", t0), Some(0));
        assert_eq!(l.admit(&cfg, "d", t0), None);
        // After the interval, "a" goes again and reports what was held back.
        assert_eq!(l.admit(&cfg, "a", t0 + Duration::from_secs(301)), Some(2));
        // "d" was held by the cap, not by its own interval: it goes once the minute passed.
        assert_eq!(l.admit(&cfg, "d", t0 + Duration::from_secs(302)), Some(1));
    }

    #[test]
    fn notes_are_cut_at_a_char_boundary() {
        let mut s = "é".repeat(600);
        truncate(&mut s, MAX_NOTE_BYTES);
        assert!(s.len() <= MAX_NOTE_BYTES && s.ends_with("..."));
    }
}
