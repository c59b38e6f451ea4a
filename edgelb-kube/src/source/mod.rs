//! The two Kubernetes endpoint sources and the machinery they share: watchers feeding
//! reflector stores, a driver that turns store changes into full snapshots.

mod lb;
mod lb_parts;
mod named;
pub(crate) mod slices;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use edgelb_core::{Claim, PortSpec, ServiceKey, Snapshot};
use futures::stream::{BoxStream, SelectAll};
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

pub use lb::{
    DEFAULT_LOAD_BALANCER_CLASS, LoadBalancerConfig, LoadBalancerSource, PROXY_PROTOCOL_ANNOTATION,
};
pub use named::{NamedService, NamedServicesSource, PortMapping, PortRef, validate_named_services};
pub(crate) use slices::SliceView;
use slices::{ServiceName, SliceIndex, Touched};

use crate::conditions::PlacementConditions;
use crate::convert::{SERVICE_NAME_LABEL, Warning};
use crate::events::{EventPublisher, EventType};
use crate::placement::{Claims, Placement};

/// What one watcher reported, reduced to what the driver needs.
#[derive(Debug)]
enum TickKind {
    /// The store changed (an object applied or deleted, or a (re)list completed), for these
    /// Services.
    Changed { init_done: bool, touched: Touched },
    /// A (re)list is under way; the store still holds the previous state.
    Progress,
    /// The watch expired (410 Gone); the watcher relists after its backoff.
    Gone,
    /// Any other watch error; the watcher retries after its backoff.
    Failed(String),
}

struct Tick {
    watch: usize,
    kind: TickKind,
}

/// Whether a watcher error is a 410 Gone (an expired resourceVersion: routine, relist).
fn is_gone(err: &watcher::Error) -> bool {
    match err {
        watcher::Error::WatchError(status) => status.code == 410,
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => crate::error::status_code(e) == Some(410),
        watcher::Error::NoResourceVersion => false,
    }
}

fn failure_message(what: &str, err: &watcher::Error) -> String {
    let hint = match err {
        watcher::Error::WatchError(status) if status.code == 403 => {
            "; edgelb's ServiceAccount lacks a permission: apply deploy/rbac.yaml"
        }
        watcher::Error::WatchError(_) | watcher::Error::NoResourceVersion => "",
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => crate::error::hint(e),
    };
    format!("watching {what}: {err}{hint}; retrying with backoff, keeping the last good state")
}

/// Strips what edgelb never reads, so cluster-wide stores stay small and an update that
/// changes only those parts (a status write, managedFields, a new resourceVersion) compares
/// equal to the stored object and is dropped without a rebuild.
pub(crate) trait Strip: Resource {
    /// Removes the parts of the object no snapshot is built from.
    fn strip(&mut self) {
        strip_meta(self.meta_mut());
    }
}

/// The metadata edgelb never reads: managedFields, the resourceVersion and kubectl's copy of
/// the last applied object.
fn strip_meta(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
    meta.resource_version = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

impl Strip for Service {
    fn strip(&mut self) {
        strip_meta(self.meta_mut());
        // The sources never read a Service's status; the status writer watches it itself.
        // Without it, the echo of every status patch edgelb writes is a no-op here.
        self.status = None;
    }
}

impl Strip for EndpointSlice {}

/// The longest wait between two attempts of a failed watch or list.
///
/// kube's default backoff grows to 30 s, so a change made during an outage could go live tens
/// of seconds after the API server came back; capped at this, it goes live within about this
/// long plus one relist.
pub const WATCH_RETRY_MAX: Duration = Duration::from_secs(1);

/// The first wait after a watch or list fails; doubles up to [`WATCH_RETRY_MAX`].
const WATCH_RETRY_MIN: Duration = Duration::from_millis(250);

/// A doubling backoff capped at [`WATCH_RETRY_MAX`], reset by the watcher's first success.
#[derive(Debug, Clone)]
pub(crate) struct CappedBackoff {
    next: Duration,
}

impl Default for CappedBackoff {
    fn default() -> Self {
        Self {
            next: WATCH_RETRY_MIN,
        }
    }
}

impl Iterator for CappedBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = self.next.saturating_mul(2).min(WATCH_RETRY_MAX);
        Some(now)
    }
}

