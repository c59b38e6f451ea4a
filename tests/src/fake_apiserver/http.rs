//! The HTTP side: routes Kubernetes API paths to the store, streams watches.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::store::{Resource, Selector};
use super::{ApiError, RecordedRequest, Shared, StatusPatch};

/// The largest request body read.
const MAX_BODY: usize = 16 << 20;

/// How long a watch lasts without `timeoutSeconds` (real API servers pick 30 to 60 minutes).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// Percent-decoding of a query component (`+` is a space).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
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
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// What a path names.
struct Target {
    res: Resource,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

/// `/api/v1/…` or `/apis/GROUP/VERSION/…`, then `PLURAL`, `namespaces/NS/PLURAL`,
/// `namespaces/NS/PLURAL/NAME` or `namespaces/NS/PLURAL/NAME/status`.
fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group_version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ((*version).to_owned(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        _ => (None, rest),
    };
    let (plural, name, status) = match (rest, &namespace) {
        ([plural], _) => (*plural, None, false),
        ([plural, name], Some(_)) => (*plural, Some((*name).to_owned()), false),
        ([plural, name, "status"], Some(_)) => (*plural, Some((*name).to_owned()), true),
        _ => return None,
    };
    Some(Target {
        res: Resource::by_path(&group_version, plural)?,
        namespace,
        name,
        status,
    })
}

/// A watch to stream.
struct WatchSpec {
    res: Resource,
    namespace: Option<String>,
    selector: Selector,
    /// `None`: start with the current objects (resourceVersion unset or `0`).
    since: Option<u64>,
    timeout: Duration,
    send_initial_events: bool,
}

/// How a request is answered.
enum Reply {
    Json(u16, Value),
    Watch(WatchSpec),
    /// An API error for a request the server understood.
    Error(ApiError),
    /// A request the server does not serve: logged so a test author notices.
    Unhandled(ApiError),
}

impl From<Result<Value, ApiError>> for Reply {
    fn from(result: Result<Value, ApiError>) -> Self {
        match result {
            Ok(v) => Self::Json(200, v),
            Err(e) => Self::Error(e),
        }
    }
}

fn json_body(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the request body is not JSON: {e}")))
}

/// Answers one request from the store.
fn route(
    shared: &Shared,
    method: &str,
    path: &str,
    query: &BTreeMap<String, String>,
    content_type: Option<&str>,
    body: &[u8],
) -> Reply {
    let Some(target) = parse_path(path) else {
        return Reply::Unhandled(ApiError::new(
            404,
            "NotFound",
            format!("the fake API server does not serve {path}"),
        ));
    };
    let Target {
        res,
        namespace,
        name,
        status,
    } = target;
    let ns = namespace.as_deref();
    let not_allowed = || {
        Reply::Unhandled(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("the fake API server does not serve {method} {path}"),
        ))
    };
    let mut store = shared.lock_store();
    match (method, ns, name.as_deref()) {
        ("GET", _, None) => {
            let selector = match Selector::parse(
                query.get("labelSelector").map(String::as_str),
                query.get("fieldSelector").map(String::as_str),
            ) {
                Ok(s) => s,
                Err(e) => return Reply::Error(e),
            };
            let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
            if !watch {
                let limit = query.get("limit").and_then(|l| l.parse::<usize>().ok());
                return match query.get("continue").filter(|c| !c.is_empty()) {
                    Some(token) => match store.pages.next(token, limit) {
                        Ok(page) => Reply::Json(200, page),
                        Err(e) => Reply::Error(e),
                    },
                    None => {
                        let list = store.list(res, ns, &selector);
                        Reply::Json(200, store.pages.first(list, limit))
                    }
                };
            }
            let since = match query.get("resourceVersion").map(String::as_str) {
                None | Some("" | "0") => None,
                Some(rv) => match rv.parse::<u64>() {
                    Ok(rv) => Some(rv),
                    Err(_) => {
                        return Reply::Error(ApiError::bad_request(format!(
                            "resourceVersion: Invalid value: {rv:?}"
                        )));
                    }
                },
            };
            let timeout = query
                .get("timeoutSeconds")
                .and_then(|t| t.parse::<u64>().ok())
                .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs);
            Reply::Watch(WatchSpec {
                res,
                namespace,
                selector,
                since,
                timeout,
                send_initial_events: query.get("sendInitialEvents").map(String::as_str)
                    == Some("true"),
            })
        }
        ("GET", Some(ns), Some(name)) => store.get(res, ns, name).into(),
        ("POST", Some(ns), None) => {
            let created = json_body(body).and_then(|b| store.create(res, ns, b));
            if let (Ok(event), "events") = (&created, res.plural) {
                shared.lock_log().events.push(event.clone());
            }
            match created {
                Ok(v) => Reply::Json(201, v),
                Err(e) => Reply::Error(e),
            }
        }
        ("PUT", Some(ns), Some(name)) if !status => json_body(body)
            .and_then(|b| store.replace(res, ns, name, b))
            .into(),
        ("PATCH", Some(ns), Some(name)) => {
            let content_type = content_type.unwrap_or("").to_owned();
            if !content_type.starts_with("application/merge-patch+json") {
                return Reply::Unhandled(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the fake API server only takes JSON merge patches, not {content_type:?}"
                    ),
                ));
            }
            let patch = json_body(body);
            let result = patch
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|p| store.merge(res, ns, name, p, status));
            if status {
                shared.lock_log().status_patches.push(StatusPatch {
                    resource: res.plural.to_owned(),
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                    content_type,
                    field_manager: query.get("fieldManager").cloned(),
                    patch: patch.unwrap_or(Value::Null),
                    code: result.as_ref().map_or_else(|e| e.code, |_| 200),
                });
            }
            result.into()
        }
        ("DELETE", Some(ns), Some(name)) => store.delete(res, ns, name).into(),
        _ => not_allowed(),
    }
}

