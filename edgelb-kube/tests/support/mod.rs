//! A scripted Kubernetes API server behind `tower_test::mock::pair`, as kube-rs tests do.
//!
//! Each test gives a handler that answers every request (method, path, query, JSON body).
//! Watch requests answered with [`Reply::Watch`] get a streaming body the test feeds through a
//! [`WatchHandle`], newline-delimited like the real API server; dropping the handle ends the
//! stream (a dropped watch). Every request is recorded for assertions.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;

pub type ResBody = UnsyncBoxBody<Bytes, Infallible>;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub body: Option<Value>,
}

impl Recorded {
    pub fn is_watch(&self) -> bool {
        self.query.get("watch").map(String::as_str) == Some("true")
    }

    pub fn q(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    /// `GET /path` or `GET /path (watch)`.
    pub fn line(&self) -> String {
        format!(
            "{} {}{}",
            self.method,
            self.path,
            if self.is_watch() { " (watch)" } else { "" }
        )
    }
}

/// A gate a reply waits for: lets a test hold an answer back.
#[derive(Clone)]
pub struct Gate(Arc<watch::Sender<bool>>);

impl Gate {
    pub fn new() -> Self {
        Self(Arc::new(watch::channel(false).0))
    }
    pub fn open(&self) {
        self.0.send_replace(true);
    }
    async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }
}

/// How the server answers.
pub enum Reply {
    /// A JSON body with this HTTP status.
    Json(u16, Value),
    /// A `Status` failure object, as the API server sends for errors.
    Status(u16, &'static str, String),
    /// A watch stream the test feeds via [`FakeApi::next_watch`].
    Watch,
    /// The inner reply, once the gate opens.
    After(Gate, Box<Reply>),
}

impl Reply {
    pub fn ok(v: Value) -> Self {
        Self::Json(200, v)
    }
    pub fn not_found(what: &str) -> Self {
        Self::Status(404, "NotFound", format!("{what} not found"))
    }
}

/// A `Status` object as the API server writes it.
pub fn status_json(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code
    })
}

/// The test's end of an open watch.
pub struct WatchHandle {
    pub request: Recorded,
    tx: mpsc::UnboundedSender<Bytes>,
}

impl WatchHandle {
    fn line(&self, v: Value) {
        let mut text = v.to_string();
        text.push('\n');
        // A closed stream just means the client went away; the test notices elsewhere.
        let _ = self.tx.send(Bytes::from(text));
    }

    pub fn added(&self, obj: Value) {
        self.line(json!({"type": "ADDED", "object": obj}));
    }
    pub fn modified(&self, obj: Value) {
        self.line(json!({"type": "MODIFIED", "object": obj}));
    }
    pub fn deleted(&self, obj: Value) {
        self.line(json!({"type": "DELETED", "object": obj}));
    }
    /// A BOOKMARK, as the API server sends it: only kind, apiVersion and resourceVersion.
    pub fn bookmark(&self, api_version: &str, kind: &str, rv: &str) {
        self.line(json!({
            "type": "BOOKMARK",
            "object": {"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": rv}}
        }));
    }
    /// The ERROR event the API server sends when the watch's resourceVersion is too old; the
    /// server then closes the stream.
    pub fn gone(self, rv: &str) {
        self.line(json!({
            "type": "ERROR",
            "object": status_json(410, "Expired", &format!("too old resource version: {rv} (48950)"))
        }));
    }
    pub fn path(&self) -> &str {
        &self.request.path
    }
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// The fake API server.
pub struct FakeApi {
    pub client: Client,
    log: Arc<Mutex<Vec<Recorded>>>,
    watches: tokio::sync::Mutex<(mpsc::UnboundedReceiver<WatchHandle>, Vec<WatchHandle>)>,
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn parse_query(q: Option<&str>) -> BTreeMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn json_response(code: u16, v: &Value) -> Response<ResBody> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed_unsync())
        .unwrap()
}

impl FakeApi {
    pub fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<ResBody>>();
        let client = Client::new(svc, "default");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (wtx, wrx) = mpsc::unbounded_channel();
        let handler: Arc<Handler> = Arc::new(handler);
        let server_log = log.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let (parts, body) = req.into_parts();
                let bytes = body.collect_bytes().await.unwrap();
                let recorded = Recorded {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    query: parse_query(parts.uri.query()),
                    content_type: parts
                        .headers
                        .get("content-type")
                        .map(|v| v.to_str().unwrap().to_owned()),
                    body: (!bytes.is_empty()).then(|| serde_json::from_slice(&bytes).unwrap()),
                };
                server_log.lock().unwrap().push(recorded.clone());
                let reply = handler(&recorded);
                let wtx = wtx.clone();
                tokio::spawn(async move {
                    let mut reply = reply;
                    while let Reply::After(gate, inner) = reply {
                        gate.wait().await;
                        reply = *inner;
                    }
                    let response = match reply {
                        Reply::Json(code, v) => json_response(code, &v),
                        Reply::Status(code, reason, message) => {
                            json_response(code, &status_json(code, reason, &message))
                        }
                        Reply::Watch => {
                            let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
                            let _ = wtx.send(WatchHandle {
                                request: recorded,
                                tx,
                            });
                            let stream = UnboundedReceiverStream::new(rx)
                                .map(|b| Ok::<_, Infallible>(Frame::data(b)));
                            Response::builder()
                                .status(200)
                                .header("content-type", "application/json")
                                .body(StreamBody::new(stream).boxed_unsync())
                                .unwrap()
                        }
                        Reply::After(..) => unreachable!(),
                    };
                    send.send_response(response);
                });
            }
        });
        Self {
            client,
            log,
            watches: tokio::sync::Mutex::new((wrx, Vec::new())),
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    /// Requests other than GETs (lists, watches, reads).
    pub fn writes(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .collect()
    }

    /// The next watch opened on `path` (waits for it).
    pub async fn next_watch(&self, path: &str) -> WatchHandle {
        let mut guard = self.watches.lock().await;
        let (rx, pending) = &mut *guard;
        if let Some(i) = pending.iter().position(|w| w.request.path == path) {
            return pending.remove(i);
        }
        loop {
            let w = within(rx.recv()).await.expect("server stopped");
            if w.request.path == path {
                return w;
            }
            pending.push(w);
        }
    }
}

/// Fails the test if `fut` takes longer than 10 minutes (virtual time in paused tests).
pub async fn within<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(600), fut)
        .await
        .expect("timed out waiting")
}

/// Loads a JSON fixture from `tests/fixtures/`.
pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A list item as a watch event object: the API server adds kind and apiVersion there.
pub fn as_object(item: &Value, api_version: &str, kind: &str) -> Value {
    let mut obj = item.clone();
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    obj
}

/// Sets `metadata.resourceVersion`.
pub fn with_rv(mut obj: Value, rv: &str) -> Value {
    obj["metadata"]["resourceVersion"] = json!(rv);
    obj
}