impl Backoff for CappedBackoff {
    fn reset(&mut self) {
        self.next = WATCH_RETRY_MIN;
    }
}

/// Starts watching `api` into a store. `keep` decides which objects the store holds: an
/// applied object that is not kept is removed from the store (it left our selection).
/// `touches` tells which Services a change of a kept object can change in the snapshot;
/// `None` when it cannot change it, and then it is stored without a rebuild. An update equal
/// to the stored object once stripped is dropped.
fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    index: usize,
    what: String,
    keep: impl Fn(&K) -> bool + Send + 'static,
    touches: impl Fn(&K) -> Option<Touched> + Send + 'static,
) -> (Store<K>, BoxStream<'static, Tick>)
where
    K: Strip + Clone + PartialEq + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stored = reader.clone();
    let stream = watcher(api, config)
        .backoff(CappedBackoff::default())
        .try_filter_map(move |event| {
            let event = match event {
                watcher::Event::InitApply(obj) if !keep(&obj) => None,
                watcher::Event::Apply(obj) if !keep(&obj) => {
                    let known = stored.get(&ObjectRef::from_obj(&obj)).is_some();
                    known.then_some(watcher::Event::Delete(obj))
                }
                watcher::Event::Apply(mut obj) => {
                    obj.strip();
                    let same = stored
                        .get(&ObjectRef::from_obj(&obj))
                        .is_some_and(|old| *old == obj);
                    (!same).then_some(watcher::Event::Apply(obj))
                }
                watcher::Event::Delete(obj) => stored
                    .get(&ObjectRef::from_obj(&obj))
                    .is_some()
                    .then_some(watcher::Event::Delete(obj)),
                other => Some(other),
            };
            futures::future::ready(Ok(event.map(|e| e.modify(Strip::strip))))
        })
        .reflect(writer)
        .map(move |result| Tick {
            watch: index,
            kind: match result {
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => TickKind::Progress,
                Ok(watcher::Event::InitDone) => TickKind::Changed {
                    init_done: true,
                    touched: Touched::All,
                },
                Ok(watcher::Event::Apply(obj) | watcher::Event::Delete(obj)) => {
                    match touches(&obj) {
                        Some(touched) => TickKind::Changed {
                            init_done: false,
                            touched,
                        },
                        None => TickKind::Progress,
                    }
                }
                Err(e) if is_gone(&e) => TickKind::Gone,
                Err(e) => TickKind::Failed(failure_message(&what, &e)),
            },
        })
        .boxed();
    (reader, stream)
}

/// Watches every EndpointSlice that names a Service into `slices` (as [`SliceView`]s). A
/// change touches the Services `served` says are served; a change to a slice of any other
/// Service is stored without a rebuild.
fn watch_slices(
    api: Api<EndpointSlice>,
    index: usize,
    what: String,
    slices: Arc<Mutex<SliceIndex>>,
    served: impl Fn(&ServiceName) -> bool + Send + 'static,
) -> BoxStream<'static, Tick> {
    watcher(api, watcher::Config::default().labels(SERVICE_NAME_LABEL))
        .backoff(CappedBackoff::default())
        .map(move |result| Tick {
            watch: index,
            kind: match result {
                Ok(event) => {
                    let init_done = matches!(event, watcher::Event::InitDone);
                    let touched = lock(&slices).apply(event);
                    match touched {
                        Touched::All => TickKind::Changed {
                            init_done,
                            touched: Touched::All,
                        },
                        Touched::Some(set) => {
                            let set: BTreeSet<ServiceName> =
                                set.into_iter().filter(|s| served(s)).collect();
                            if set.is_empty() {
                                TickKind::Progress
                            } else {
                                TickKind::Changed {
                                    init_done,
                                    touched: Touched::Some(set),
                                }
                            }
                        }
                    }
                }
                Err(e) if is_gone(&e) => TickKind::Gone,
                Err(e) => TickKind::Failed(failure_message(&what, &e)),
            },
        })
        .boxed()
}