fn json_response(code: u16, body: &Value) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Every request the server gets.
pub(crate) async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let query = parse_query(parts.uri.query());
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let latency = shared.latency_us.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_micros(latency)).await;
    }
    let reply = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(_) if shared.unavailable.load(Ordering::SeqCst) => Reply::Error(ApiError::unavailable()),
        Ok(bytes) => route(
            &shared,
            &method,
            &path,
            &query,
            content_type.as_deref(),
            &bytes,
        ),
        Err(e) => Reply::Error(ApiError::bad_request(format!(
            "reading the request body: {e}"
        ))),
    };
    let mut recorded = RecordedRequest {
        method,
        path,
        query,
        code: 200,
    };
    let response = match reply {
        Reply::Json(code, body) => {
            recorded.code = code;
            json_response(code, &body)
        }
        Reply::Error(e) => {
            recorded.code = e.code;
            json_response(e.code, &e.to_status())
        }
        Reply::Unhandled(e) => {
            recorded.code = e.code;
            eprintln!(
                "fake API server: unhandled request {}: {} {}",
                recorded.line(),
                e.code,
                e.message
            );
            shared.lock_log().unhandled.push(recorded.clone());
            json_response(e.code, &e.to_status())
        }
        Reply::Watch(spec) => stream_watch(shared.clone(), spec),
    };
    tracing::debug!(request = %recorded.line(), code = recorded.code, "fake API server");
    shared.lock_log().requests.push(recorded);
    response
}

/// Counts a watch as open while it lives.
struct OpenWatch(Arc<Shared>);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.open_watches.fetch_sub(1, Ordering::SeqCst);
    }
}

struct WatchState {
    shared: Arc<Shared>,
    spec: WatchSpec,
    /// Changes up to this resourceVersion have been sent.
    cursor: u64,
    initial: Option<String>,
    changed: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    /// Changes when the test ends every open watch.
    ended: watch::Receiver<u64>,
    /// The answer was a 410 Gone: end after sending it.
    finished: bool,
    deadline: tokio::time::Instant,
    _open: OpenWatch,
}

/// The ERROR watch event carrying `err` as a `Status`.
fn gone_event(err: &ApiError) -> Value {
    json!({"type": "ERROR", "object": err.to_status()})
}

