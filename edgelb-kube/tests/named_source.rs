//! The named-services source against a scripted API server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns too

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use edgelb_core::{
    Endpoint, EndpointSource, EndpointState, PortSpec, ProxyProtocol, ServiceKey, Snapshot,
};
use edgelb_kube::{NamedService, NamedServicesSource, PortRef};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use support::{FakeApi, Gate, Reply, as_object, fixture, with_rv, within};

const SVC_PATH: &str = "/api/v1/namespaces/kube-system/services";
const SLICE_PATH: &str = "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices";
const SLICE_V: &str = "discovery.k8s.io/v1";

fn traefik() -> ServiceKey {
    "kube-system/traefik".parse().unwrap()
}

fn ep(addr: &str, port: u16, state: EndpointState) -> Endpoint {
    let ip = addr.parse().unwrap();
    match state {
        EndpointState::Ready => Endpoint::ready(ip, port),
        EndpointState::Draining => Endpoint::draining(ip, port),
    }
}

use EndpointState::{Draining as D, Ready as R};

fn port(listen: u16, proxy: ProxyProtocol, eps: &[(&str, u16, EndpointState)]) -> PortSpec {
    eps.iter()
        .fold(PortSpec::new(listen, proxy), |p, (a, n, s)| {
            p.with_endpoint(ep(a, *n, *s))
        })
}

/// What the fixtures describe: two IPv4 slices of the main pods (one repeating 10.42.0.7 as
/// terminating: ready wins), a canary slice whose named target ports resolve to other numbers
/// and whose endpoint has no conditions, an IPv6 slice, a slice without our ports and an FQDN
/// slice (both ignored). Not-serving endpoints are left out; serving+terminating drain.
fn expected_initial() -> Snapshot {
    let mut snap = Snapshot::default();
    snap.insert_port(
        traefik(),
        "web",
        port(
            80,
            ProxyProtocol::V2,
            &[
                ("10.42.0.7", 8000, R),
                ("10.42.1.9", 8000, D),
                ("10.42.3.11", 9000, R),
                ("fd00:42::7", 8000, R),
            ],
        ),
    )
    .unwrap();
    snap.insert_port(
        traefik(),
        "websecure",
        port(
            443,
            ProxyProtocol::V2,
            &[
                ("10.42.0.7", 8443, R),
                ("10.42.1.9", 8443, D),
                ("10.42.3.11", 9443, R),
                ("fd00:42::7", 8443, R),
            ],
        ),
    )
    .unwrap();
    snap
}

fn slice_item(name: &str) -> Value {
    let list = fixture("traefik-slice-list.json");
    let item = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["metadata"]["name"] == name)
        .unwrap()
        .clone();
    as_object(&item, SLICE_V, "EndpointSlice")
}

fn service_object() -> Value {
    as_object(
        &fixture("traefik-service-list.json")["items"][0],
        "v1",
        "Service",
    )
}

/// The default server: lists from the fixtures, watches left open for the test.
fn default_api() -> FakeApi {
    FakeApi::start(
        |r| match (r.method.as_str(), r.path.as_str(), r.is_watch()) {
            (_, _, true) => Reply::Watch,
            ("GET", SVC_PATH, false) => Reply::ok(fixture("traefik-service-list.json")),
            ("GET", SLICE_PATH, false) => Reply::ok(fixture("traefik-slice-list.json")),
            _ => Reply::not_found(&r.path),
        },
    )
}

fn source(api: &FakeApi) -> BoxStream<'static, edgelb_core::Result<Snapshot>> {
    NamedServicesSource::new(api.client.clone(), vec![NamedService::new(traefik())])
        .unwrap()
        .snapshots()
}

async fn next_snapshot(s: &mut BoxStream<'static, edgelb_core::Result<Snapshot>>) -> Snapshot {
    within(s.next())
        .await
        .expect("stream ended")
        .expect("expected a snapshot, got an error")
}