/// The slice index, even if a panic elsewhere poisoned its lock (it is only ever replaced
/// or updated entry by entry, so it stays consistent).
fn lock(slices: &Mutex<SliceIndex>) -> MutexGuard<'_, SliceIndex> {
    slices.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A snapshot builder: given the Services changed since its last call, reads the stores and
/// returns the snapshot when it changed since the last one it returned (or always, when the
/// second argument is true), and every current warning.
type Build = Box<dyn FnMut(&Touched, bool) -> (Option<Snapshot>, Vec<Warning>) + Send>;

/// Turns watcher ticks into snapshot stream items.
struct Driver {
    source_name: String,
    watches: Vec<String>,
    ready: Vec<bool>,
    build: Build,
    last_warnings: BTreeSet<(String, &'static str, String)>,
    errored: bool,
    /// Services changed while not every watch had listed yet.
    pending: Touched,
    events: Option<EventPublisher>,
    /// The `edgelb.io/Placed` conditions (with Events on).
    conditions: Option<PlacementConditions>,
    out: VecDeque<edgelb_core::Result<Snapshot>>,
    builds: Arc<AtomicU64>,
}

impl Driver {
    async fn handle(&mut self, ticks: Vec<Tick>) {
        let mut changed = false;
        let mut touched = Touched::default();
        for tick in ticks {
            let what = self.watches.get(tick.watch).map_or("?", String::as_str);
            match tick.kind {
                TickKind::Progress => {}
                TickKind::Changed {
                    init_done,
                    touched: these,
                } => {
                    touched.merge(these);
                    if init_done && let Some(r) = self.ready.get_mut(tick.watch) {
                        if !*r {
                            tracing::debug!(watch = what, "initial list complete");
                        }
                        *r = true;
                    }
                    changed = true;
                }
                TickKind::Gone => {
                    tracing::info!(
                        watch = what,
                        "watch expired (410 Gone); relisting, keeping the current state meanwhile"
                    );
                }
                TickKind::Failed(message) => {
                    tracing::warn!(source = %self.source_name, "{message}");
                    self.errored = true;
                    self.out.push_back(Err(edgelb_core::Error::Source {
                        source_name: self.source_name.clone(),
                        message,
                    }));
                }
            }
        }
        if changed {
            self.pending.merge(touched);
        }
        if self.pending.is_empty() || !self.ready.iter().all(|r| *r) {
            return;
        }
        let touched = std::mem::take(&mut self.pending);
        self.builds.fetch_add(1, Ordering::Relaxed);
        // After an error, send the state again even when it is unchanged: it tells the
        // pipeline the source has recovered.
        let (snapshot, warnings) = (self.build)(&touched, self.errored);
        self.report(warnings).await;
        if let Some(snapshot) = snapshot {
            self.errored = false;
            tracing::debug!(
                source = %self.source_name,
                services = snapshot.services.len(),
                endpoints = snapshot.endpoint_count(),
                "new snapshot"
            );
            self.out.push_back(Ok(snapshot));
        }
    }

