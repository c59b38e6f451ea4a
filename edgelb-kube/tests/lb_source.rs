//! The LoadBalancer-class source against a scripted API server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns too

mod support;

use std::time::Duration;

use edgelb_core::{Endpoint, EndpointSource, PortSpec, ProxyProtocol, ServiceKey, Snapshot};
use edgelb_kube::{EventConfig, EventPublisher, LoadBalancerConfig, LoadBalancerSource};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use support::{FakeApi, Recorded, Reply, as_object, fixture, with_rv, within};

const SVC_PATH: &str = "/api/v1/services";
const SLICE_PATH: &str = "/apis/discovery.k8s.io/v1/endpointslices";

fn key(s: &str) -> ServiceKey {
    s.parse().unwrap()
}

fn ready(a: &str, p: u16) -> Endpoint {
    Endpoint::ready(a.parse().unwrap(), p)
}

fn draining(a: &str, p: u16) -> Endpoint {
    Endpoint::draining(a.parse().unwrap(), p)
}

fn port(listen: u16, proxy: ProxyProtocol, eps: &[Endpoint]) -> PortSpec {
    eps.iter()
        .fold(PortSpec::new(listen, proxy), |p, e| p.with_endpoint(*e))
}

fn expected_initial() -> Snapshot {
    let mut s = Snapshot::default();
    let v1 = ProxyProtocol::V1;
    s.insert_port(
        key("shop/storefront"),
        "http",
        port(
            80,
            v1,
            &[
                ready("10.42.0.20", 8080),
                draining("10.42.1.21", 8080),
                ready("10.42.2.22", 8080),
            ],
        ),
    )
    .unwrap();
    s.insert_port(
        key("shop/storefront"),
        "https",
        port(
            443,
            v1,
            &[
                ready("10.42.0.20", 8443),
                draining("10.42.1.21", 8443),
                ready("10.42.2.22", 8443),
            ],
        ),
    )
    .unwrap();
    // Unnamed port: named by its number; default PROXY v2; IPv6 slice.
    s.insert_port(
        key("shop/api"),
        "8443",
        port(8443, ProxyProtocol::V2, &[ready("fd00:42::30", 9443)]),
    )
    .unwrap();
    // The UDP port is skipped, the TCP one is served without PROXY (annotation `none`).
    s.insert_port(
        key("dns/coredns-ext"),
        "dns-tcp",
        port(53, ProxyProtocol::None, &[ready("10.42.0.53", 53)]),
    )
    .unwrap();
    // `late` wants port 80 too: the older `storefront` keeps it; `late` keeps its other port.
    s.insert_port(
        key("shop/late"),
        "admin",
        port(8081, ProxyProtocol::V2, &[ready("10.42.3.40", 8081)]),
    )
    .unwrap();
    s
}

fn api() -> FakeApi {
    FakeApi::start(
        |r| match (r.method.as_str(), r.path.as_str(), r.is_watch()) {
            (_, _, true) => Reply::Watch,
            ("GET", SVC_PATH, false) => Reply::ok(fixture("lb-service-list.json")),
            ("GET", SLICE_PATH, false) => Reply::ok(fixture("lb-slice-list.json")),
            ("POST", p, false) if p.ends_with("/events") => {
                let mut created = r.body.clone().unwrap();
                let name = format!(
                    "{}{:x}",
                    created["metadata"]["generateName"].as_str().unwrap(),
                    r.path.len()
                );
                created["metadata"]["name"] = json!(name);
                created["metadata"]["resourceVersion"] = json!("52000");
                Reply::Json(201, created)
            }
            _ => Reply::not_found(&r.path),
        },
    )
}

fn service(name: &str) -> Value {
    let list = fixture("lb-service-list.json");
    let item = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["metadata"]["name"] == name)
        .unwrap()
        .clone();
    as_object(&item, "v1", "Service")
}

async fn next_snapshot(s: &mut BoxStream<'static, edgelb_core::Result<Snapshot>>) -> Snapshot {
    within(s.next())
        .await
        .expect("stream ended")
        .expect("expected a snapshot")
}