/// Asserts nothing comes out of the stream for a while.
async fn assert_quiet(s: &mut BoxStream<'static, edgelb_core::Result<Snapshot>>, what: &str) {
    if let Ok(item) = tokio::time::timeout(Duration::from_secs(20), s.next()).await {
        panic!("{what}: expected nothing, got {item:?}");
    }
}

fn list_count(api: &FakeApi, path: &str) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.path == path && !r.is_watch())
        .count()
}

#[tokio::test(start_paused = true)]
async fn first_snapshot_waits_for_every_initial_list_and_converts_slices() {
    let gate = Gate::new();
    let held = gate.clone();
    let api = FakeApi::start(
        move |r| match (r.method.as_str(), r.path.as_str(), r.is_watch()) {
            (_, _, true) => Reply::Watch,
            ("GET", SVC_PATH, false) => Reply::ok(fixture("traefik-service-list.json")),
            ("GET", SLICE_PATH, false) => Reply::After(
                held.clone(),
                Box::new(Reply::ok(fixture("traefik-slice-list.json"))),
            ),
            _ => Reply::not_found(&r.path),
        },
    );
    let mut snaps = source(&api);

    // The Service is listed but its slices are not: no snapshot yet, not even an empty one.
    assert_quiet(&mut snaps, "before the EndpointSlice list").await;
    gate.open();
    assert_eq!(next_snapshot(&mut snaps).await, expected_initial());

    let reqs = api.requests();
    let svc_list = reqs
        .iter()
        .find(|r| r.path == SVC_PATH && !r.is_watch())
        .unwrap();
    assert_eq!(svc_list.q("fieldSelector"), Some("metadata.name=traefik"));
    let slice_list = reqs
        .iter()
        .find(|r| r.path == SLICE_PATH && !r.is_watch())
        .unwrap();
    assert_eq!(
        slice_list.q("labelSelector"),
        Some("kubernetes.io/service-name=traefik")
    );
    // The watches start where the lists left off, with bookmarks on.
    let w = api.next_watch(SLICE_PATH).await;
    assert_eq!(w.request.q("resourceVersion"), Some("48215"));
    assert_eq!(w.request.q("allowWatchBookmarks"), Some("true"));
    assert_eq!(
        w.request.q("labelSelector"),
        Some("kubernetes.io/service-name=traefik")
    );
    let w = api.next_watch(SVC_PATH).await;
    assert_eq!(w.request.q("resourceVersion"), Some("48211"));
}

#[tokio::test(start_paused = true)]
async fn watch_events_produce_full_snapshots() {
    let api = default_api();
    let mut snaps = source(&api);
    assert_eq!(next_snapshot(&mut snaps).await, expected_initial());
    let slices = api.next_watch(SLICE_PATH).await;
    let services = api.next_watch(SVC_PATH).await;

    // A BOOKMARK changes nothing.
    slices.bookmark(SLICE_V, "EndpointSlice", "48300");
    assert_quiet(&mut snaps, "after a bookmark").await;

    // MODIFIED: 10.42.0.7 starts terminating (still serving) → it drains.
    let mut main = with_rv(slice_item("traefik-8mv5q"), "48310");
    main["endpoints"][0]["conditions"] =
        json!({"ready": false, "serving": true, "terminating": true});
    slices.modified(main);
    let snap = next_snapshot(&mut snaps).await;
    let web = &snap.services[&traefik()].ports["web"];
    assert_eq!(
        web.endpoints().collect::<Vec<_>>(),
        vec![
            ep("10.42.0.7", 8000, D),
            ep("10.42.1.9", 8000, D),
            ep("10.42.3.11", 9000, R),
            ep("fd00:42::7", 8000, R),
        ]
    );

    // ADDED: a new IPv6 slice with an endpoint without conditions (counts as ready).
    let mut v6 = with_rv(slice_item("traefik-v6-p7dkx"), "48320");
    v6["metadata"]["name"] = json!("traefik-v6-qq2lm");
    v6["endpoints"] = json!([{"addresses": ["fd00:42::8"], "nodeName": "node-b"}]);
    slices.added(v6);
    let snap = next_snapshot(&mut snaps).await;
    let websecure = &snap.services[&traefik()].ports["websecure"];
    assert_eq!(
        websecure
            .endpoints
            .get(&"[fd00:42::8]:8443".parse().unwrap()),
        Some(&R)
    );

    // DELETED: the canary slice goes, and its endpoint with it.
    slices.deleted(with_rv(slice_item("traefik-zt4lc"), "48330"));
    let snap = next_snapshot(&mut snaps).await;
    for (_, name, p) in snap.ports() {
        assert!(
            p.endpoints()
                .all(|e| e.addr.ip().to_string() != "10.42.3.11"),
            "{name}: {p:?}"
        );
    }

    // The Service drops its `web` port: the port leaves the snapshot.
    let mut svc = with_rv(service_object(), "48340");
    svc["spec"]["ports"] =
        json!([{"name": "websecure", "protocol": "TCP", "port": 443, "targetPort": "websecure"}]);
    services.modified(svc.clone());
    let snap = next_snapshot(&mut snaps).await;
    assert_eq!(
        snap.services[&traefik()]
            .ports
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        vec!["websecure".to_owned()]
    );

    // The Service is deleted: it leaves the snapshot (a true empty state).
    services.deleted(with_rv(svc, "48350"));
    let snap = next_snapshot(&mut snaps).await;
    assert!(snap.services.is_empty(), "{snap:?}");
}

