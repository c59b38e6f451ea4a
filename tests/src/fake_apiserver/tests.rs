//! The fake API server against a real `kube::Client`, configured from the kubeconfig the
//! server writes.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use serde_json::json;

use super::*;

async fn client(api: &FakeApiServer) -> kube::Client {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::from_yaml(&api.kubeconfig()).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn slice(name: &str, service: &str, ip: &str) -> Value {
    json!({
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
        "ports": [{"name": "http", "port": 9000, "protocol": "TCP"}],
    })
}

async fn within<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("the fake API server answered in time")
}

#[tokio::test]
async fn list_and_watch_round_trip_with_a_real_client() {
    let api = FakeApiServer::start().unwrap();
    let client = client(&api).await;
    api.apply_slice(slice("web-1", "web", "10.42.0.1")).unwrap();
    api.apply_slice(slice("api-1", "api", "10.42.0.9")).unwrap();

    let slices: Api<EndpointSlice> = Api::all(client.clone());
    let mut events = watcher(
        slices,
        watcher::Config::default().labels("kubernetes.io/service-name=web"),
    )
    .boxed();
    let mut next = async || within(events.next()).await.unwrap().unwrap();
    assert!(matches!(next().await, watcher::Event::Init));
    match next().await {
        watcher::Event::InitApply(s) => assert_eq!(s.metadata.name.as_deref(), Some("web-1")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(next().await, watcher::Event::InitDone));

    // A change, a new slice, a slice of another Service, a deletion: in order.
    api.apply_slice(slice("web-1", "web", "10.42.0.2")).unwrap();
    api.apply_slice(slice("api-1", "api", "10.42.0.8")).unwrap();
    api.apply_slice(slice("web-2", "web", "10.42.0.3")).unwrap();
    api.delete_slice("shop", "web-1").unwrap();
    // A slice relabelled away from the Service leaves the selection.
    api.apply_slice(slice("web-2", "other", "10.42.0.3"))
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(match next().await {
            watcher::Event::Apply(s) => {
                let ip = s.endpoints.unwrap_or_default()[0].addresses[0].clone();
                format!("apply {} {ip}", s.metadata.name.unwrap_or_default())
            }
            watcher::Event::Delete(s) => format!("delete {}", s.metadata.name.unwrap_or_default()),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(
        seen,
        [
            "apply web-1 10.42.0.2",
            "apply web-2 10.42.0.3",
            "delete web-1",
            "delete web-2"
        ]
    );
    assert_eq!(api.open_watches(), 1);
    drop(events);

    // Lists with a field selector, in a namespace.
    api.apply_service(json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}]},
    }))
    .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), "shop");
    let list = within(services.list(&ListParams::default().fields("metadata.name=web")))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    assert!(
        within(services.list(&ListParams::default().fields("metadata.name=api")))
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // A merge patch of the status is recorded and changes only the status.
    let patch = json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.7", "ipMode": "Proxy"}]}},
                       "spec": {"type": "ClusterIP"}});
    let patched =
        within(services.patch_status("web", &PatchParams::apply("edgelb"), &Patch::Merge(&patch)))
            .await
            .unwrap();
    let ingress = patched
        .status
        .unwrap()
        .load_balancer
        .unwrap()
        .ingress
        .unwrap();
    assert_eq!(ingress[0].ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(ingress[0].ip_mode.as_deref(), Some("Proxy"));
    assert_eq!(patched.spec.unwrap().type_.as_deref(), Some("LoadBalancer"));
    let patches = api.status_patches();
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].content_type, "application/merge-patch+json");
    assert_eq!(patches[0].field_manager.as_deref(), Some("edgelb"));
    assert_eq!(
        (patches[0].namespace.as_str(), patches[0].name.as_str()),
        ("shop", "web")
    );

    // A resource the server does not serve: a 404 Status, recorded.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, "shop");
    let err = within(pods.list(&ListParams::default())).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 404),
        "{err:?}"
    );
    let unhandled = api.unhandled();
    assert_eq!(unhandled.len(), 1, "{unhandled:?}");
    assert_eq!(unhandled[0].path, "/api/v1/namespaces/shop/pods");
}