fn events(api: &FakeApi) -> Vec<Recorded> {
    api.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/events"))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn serves_its_class_with_annotations_and_records_warnings() {
    let api = api();
    let events_cfg = EventConfig {
        instance: "edgelb-7d9f6-abcde".into(),
        ..EventConfig::default()
    };
    let publisher = EventPublisher::new(api.client.clone(), events_cfg);
    let mut snaps = LoadBalancerSource::new(api.client.clone(), LoadBalancerConfig::default())
        .unwrap()
        .with_events(publisher)
        .snapshots();
    let snap = next_snapshot(&mut snaps).await;
    assert_eq!(snap, expected_initial());

    // Cluster-wide watches; slices selected by the service-name label.
    let slice_list = api
        .requests()
        .into_iter()
        .find(|r| r.path == SLICE_PATH)
        .unwrap();
    assert_eq!(
        slice_list.q("labelSelector"),
        Some("kubernetes.io/service-name")
    );

    // One Warning Event per problem, on the Service, with its uid.
    let mut seen: Vec<(String, String, String)> = events(&api)
        .iter()
        .map(|r| {
            let b = r.body.as_ref().unwrap();
            assert_eq!(r.content_type.as_deref(), Some("application/json"));
            assert_eq!(b["apiVersion"], "events.k8s.io/v1");
            assert_eq!(b["kind"], "Event");
            assert_eq!(b["type"], "Warning");
            assert_eq!(b["action"], "Sync");
            assert_eq!(b["reportingController"], "edgelb.io/controller");
            assert_eq!(b["reportingInstance"], "edgelb-7d9f6-abcde");
            assert!(b["eventTime"].is_string(), "{b}");
            assert_eq!(b["regarding"]["kind"], "Service");
            assert_eq!(b["regarding"]["apiVersion"], "v1");
            assert!(b["regarding"]["uid"].is_string(), "{b}");
            let ns = b["regarding"]["namespace"].as_str().unwrap();
            assert_eq!(
                r.path,
                format!("/apis/events.k8s.io/v1/namespaces/{ns}/events")
            );
            (
                format!("{ns}/{}", b["regarding"]["name"].as_str().unwrap()),
                b["reason"].as_str().unwrap().to_owned(),
                b["note"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    let summary: Vec<(&str, &str)> = seen
        .iter()
        .map(|(o, r, _)| (o.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("dns/coredns-ext", "UnsupportedProtocol"),
            ("shop/late", "PortConflict"),
            ("shop/legacy", "InvalidAnnotation"),
        ]
    );
    assert!(seen[0].2.contains("53/UDP"), "{}", seen[0].2);
    assert!(seen[1].2.contains("shop/storefront:http"), "{}", seen[1].2);
    assert!(seen[2].2.contains("\"v3\""), "{}", seen[2].2);
}

#[tokio::test(start_paused = true)]
async fn services_join_and_leave_the_class() {
    let api = api();
    let mut snaps = LoadBalancerSource::new(api.client.clone(), LoadBalancerConfig::default())
        .unwrap()
        .snapshots();
    assert_eq!(next_snapshot(&mut snaps).await, expected_initial());
    let services = api.next_watch(SVC_PATH).await;
    let slices = api.next_watch(SLICE_PATH).await;

    // storefront becomes a ClusterIP Service: it leaves, and `late` gets port 80.
    let mut sf = with_rv(service("storefront"), "51100");
    sf["spec"]["type"] = json!("ClusterIP");
    sf["spec"]
        .as_object_mut()
        .unwrap()
        .remove("loadBalancerClass");
    services.modified(sf);
    let snap = next_snapshot(&mut snaps).await;
    assert!(!snap.services.contains_key(&key("shop/storefront")));
    let late = &snap.services[&key("shop/late")].ports;
    assert_eq!(late["http"].listen_port, 80);
    assert_eq!(
        late["http"].endpoints().collect::<Vec<_>>(),
        vec![ready("10.42.3.40", 8080)]
    );

    // api is deleted: it leaves.
    services.deleted(with_rv(service("api"), "51110"));
    let snap = next_snapshot(&mut snaps).await;
    assert!(!snap.services.contains_key(&key("shop/api")));

    // The annotation of legacy is fixed: it joins, with the slice that was there all along.
    let mut legacy = with_rv(service("legacy"), "51120");
    legacy["metadata"]["annotations"] = json!({"edgelb.io/proxy-protocol": "v2"});
    services.modified(legacy);
    let snap = next_snapshot(&mut snaps).await;
    assert_eq!(
        snap.services[&key("shop/legacy")].ports["http"]
            .endpoints()
            .collect::<Vec<_>>(),
        vec![ready("10.42.3.41", 8000)]
    );

    // A slice of a Service outside the class changes nothing.
    let mut other = fixture("lb-slice-list.json")["items"][4].clone();
    other = with_rv(
        as_object(&other, "discovery.k8s.io/v1", "EndpointSlice"),
        "51130",
    );
    other["endpoints"] = json!([{"addresses": ["10.42.5.6"]}]);
    slices.modified(other);
    if let Ok(item) = tokio::time::timeout(Duration::from_secs(20), snaps.next()).await {
        panic!("a foreign slice produced {item:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn another_class_is_configurable() {
    let api = api();
    let cfg = LoadBalancerConfig {
        class: "service.k8s.aws/nlb".into(),
        default_proxy_protocol: ProxyProtocol::None,
    };
    let mut snaps = LoadBalancerSource::new(api.client.clone(), cfg)
        .unwrap()
        .snapshots();
    let snap = next_snapshot(&mut snaps).await;
    assert_eq!(
        snap.services.keys().collect::<Vec<_>>(),
        vec![&key("other/cloud-nlb")]
    );
    let http = &snap.services[&key("other/cloud-nlb")].ports["http"];
    assert_eq!(
        (http.listen_port, http.proxy_protocol, http.endpoints.len()),
        (8081, ProxyProtocol::None, 0)
    );
    assert!(
        LoadBalancerSource::new(
            api.client.clone(),
            LoadBalancerConfig {
                class: String::new(),
                ..LoadBalancerConfig::default()
            }
        )
        .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn names_that_could_break_the_config_are_skipped() {
    // The API server validates names, but the source must not rely on it: anything that is
    // not a safe name is skipped with a warning and never reaches the snapshot.
    let api = FakeApi::start(
        |r| match (r.method.as_str(), r.path.as_str(), r.is_watch()) {
            (_, _, true) => Reply::Watch,
            ("GET", SVC_PATH, false) => {
                let mut list = fixture("lb-service-list.json");
                let items = list["items"].as_array_mut().unwrap();
                items[0]["metadata"]["name"] = json!("store front");
                items[1]["spec"]["ports"][0]["name"] = json!("tls\n    bind :22");
                // The API server refuses uppercase Service names; so does the source.
                items[2]["metadata"]["name"] = json!("CoreDNS-ext");
                Reply::ok(list)
            }
            ("GET", SLICE_PATH, false) => Reply::ok(fixture("lb-slice-list.json")),
            _ => Reply::not_found(&r.path),
        },
    );
    let mut snaps = LoadBalancerSource::new(api.client.clone(), LoadBalancerConfig::default())
        .unwrap()
        .snapshots();
    let snap = next_snapshot(&mut snaps).await;
    snap.validate().unwrap();
    let keys: Vec<String> = snap.services.keys().map(ToString::to_string).collect();
    assert_eq!(keys, ["shop/late"], "{snap:?}");
    // With storefront gone, `late` gets port 80.
    assert_eq!(
        snap.services[&key("shop/late")].ports["http"].listen_port,
        80
    );
}

/// Issue 19 item 2: work follows the change. The echo of a status write, a managedFields or
/// resourceVersion-only update, a Service outside the class and a slice of a Service outside
/// the class all leave the snapshot alone without a rebuild; a slice of a served Service
/// rebuilds once.
#[tokio::test(start_paused = true)]
async fn updates_that_change_nothing_edgelb_reads_cost_no_rebuild() {
    let api = api();
    let source =
        LoadBalancerSource::new(api.client.clone(), LoadBalancerConfig::default()).unwrap();
    let builds = source.builds();
    let mut snaps = source.snapshots();
    assert_eq!(next_snapshot(&mut snaps).await, expected_initial());
    let services = api.next_watch(SVC_PATH).await;
    let slices = api.next_watch(SLICE_PATH).await;
    let after_start = builds.load(std::sync::atomic::Ordering::Relaxed);

    // The echo of edgelb's own status patch: new resourceVersion, managedFields, status.
    let mut echo = with_rv(service("storefront"), "51200");
    echo["status"] =
        json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.10", "ipMode": "Proxy"}]}});
    echo["metadata"]["managedFields"] = json!([{"manager": "edgelb", "operation": "Update",
        "apiVersion": "v1", "subresource": "status", "fieldsType": "FieldsV1", "fieldsV1": {}}]);
    services.modified(echo);
    // A Service of another class changes.
    let mut foreign = with_rv(service("metallb-svc"), "51210");
    foreign["spec"]["ports"][0]["port"] = json!(8088);
    services.modified(foreign);
    // A slice of a Service outside the class changes (twice).
    for (rv, ip) in [("51220", "10.42.5.6"), ("51230", "10.42.5.7")] {
        let mut other = with_rv(
            as_object(
                &fixture("lb-slice-list.json")["items"][4],
                "discovery.k8s.io/v1",
                "EndpointSlice",
            ),
            rv,
        );
        other["endpoints"] = json!([{"addresses": [ip]}]);
        slices.modified(other);
    }
    if let Ok(item) = tokio::time::timeout(Duration::from_secs(20), snaps.next()).await {
        panic!("an update edgelb does not read produced {item:?}");
    }
    assert_eq!(
        builds.load(std::sync::atomic::Ordering::Relaxed),
        after_start,
        "no rebuild for updates that change nothing edgelb reads"
    );

    // A slice of a served Service: one rebuild, a new snapshot.
    let mut api_slice = with_rv(
        as_object(
            &fixture("lb-slice-list.json")["items"][2],
            "discovery.k8s.io/v1",
            "EndpointSlice",
        ),
        "51240",
    );
    api_slice["endpoints"][0]["addresses"] = json!(["fd00:42::31"]);
    slices.modified(api_slice);
    let snap = next_snapshot(&mut snaps).await;
    assert_eq!(
        snap.services[&key("shop/api")].ports["8443"]
            .endpoints()
            .collect::<Vec<_>>(),
        vec![ready("fd00:42::31", 9443)]
    );
    assert_eq!(
        builds.load(std::sync::atomic::Ordering::Relaxed),
        after_start + 1
    );
}

/// Issue 19 item 4: after a 10 s API outage the watches are back within the capped backoff
/// (1 s), so a change made during the outage goes live right after the API returns. kube's
/// default backoff had grown to 6.4 s by then.
#[tokio::test(start_paused = true)]
async fn watches_catch_up_within_a_second_of_an_outage() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let down = Arc::new(AtomicBool::new(false));
    let flag = down.clone();
    let api = FakeApi::start(move |r| {
        if flag.load(Ordering::SeqCst) {
            return Reply::Status(
                503,
                "ServiceUnavailable",
                "the server is shutting down".into(),
            );
        }
        match (r.method.as_str(), r.path.as_str(), r.is_watch()) {
            (_, _, true) => Reply::Watch,
            ("GET", SVC_PATH, false) => Reply::ok(fixture("lb-service-list.json")),
            ("GET", SLICE_PATH, false) => Reply::ok(fixture("lb-slice-list.json")),
            _ => Reply::not_found(&r.path),
        }
    });
    let mut snaps = LoadBalancerSource::new(api.client.clone(), LoadBalancerConfig::default())
        .unwrap()
        .snapshots();
    assert_eq!(next_snapshot(&mut snaps).await, expected_initial());
    let services = api.next_watch(SVC_PATH).await;
    let slices = api.next_watch(SLICE_PATH).await;
    // Keep the stream polled (it drives the watchers) while the test plays the API server.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(item) = snaps.next().await {
            if tx.send(item).is_err() {
                break;
            }
        }
    });

    // The API server goes away for 10 s: both watches drop, every retry fails.
    down.store(true, Ordering::SeqCst);
    drop(services);
    drop(slices);
    tokio::time::sleep(Duration::from_secs(10)).await;
    down.store(false, Ordering::SeqCst);
    let back = tokio::time::Instant::now();

    let slices = api.next_watch(SLICE_PATH).await;
    let waited = back.elapsed();
    assert!(
        waited <= Duration::from_millis(1100),
        "the slice watch came back {waited:?} after the API server"
    );
    let mut api_slice = with_rv(
        as_object(
            &fixture("lb-slice-list.json")["items"][2],
            "discovery.k8s.io/v1",
            "EndpointSlice",
        ),
        "51300",
    );
    api_slice["endpoints"][0]["addresses"] = json!(["fd00:42::32"]);
    slices.modified(api_slice);
    // The snapshot stream reported the outage; the change follows.
    let snap = loop {
        match within(rx.recv()).await.expect("stream ended") {
            Ok(s)
                if s.services[&key("shop/api")].ports["8443"]
                    .endpoints()
                    .next()
                    == Some(ready("fd00:42::32", 9443)) =>
            {
                break s;
            }
            _ => {}
        }
    };
    assert!(snap.services.contains_key(&key("shop/storefront")));
    assert!(back.elapsed() <= Duration::from_millis(1100));
}