#[tokio::test(start_paused = true)]
async fn gone_watch_relists_without_a_false_empty_snapshot_or_error() {
    let lists = Arc::new(AtomicUsize::new(0));
    let gate = Gate::new();
    let (count, held) = (lists.clone(), gate.clone());
    let api = FakeApi::start(
        move |r| match (r.method.as_str(), r.path.as_str(), r.is_watch()) {
            (_, _, true) => Reply::Watch,
            ("GET", SVC_PATH, false) => Reply::ok(fixture("traefik-service-list.json")),
            ("GET", SLICE_PATH, false) => {
                if count.fetch_add(1, Ordering::SeqCst) == 0 {
                    Reply::ok(fixture("traefik-slice-list.json"))
                } else {
                    // The relist: the canary slice went away while we were not watching.
                    let mut list = fixture("traefik-slice-list.json");
                    list["metadata"]["resourceVersion"] = json!("49000");
                    list["items"]
                        .as_array_mut()
                        .unwrap()
                        .retain(|s| s["metadata"]["name"] != "traefik-zt4lc");
                    Reply::After(held.clone(), Box::new(Reply::ok(list)))
                }
            }
            _ => Reply::not_found(&r.path),
        },
    );
    let mut snaps = source(&api);
    assert_eq!(next_snapshot(&mut snaps).await, expected_initial());

    let slices = api.next_watch(SLICE_PATH).await;
    slices.gone("48215");
    // While the relist is under way: no error item, and no (empty or partial) snapshot.
    assert_quiet(&mut snaps, "during the relist").await;
    assert_eq!(lists.load(Ordering::SeqCst), 2, "the source relisted");
    gate.open();
    let snap = next_snapshot(&mut snaps).await;
    let mut expected = expected_initial();
    for spec in expected
        .services
        .get_mut(&traefik())
        .unwrap()
        .ports
        .values_mut()
    {
        spec.endpoints
            .retain(|addr, _| addr.ip().to_string() != "10.42.3.11");
    }
    assert_eq!(snap, expected);
    // The new watch continues from the relist.
    let w = api.next_watch(SLICE_PATH).await;
    assert_eq!(w.request.q("resourceVersion"), Some("49000"));
}