#[tokio::test]
async fn leases_conflict_and_events_get_names() {
    let api = FakeApiServer::start().unwrap();
    let client = client(&api).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "edgelb");
    assert!(
        within(leases.get_opt("edgelb-leader"))
            .await
            .unwrap()
            .is_none()
    );
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "edgelb-leader", "namespace": "edgelb"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
    }))
    .unwrap();
    let created = within(leases.create(&PostParams::default(), &lease))
        .await
        .unwrap();
    let again = within(leases.create(&PostParams::default(), &lease)).await;
    assert!(
        matches!(&again, Err(kube::Error::Api(s)) if s.code == 409),
        "{again:?}"
    );

    let mut renewed = created.clone();
    renewed.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let renewed = within(leases.replace("edgelb-leader", &PostParams::default(), &renewed))
        .await
        .unwrap();
    assert_ne!(
        renewed.metadata.resource_version,
        created.metadata.resource_version
    );
    // A write based on the old version loses.
    let stale = within(leases.replace("edgelb-leader", &PostParams::default(), &created)).await;
    assert!(
        matches!(&stale, Err(kube::Error::Api(s)) if s.code == 409),
        "{stale:?}"
    );
    assert_eq!(
        api.lease("edgelb", "edgelb-leader").unwrap()["spec"]["holderIdentity"],
        "b"
    );

    let events: Api<Event> = Api::namespaced(client, "shop");
    let event: Event = serde_json::from_value(json!({
        "metadata": {"generateName": "web.", "namespace": "shop"},
        "reason": "Deployed", "type": "Normal", "action": "Deploy",
        "reportingController": "edgelb.io/controller", "reportingInstance": "test",
    }))
    .unwrap();
    let first = within(events.create(&PostParams::default(), &event))
        .await
        .unwrap();
    let second = within(events.create(&PostParams::default(), &event))
        .await
        .unwrap();
    let (a, b) = (first.metadata.name.unwrap(), second.metadata.name.unwrap());
    assert!(a.starts_with("web.") && a.len() == 9 && a != b, "{a} {b}");
    assert_eq!(api.events().len(), 2);
    assert!(api.unhandled().is_empty(), "{:?}", api.unhandled());
}

#[tokio::test]
async fn ended_watches_resume_and_expired_ones_are_gone() {
    use kube::api::{WatchEvent, WatchParams};
    let api = FakeApiServer::start().unwrap();
    let client = client(&api).await;
    api.apply_slice(slice("web-1", "web", "10.42.0.1")).unwrap();
    let slices: Api<EndpointSlice> = Api::namespaced(client, "shop");
    let wp = WatchParams::default();
    let rv = api.resource_version().to_string();
    let ip = |e: WatchEvent<EndpointSlice>| match e {
        WatchEvent::Modified(s) => s.endpoints.unwrap_or_default()[0].addresses[0].clone(),
        other => panic!("{other:?}"),
    };
    let code = |e: WatchEvent<EndpointSlice>| match e {
        WatchEvent::Error(s) => s.code,
        other => panic!("{other:?}"),
    };

    // An ended watch resumed from the version it saw misses nothing.
    let mut stream = within(slices.watch(&wp, &rv)).await.unwrap().boxed();
    assert_eq!(api.open_watches(), 1);
    api.end_watches();
    assert!(within(stream.next()).await.is_none());
    api.apply_slice(slice("web-1", "web", "10.42.0.2")).unwrap();
    let mut stream = within(slices.watch(&wp, &rv)).await.unwrap().boxed();
    assert_eq!(
        ip(within(stream.next()).await.unwrap().unwrap()),
        "10.42.0.2"
    );

    // Expired: the open watch gets a 410 and ends; so does a new one from an old version.
    api.expire_watches();
    assert_eq!(code(within(stream.next()).await.unwrap().unwrap()), 410);
    assert!(within(stream.next()).await.is_none());
    let mut stream = within(slices.watch(&wp, &rv)).await.unwrap().boxed();
    assert_eq!(code(within(stream.next()).await.unwrap().unwrap()), 410);

    // A fresh list gives a version to watch from again.
    let list = within(slices.list(&ListParams::default())).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut stream = within(slices.watch(&wp, &rv)).await.unwrap().boxed();
    api.apply_slice(slice("web-1", "web", "10.42.0.3")).unwrap();
    assert_eq!(
        ip(within(stream.next()).await.unwrap().unwrap()),
        "10.42.0.3"
    );
    drop(stream);
    assert!(api.unhandled().is_empty(), "{:?}", api.unhandled());
}

#[tokio::test]
async fn lists_are_paged_and_a_watcher_reads_every_page() {
    let api = FakeApiServer::start().unwrap();
    let client = client(&api).await;
    for i in 0..7 {
        api.apply_slice(slice(&format!("web-{i}"), "web", &format!("10.42.0.{i}")))
            .unwrap();
    }
    let slices: Api<EndpointSlice> = Api::all(client.clone());
    let first = within(slices.list(&ListParams::default().limit(3)))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 3);
    let token = first.metadata.continue_.clone().unwrap();
    // A change between pages is not in this list: it is a snapshot.
    api.apply_slice(slice("web-late", "web", "10.42.1.1"))
        .unwrap();
    let mut names: Vec<String> = first
        .items
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    let mut token = Some(token);
    while let Some(t) = token {
        let page = within(slices.list(&ListParams::default().limit(3).continue_token(&t)))
            .await
            .unwrap();
        assert_eq!(
            page.metadata.resource_version,
            first.metadata.resource_version
        );
        names.extend(page.items.iter().filter_map(|s| s.metadata.name.clone()));
        token = page.metadata.continue_.filter(|c| !c.is_empty());
    }
    assert_eq!(names.len(), 7, "{names:?}");
    assert!(!names.contains(&"web-late".to_owned()));

    // kube's watcher pages its initial list and sees every object.
    let mut events = watcher(slices, watcher::Config::default().page_size(2)).boxed();
    let mut seen = 0;
    loop {
        match within(events.next()).await.unwrap().unwrap() {
            watcher::Event::InitApply(_) => seen += 1,
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(seen, 8);
}