    /// Logs (and records as Events) the warnings that are new since the last build.
    async fn report(&mut self, warnings: Vec<Warning>) {
        let mut current = BTreeSet::new();
        for w in &warnings {
            let id = w.identity();
            let fresh = !self.last_warnings.contains(&id);
            if !current.insert(id) || !fresh {
                continue;
            }
            tracing::warn!(object = %w.object, reason = w.reason, "{}", w.message);
            if let (Some(events), Some(regarding)) = (&self.events, &w.regarding) {
                events
                    .publish(
                        regarding,
                        EventType::Warning,
                        w.reason,
                        "Sync",
                        &w.message,
                        &format!("{}/{}", w.object, w.reason),
                    )
                    .await;
            }
        }
        self.last_warnings = current;
        if let Some(conditions) = &mut self.conditions {
            conditions.sync(&warnings).await;
        }
    }
}

/// Runs the watchers and the driver as one stream of snapshots.
fn run(
    source_name: String,
    watches: Vec<(String, BoxStream<'static, Tick>)>,
    build: Build,
    events: Option<EventPublisher>,
    builds: Arc<AtomicU64>,
) -> BoxStream<'static, edgelb_core::Result<Snapshot>> {
    let (names, streams): (Vec<String>, Vec<_>) = watches.into_iter().unzip();
    let merged: SelectAll<BoxStream<'static, Tick>> = futures::stream::select_all(streams);
    let driver = Driver {
        source_name,
        ready: vec![false; names.len()],
        watches: names,
        build,
        last_warnings: BTreeSet::new(),
        errored: false,
        conditions: events
            .as_ref()
            .map(|e| PlacementConditions::new(e.client())),
        pending: Touched::default(),
        events,
        out: VecDeque::new(),
        builds,
    };
    futures::stream::unfold((merged, driver), |(mut merged, mut driver)| async move {
        loop {
            if let Some(item) = driver.out.pop_front() {
                return Some((item, (merged, driver)));
            }
            let first = merged.next().await?;
            // Take everything already waiting, so a burst (an initial list of thousands of
            // objects) costs one rebuild.
            let mut ticks = vec![first];
            while let Some(Some(tick)) = merged.next().now_or_never() {
                ticks.push(tick);
            }
            driver.handle(ticks).await;
        }
    })
    .boxed()
}

/// Inserts one Service's ports into the snapshot: a listen port already claimed by an earlier
/// Service, or an unusable port name, skips that port with a warning (the rest of the snapshot
/// stays valid, so one bad Service never blocks the others).
fn insert_ports(
    snapshot: &mut Snapshot,
    claimed: &mut Claims<'_>,
    svc: &Service,
    key: &ServiceKey,
    placement: &Placement,
    ports: BTreeMap<String, PortSpec>,
    warnings: &mut Vec<Warning>,
) {
    for (name, spec) in ports {
        let owner = format!("{key}:{name}");
        let claim = Claim {
            pool: placement.pool_name().to_owned(),
            address: placement.address,
            port: spec.listen_port,
        };
        if let Some((held, prev)) = claimed.holder(&claim) {
            warnings.push(Warning::about(
                svc,
                "PortConflict",
                format!(
                    "edge listen port {} of port {name:?} ({claim}) is already taken by {prev} ({held}) on the edges both are placed on; the older Service keeps it, and this port is not served until the conflict is resolved (another port, address or pool)",
                    spec.listen_port
                ),
            ));
            continue;
        }
        match snapshot.insert_port(key.clone(), &name, spec) {
            Ok(()) => {
                claimed.take(claim, owner);
            }
            Err(e) => warnings.push(Warning::about(
                svc,
                "InvalidName",
                format!("port skipped: {e}"),
            )),
        }
    }
    if let Some(spec) = snapshot.services.get_mut(key) {
        spec.pool.clone_from(&placement.pool);
        spec.address = placement.address;
    }
}

/// Whether `name` is a Service name the API server would accept: an RFC 1035 label (lowercase
/// letters, digits and `-`, starting with a letter, ending with a letter or digit, at most 63).
fn is_service_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.last() != Some(&b'-')
}

/// The Service's `ServiceKey`, or a warning when its names are not usable.
fn service_key(svc: &Service, warnings: &mut Vec<Warning>) -> Option<ServiceKey> {
    let name = svc.name_any();
    if !is_service_name(&name) {
        warnings.push(Warning::about(
            svc,
            "InvalidName",
            format!(
                "Service skipped: its name {name:?} is not a valid Service name (lowercase letters, digits and '-', starting with a letter, at most 63 characters)"
            ),
        ));
        return None;
    }
    match ServiceKey::new(svc.namespace().unwrap_or_default(), name) {
        Ok(key) => Some(key),
        Err(e) => {
            warnings.push(Warning::about(
                svc,
                "InvalidName",
                format!("Service skipped: {e}"),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_service_name;

    /// Issue 19 item 5: names the API server would refuse are refused here too.
    #[test]
    fn service_names_follow_rfc_1035() {
        for ok in ["web", "a", "web-1", "x2"] {
            assert!(is_service_name(ok), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in [
            "Web",
            "WEB",
            "1web",
            "web-",
            "",
            "web.shop",
            "we_b",
            long.as_str(),
        ] {
            assert!(!is_service_name(bad), "{bad}");
        }
    }
}