#[tokio::test(start_paused = true)]
async fn dropped_watch_resumes_from_the_last_bookmark_without_relisting() {
    let api = default_api();
    let mut snaps = source(&api);
    assert_eq!(next_snapshot(&mut snaps).await, expected_initial());
    let slices = api.next_watch(SLICE_PATH).await;
    slices.bookmark(SLICE_V, "EndpointSlice", "48400");
    drop(slices); // the connection drops

    // (Polling the source is what drives its watchers.)
    assert_quiet(&mut snaps, "after a dropped watch").await;
    let resumed = api.next_watch(SLICE_PATH).await;
    assert_eq!(resumed.request.q("resourceVersion"), Some("48400"));
    assert_eq!(list_count(&api, SLICE_PATH), 1, "no relist after a drop");

    // Events on the resumed watch flow as before.
    slices_deleted_main(&resumed);
    let snap = next_snapshot(&mut snaps).await;
    assert!(
        snap.services[&traefik()].ports["web"]
            .endpoints
            .contains_key(&"10.42.0.7:8000".parse().unwrap()),
        "10.42.0.7 is still in the duplicate slice (draining): {snap:?}"
    );
    assert_eq!(
        snap.services[&traefik()].ports["web"].endpoints[&"10.42.0.7:8000".parse().unwrap()],
        D
    );
}

fn slices_deleted_main(w: &support::WatchHandle) {
    w.deleted(with_rv(slice_item("traefik-8mv5q"), "48410"));
}

#[tokio::test(start_paused = true)]
async fn list_errors_are_reported_then_retried_with_backoff() {
    let lists = Arc::new(AtomicUsize::new(0));
    let count = lists.clone();
    let api = FakeApi::start(
        move |r| match (r.method.as_str(), r.path.as_str(), r.is_watch()) {
            (_, _, true) => Reply::Watch,
            ("GET", SVC_PATH, false) => Reply::ok(fixture("traefik-service-list.json")),
            ("GET", SLICE_PATH, false) => {
                if count.fetch_add(1, Ordering::SeqCst) == 0 {
                    Reply::Status(
                    403,
                    "Forbidden",
                    "endpointslices.discovery.k8s.io is forbidden: User \"system:serviceaccount:edgelb:edgelb\" cannot list resource \"endpointslices\" in API group \"discovery.k8s.io\" in the namespace \"kube-system\"".into(),
                )
                } else {
                    Reply::ok(fixture("traefik-slice-list.json"))
                }
            }
            _ => Reply::not_found(&r.path),
        },
    );
    let mut snaps = source(&api);
    let err = within(snaps.next()).await.unwrap().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("EndpointSlices of Service kube-system/traefik")
            && msg.contains("forbidden")
            && msg.contains("deploy/rbac.yaml"),
        "{msg}"
    );
    assert!(matches!(err, edgelb_core::Error::Source { .. }), "{err:?}");
    // After the backoff the list is retried and the first snapshot comes.
    assert_eq!(next_snapshot(&mut snaps).await, expected_initial());
    assert_eq!(lists.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn port_mappings_and_missing_services() {
    let api = FakeApi::start(
        |r| match (r.method.as_str(), r.path.as_str(), r.is_watch()) {
            (_, _, true) => Reply::Watch,
            ("GET", SVC_PATH, false) => Reply::ok(fixture("traefik-service-list.json")),
            ("GET", SLICE_PATH, false) => Reply::ok(fixture("traefik-slice-list.json")),
            // The other Service does not exist (yet): empty lists.
            ("GET", "/api/v1/namespaces/shop/services", false) => Reply::ok(
                json!({"kind": "ServiceList", "apiVersion": "v1", "metadata": {"resourceVersion": "48500"}, "items": []}),
            ),
            ("GET", "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices", false) => {
                Reply::ok(
                    json!({"kind": "EndpointSliceList", "apiVersion": SLICE_V, "metadata": {"resourceVersion": "48500"}, "items": []}),
                )
            }
            _ => Reply::not_found(&r.path),
        },
    );
    let mut mapped = NamedService::new(traefik())
        .with_port(
            PortRef::Name("websecure".into()),
            Some(8443),
            Some(ProxyProtocol::V1),
        )
        .with_port(PortRef::Number(80), None, None)
        .with_port(PortRef::Name("does-not-exist".into()), None, None);
    mapped.proxy_protocol = ProxyProtocol::None;
    let missing = NamedService::new("shop/web".parse().unwrap());
    let mut snaps = NamedServicesSource::new(api.client.clone(), vec![mapped, missing])
        .unwrap()
        .snapshots();
    let snap = next_snapshot(&mut snaps).await;
    let ports = &snap.services[&traefik()].ports;
    assert_eq!(ports.len(), 2, "{ports:?}");
    assert_eq!(
        (
            ports["websecure"].listen_port,
            ports["websecure"].proxy_protocol
        ),
        (8443, ProxyProtocol::V1)
    );
    assert_eq!(
        (ports["web"].listen_port, ports["web"].proxy_protocol),
        (80, ProxyProtocol::None)
    );
    assert_eq!(ports["web"].endpoints.len(), 4);
    assert_eq!(snap.services.len(), 1, "the missing Service is left out");
}

#[test]
fn invalid_named_service_lists_are_rejected() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let api = default_api();
        let err = NamedServicesSource::new(api.client.clone(), vec![])
            .err()
            .unwrap();
        assert!(err.to_string().contains("at least one Service"), "{err}");
        let twice = vec![NamedService::new(traefik()), NamedService::new(traefik())];
        let err = NamedServicesSource::new(api.client.clone(), twice)
            .err()
            .unwrap();
        assert!(err.to_string().contains("listed twice"), "{err}");
    });
}