fn lines(events: &[Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

/// A watch response: newline-delimited events, every change after the start point, until the
/// timeout or the server's shutdown.
fn stream_watch(shared: Arc<Shared>, spec: WatchSpec) -> Response {
    // Subscribe before reading the store, so no change falls between the two.
    let mut changed = shared.changed.subscribe();
    changed.borrow_and_update();
    let shutdown = shared.shutdown.subscribe();
    let mut ended = shared.end_watches.subscribe();
    ended.borrow_and_update();
    let mut finished = false;
    let (initial, cursor) = {
        let store = shared.lock_store();
        match spec.since {
            Some(rv) => match store.gone(rv) {
                // A real API server answers 200 with an ERROR event, then closes the stream.
                Some(gone) => {
                    finished = true;
                    (vec![gone_event(&gone)], rv)
                }
                None => (Vec::new(), rv),
            },
            None => {
                let mut events =
                    store.current_as_added(spec.res, spec.namespace.as_deref(), &spec.selector);
                if spec.send_initial_events {
                    events.push(json!({
                        "type": "BOOKMARK",
                        "object": {
                            "kind": spec.res.kind,
                            "apiVersion": spec.res.group_version,
                            "metadata": {
                                "resourceVersion": store.resource_version().to_string(),
                                "annotations": {"k8s.io/initial-events-end": "true"},
                            },
                        },
                    }));
                }
                (events, store.resource_version())
            }
        }
    };
    shared.open_watches.fetch_add(1, Ordering::SeqCst);
    let state = WatchState {
        shared: shared.clone(),
        deadline: tokio::time::Instant::now() + spec.timeout,
        spec,
        cursor,
        initial: (!initial.is_empty()).then(|| lines(&initial)),
        changed,
        shutdown,
        ended,
        finished,
        _open: OpenWatch(shared),
    };
    let stream = futures::stream::unfold(state, |mut st| async move {
        if let Some(initial) = st.initial.take() {
            return Some((Ok::<_, Infallible>(initial), st));
        }
        if st.finished {
            return None;
        }
        loop {
            st.changed.borrow_and_update();
            let batch = {
                let store = st.shared.lock_store();
                match store.gone(st.cursor) {
                    Some(gone) => Err(gone),
                    None => {
                        let events = store.events_since(
                            st.cursor,
                            st.spec.res,
                            st.spec.namespace.as_deref(),
                            &st.spec.selector,
                        );
                        st.cursor = st.cursor.max(store.resource_version());
                        Ok(events)
                    }
                }
            };
            let events = match batch {
                Ok(events) => events,
                // Changes this watch had not sent yet were compacted away.
                Err(gone) => {
                    st.finished = true;
                    return Some((Ok(lines(&[gone_event(&gone)])), st));
                }
            };
            if !events.is_empty() {
                return Some((Ok(lines(&events)), st));
            }
            tokio::select! {
                changed = st.changed.changed() => if changed.is_err() { return None },
                () = tokio::time::sleep_until(st.deadline) => return None,
                _ = st.shutdown.wait_for(|stop| *stop) => return None,
                _ = st.ended.changed() => return None,
            }
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries() {
        let t = parse_path("/api/v1/services").unwrap();
        assert_eq!((t.res.kind, t.namespace, t.name), ("Service", None, None));
        let t = parse_path("/api/v1/namespaces/shop/services/web/status").unwrap();
        assert_eq!(
            (t.namespace.as_deref(), t.name.as_deref(), t.status),
            (Some("shop"), Some("web"), true)
        );
        let t = parse_path("/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices").unwrap();
        assert_eq!(t.res.kind, "EndpointSlice");
        assert!(parse_path("/api/v1/namespaces/shop").is_none());
        assert!(parse_path("/api/v1/pods").is_none());
        assert!(parse_path("/apis/discovery.k8s.io/v1beta1/endpointslices").is_none());
        assert!(parse_path("/version").is_none());
        let q = parse_query(Some(
            "labelSelector=kubernetes.io%2Fservice-name%3Dweb&watch=true&x=a+b&bad=%zz",
        ));
        assert_eq!(q["labelSelector"], "kubernetes.io/service-name=web");
        assert_eq!(q["x"], "a b");
        assert_eq!(q["bad"], "%zz");
    }
}
