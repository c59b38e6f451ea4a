//! A small fake Kubernetes API server for tests that run edgelb as a separate process.
//!
//! It serves plain HTTP/1.1 on `127.0.0.1` from a thread of its own (so it keeps answering
//! while a test blocks), with an in-memory store of the resources edgelb uses: `Service`
//! (with a `status` subresource), `discovery.k8s.io/v1` `EndpointSlice`, `events.k8s.io/v1`
//! `Event`, `coordination.k8s.io/v1` `Lease`, and the custom resources external-dns's
//! `DNSEndpoint` and edgelb's `EdgeNode` (with a `status` subresource) and `EdgePool`, all
//! namespaced. What it answers:
//!
//! * LIST (`GET …/services`, cluster-wide or in a namespace) with `labelSelector` (`=`, `==`,
//!   `!=`, exists, `!key`, `in`, `notin`) and `fieldSelector` (`metadata.name`,
//!   `metadata.namespace`); paged by `limit` and `continue` as a real API server pages (a
//!   consistent snapshot per list; an unknown token is 410 `Expired`);
//! * WATCH (`?watch=true&resourceVersion=N`): newline-delimited `ADDED` / `MODIFIED` /
//!   `DELETED` events for every change after `N`, as the selectors see them (an object that
//!   stops matching is `DELETED`); from resourceVersion `0` or unset, the current objects
//!   first. The stream ends after `timeoutSeconds`, on [`FakeApiServer::end_watches`] or when
//!   the server stops. No `BOOKMARK`s, except the `k8s.io/initial-events-end` one of
//!   `sendInitialEvents=true`. History is kept until [`FakeApiServer::expire_watches`]; a watch
//!   from before that gets an `ERROR` event with a 410 Gone `Status`, as from a real API server;
//! * GET, POST (`generateName` supported; 409 AlreadyExists), PUT (409 Conflict on a stale
//!   `metadata.resourceVersion`), JSON merge PATCH (of the object or of `…/status`, which alone
//!   changes a Service's status) and DELETE of one object.
//!
//! One resourceVersion counts every change. Anything else (another path, method or patch
//! type) is answered with a `Status` error and recorded in [`FakeApiServer::unhandled`] (and
//! printed), so a test notices what the client asked for.
//!
//! ```no_run
//! use edgelb_tests::fake_apiserver::FakeApiServer;
//! use serde_json::json;
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let api = FakeApiServer::start()?;
//! api.apply_service(json!({
//!     "metadata": {"name": "web", "namespace": "shop"},
//!     "spec": {"type": "LoadBalancer", "loadBalancerClass": "edgelb.io/haproxy",
//!              "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
//! }))?;
//! api.write_kubeconfig(std::path::Path::new("/tmp/kubeconfig"))?; // KUBECONFIG for edgelb
//! // … run edgelb, change slices, then:
//! let patches = api.status_patches();
//! # Ok(()) }
//! ```

mod http;
mod pages;
mod store;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use store::{Resource, Store};

/// An API error, answered as a `Status` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code (404, 409, …).
    pub code: u16,
    /// The `Status` reason (`NotFound`, `Conflict`, …).
    pub reason: &'static str,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String) -> Self {
        Self {
            code,
            reason,
            message,
        }
    }

    fn bad_request(message: String) -> Self {
        Self::new(400, "BadRequest", message)
    }

    fn unavailable() -> Self {
        Self::new(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request".into(),
        )
    }

    /// The `Status` object the API server sends for this error.
    pub fn to_status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `PATCH`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The decoded query parameters.
    pub query: BTreeMap<String, String>,
    /// The HTTP status code answered.
    pub code: u16,
}

impl RecordedRequest {
    /// Whether it was a watch.
    pub fn is_watch(&self) -> bool {
        matches!(
            self.query.get("watch").map(String::as_str),
            Some("true" | "1")
        )
    }

    /// `GET /api/v1/services?labelSelector=…`, for messages.
    pub fn line(&self) -> String {
        let query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if query.is_empty() {
            format!("{} {}", self.method, self.path)
        } else {
            format!("{} {}?{}", self.method, self.path, query.join("&"))
        }
    }
}

/// A `PATCH` of an object's `status` subresource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPatch {
    /// The resource (`services`).
    pub resource: String,
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// The request's content type (`application/merge-patch+json`).
    pub content_type: String,
    /// The `fieldManager` query parameter.
    pub field_manager: Option<String>,
    /// The patch as sent (`Null` when it was not JSON).
    pub patch: Value,
    /// The HTTP status code answered.
    pub code: u16,
}

/// What the server records besides the objects.
#[derive(Debug, Default)]
struct Log {
    requests: Vec<RecordedRequest>,
    unhandled: Vec<RecordedRequest>,
    status_patches: Vec<StatusPatch>,
    events: Vec<Value>,
}

/// State shared by the server thread and the test.
#[derive(Debug)]
struct Shared {
    store: Mutex<Store>,
    log: Mutex<Log>,
    /// The resourceVersion after each change (wakes watches).
    changed: watch::Sender<u64>,
    /// `true` once the server stops.
    shutdown: watch::Sender<bool>,
    /// Bumped to end every open watch.
    end_watches: watch::Sender<u64>,
    open_watches: AtomicUsize,
    /// While set, every request is answered 503 (an API server outage).
    unavailable: AtomicBool,
    /// Added before every answer, in microseconds.
    latency_us: AtomicU64,
}

impl Shared {
    fn lock_store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the store and wakes the watches if it changed something.
    fn write<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let (out, rv) = {
            let mut store = self.lock_store();
            let out = f(&mut store);
            (out, store.resource_version())
        };
        self.changed.send_if_modified(|current| {
            let modified = *current != rv;
            *current = rv;
            modified
        });
        out
    }
}