/// The Service's source ranges and session affinity reach the snapshot; ranges that do not
/// parse keep the last valid ones; the legacy annotation counts while the field is empty.
#[tokio::test(start_paused = true)]
async fn source_ranges_and_affinity_follow_the_service() {
    let api = default_api();
    let mut snaps = source(&api);
    let first = next_snapshot(&mut snaps).await;
    let spec = &first.services[&traefik()];
    assert_eq!((&spec.source_ranges, spec.session_affinity), (&None, None));
    let _slices = api.next_watch(SLICE_PATH).await;
    let services = api.next_watch(SVC_PATH).await;
    let ranges = |snap: &Snapshot| -> Option<Vec<String>> {
        snap.services[&traefik()]
            .source_ranges
            .as_ref()
            .map(|r| r.iter().map(ToString::to_string).collect())
    };

    let mut svc = with_rv(service_object(), "48400");
    svc["spec"]["loadBalancerSourceRanges"] = json!(["192.168.0.0/16", " fd00::/8 "]);
    svc["spec"]["sessionAffinity"] = json!("ClientIP");
    svc["spec"]["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 60}});
    services.modified(svc.clone());
    let snap = next_snapshot(&mut snaps).await;
    assert_eq!(
        ranges(&snap),
        Some(vec!["192.168.0.0/16".to_owned(), "fd00::/8".to_owned()])
    );
    let affinity = snap.services[&traefik()].session_affinity;
    assert_eq!(affinity.map(|a| a.timeout_seconds), Some(60));

    // A bad entry (and a port dropped, so there is a new snapshot to look at): the valid
    // ranges stay.
    svc["metadata"]["resourceVersion"] = json!("48410");
    svc["spec"]["loadBalancerSourceRanges"] = json!(["10.0.0.0/8", "10.0.0.0/33"]);
    svc["spec"]["ports"] =
        json!([{"name": "websecure", "protocol": "TCP", "port": 443, "targetPort": "websecure"}]);
    services.modified(svc.clone());
    let snap = next_snapshot(&mut snaps).await;
    assert_eq!(snap.services[&traefik()].ports.len(), 1);
    assert_eq!(
        ranges(&snap),
        Some(vec!["192.168.0.0/16".to_owned(), "fd00::/8".to_owned()])
    );

    // The field emptied, the legacy annotation set: the annotation's ranges.
    svc["metadata"]["resourceVersion"] = json!("48420");
    svc["spec"]["loadBalancerSourceRanges"] = json!([]);
    svc["metadata"]["annotations"] =
        json!({"service.beta.kubernetes.io/load-balancer-source-ranges": "203.0.113.0/24"});
    services.modified(svc);
    let snap = next_snapshot(&mut snaps).await;
    assert_eq!(ranges(&snap), Some(vec!["203.0.113.0/24".to_owned()]));
}