/// The fake API server; stops when dropped.
#[derive(Debug)]
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeApiServer {
    /// Starts serving on a free port of `127.0.0.1`.
    pub fn start() -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            log: Mutex::new(Log::default()),
            changed: watch::channel(0).0,
            shutdown: watch::channel(false).0,
            end_watches: watch::channel(0).0,
            open_watches: AtomicUsize::new(0),
            unavailable: AtomicBool::new(false),
            latency_us: AtomicU64::new(0),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let app = axum::Router::new()
            .fallback(http::handle)
            .with_state(shared.clone());
        let mut stop = shared.shutdown.subscribe();
        let thread = std::thread::Builder::new()
            .name("fake-apiserver".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("fake API server: cannot listen: {e}");
                            return;
                        }
                    };
                    let mut graceful = stop.clone();
                    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                        let _ = graceful.wait_for(|s| *s).await;
                    });
                    tokio::select! {
                        served = serve => if let Err(e) = served {
                            eprintln!("fake API server: {e}");
                        },
                        // Connections that do not close in time are dropped with the runtime.
                        () = async {
                            let _ = stop.wait_for(|s| *s).await;
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        } => {}
                    }
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Self {
            addr,
            shared,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for this server: no TLS, no credentials, namespace `default`.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1
kind: Config
clusters:
  - name: fake
    cluster:
      server: {}
users:
  - name: fake
    user: {{}}
contexts:
  - name: fake
    context:
      cluster: fake
      user: fake
      namespace: default
current-context: fake
",
            self.url()
        )
    }

    /// Writes [`FakeApiServer::kubeconfig`] to `path` (point `KUBECONFIG` at it).
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    /// Creates or updates an object as `kubectl apply` would (its `kind` says which resource;
    /// namespace `default` when unset); returns it as stored.
    pub fn apply(&self, obj: Value) -> Result<Value, ApiError> {
        self.shared.write(|store| store.apply(obj))
    }

    fn apply_kind(&self, kind: &str, mut obj: Value) -> Result<Value, ApiError> {
        match obj["kind"].as_str() {
            None => obj["kind"] = json!(kind),
            Some(k) if k == kind => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "expected a {kind}, got a {other}"
                )));
            }
        }
        self.apply(obj)
    }

    /// [`FakeApiServer::apply`] for a `Service` (`kind` may be left out).
    pub fn apply_service(&self, obj: Value) -> Result<Value, ApiError> {
        self.apply_kind("Service", obj)
    }

    /// [`FakeApiServer::apply`] for an `EndpointSlice` (`kind` may be left out).
    pub fn apply_slice(&self, obj: Value) -> Result<Value, ApiError> {
        self.apply_kind("EndpointSlice", obj)
    }

    fn resource(kind: &str) -> Result<Resource, ApiError> {
        Resource::by_kind(kind)
            .ok_or_else(|| ApiError::bad_request(format!("unknown kind {kind:?}")))
    }

    /// Deletes an object of `kind`.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let res = Self::resource(kind)?;
        self.shared
            .write(|store| store.delete(res, namespace, name))
    }

    /// Deletes an `EndpointSlice`.
    pub fn delete_slice(&self, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.delete("EndpointSlice", namespace, name)
    }

    /// Deletes a `Service`.
    pub fn delete_service(&self, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.delete("Service", namespace, name)
    }

    /// An object of `kind` as stored now.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let res = Self::resource(kind).ok()?;
        self.shared.lock_store().get(res, namespace, name).ok()
    }

    /// A `Service` as stored now.
    pub fn service(&self, namespace: &str, name: &str) -> Option<Value> {
        self.get("Service", namespace, name)
    }

    /// A `Lease` as stored now.
    pub fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        self.get("Lease", namespace, name)
    }

    /// Every stored object of `kind`.
    pub fn objects(&self, kind: &str) -> Vec<Value> {
        Self::resource(kind)
            .map(|res| self.shared.lock_store().all(res))
            .unwrap_or_default()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock_store().resource_version()
    }

    /// Every `PATCH …/status` so far, failed ones included.
    pub fn status_patches(&self) -> Vec<StatusPatch> {
        self.shared.lock_log().status_patches.clone()
    }

    /// Every Event created so far, as stored.
    pub fn events(&self) -> Vec<Value> {
        self.shared.lock_log().events.clone()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock_log().requests.clone()
    }

    /// Requests the server does not serve (another path, method or patch type).
    pub fn unhandled(&self) -> Vec<RecordedRequest> {
        self.shared.lock_log().unhandled.clone()
    }

    /// Ends every open watch, as an API server does when a watch times out or the server
    /// restarts: clients watch again from the last resourceVersion they saw.
    pub fn end_watches(&self) {
        self.shared.end_watches.send_modify(|n| *n += 1);
    }

    /// Expires every watch: the history is compacted (as etcd does) after a write elsewhere in
    /// the cluster, so every watch, open or resumed from a resourceVersion seen so far, gets an
    /// `ERROR` event with a 410 Gone `Status` and its client must list again.
    pub fn expire_watches(&self) {
        self.shared.write(Store::expire);
    }

    /// Starts (`true`) or ends an outage: meanwhile every request gets a 503 and every open
    /// watch ends, as when the API server (or the path to it) is down.
    pub fn set_unavailable(&self, down: bool) {
        self.shared.unavailable.store(down, Ordering::SeqCst);
        if down {
            self.end_watches();
        }
    }

    /// Delays every answer by `latency` (as a remote or busy API server does).
    pub fn set_latency(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.shared.latency_us.store(us, Ordering::SeqCst);
    }

    /// Watches open right now.
    pub fn open_watches(&self) -> usize {
        self.shared.open_watches.load(Ordering::SeqCst)
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests;
