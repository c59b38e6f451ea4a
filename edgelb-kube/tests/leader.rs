//! Lease leader election against a scripted API server that stores the Lease and enforces
//! resourceVersion preconditions like the real one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns too

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgelb_core::CancellationToken;
use edgelb_kube::{LeaderElectionConfig, LeaderElector, Leadership};
use serde_json::{Value, json};
use support::{FakeApi, Recorded, Reply, within};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/edgelb/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/edgelb/leases/edgelb-leader";

#[derive(Default)]
struct Store {
    lease: Option<Value>,
    rv: u64,
    /// Fail every request with 500 (the API server is unreachable).
    down: bool,
    /// Another writer sneaks in before the next PUT (it gets a 409).
    conflict_next_put: bool,
}

impl Store {
    fn bump(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn holder(&self) -> Option<String> {
        self.lease
            .as_ref()
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(ToOwned::to_owned))
    }

    /// Another replica writes the Lease (e.g. it renewed, or took it over).
    fn write_as(&mut self, holder: &str) {
        let rv = self.bump();
        let lease = self.lease.get_or_insert_with(|| lease_json(holder, 0));
        lease["spec"]["holderIdentity"] = json!(holder);
        lease["spec"]["renewTime"] = json!(format!(
            "2026-11-02T10:{:02}:{:02}.000000Z",
            self.rv / 60 % 60,
            self.rv % 60
        ));
        lease["metadata"]["resourceVersion"] = json!(rv);
    }
}

fn lease_json(holder: &str, transitions: i32) -> Value {
    json!({
        "kind": "Lease",
        "apiVersion": "coordination.k8s.io/v1",
        "metadata": {
            "name": "edgelb-leader",
            "namespace": "edgelb",
            "uid": "3c9d4f2e-1b7a-4e55-9a0c-5d6e7f8a9b0c",
            "resourceVersion": "1",
            "creationTimestamp": "2026-11-01T08:00:00Z"
        },
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "acquireTime": "2026-11-01T08:00:00.000000Z",
            "renewTime": "2026-11-02T10:00:00.000000Z",
            "leaseTransitions": transitions
        }
    })
}

fn conflict() -> Reply {
    Reply::Status(
        409,
        "Conflict",
        "Operation cannot be fulfilled on leases.coordination.k8s.io \"edgelb-leader\": the object has been modified; please apply your changes to the latest version and try again".into(),
    )
}

fn server(store: Arc<Mutex<Store>>) -> FakeApi {
    FakeApi::start(move |r| {
        let mut s = store.lock().unwrap();
        if s.down {
            return Reply::Status(
                500,
                "InternalError",
                "Internal error occurred: etcdserver: leader changed".into(),
            );
        }
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", LEASE) => match &s.lease {
                Some(l) => Reply::ok(l.clone()),
                None => Reply::not_found("leases.coordination.k8s.io \"edgelb-leader\""),
            },
            ("POST", LEASES) => {
                if s.lease.is_some() {
                    return Reply::Status(
                        409,
                        "AlreadyExists",
                        "leases.coordination.k8s.io \"edgelb-leader\" already exists".into(),
                    );
                }
                let mut l = r.body.clone().unwrap();
                let rv = s.bump();
                l["metadata"]["resourceVersion"] = json!(rv);
                l["metadata"]["uid"] = json!("3c9d4f2e-1b7a-4e55-9a0c-5d6e7f8a9b0c");
                l["metadata"]["creationTimestamp"] = json!("2026-11-02T10:00:00Z");
                s.lease = Some(l.clone());
                Reply::Json(201, l)
            }
            ("PUT", LEASE) => {
                let body = r.body.clone().unwrap();
                if s.conflict_next_put {
                    s.conflict_next_put = false;
                    let holder = s.holder().unwrap_or_default();
                    s.write_as(&holder);
                    return conflict();
                }
                let current = s
                    .lease
                    .as_ref()
                    .map(|l| l["metadata"]["resourceVersion"].clone());
                if current != Some(body["metadata"]["resourceVersion"].clone()) {
                    return conflict();
                }
                let mut l = body;
                let rv = s.bump();
                l["metadata"]["resourceVersion"] = json!(rv);
                s.lease = Some(l.clone());
                Reply::ok(l)
            }
            _ => Reply::not_found(&r.path),
        }
    })
}

fn config(identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig::new("edgelb", identity)
}

fn start(
    api: &FakeApi,
    identity: &str,
) -> (
    Leadership,
    CancellationToken,
    tokio::task::JoinHandle<edgelb_kube::Result<()>>,
) {
    let elector = LeaderElector::new(api.client.clone(), config(identity)).unwrap();
    let leadership = elector.leadership();
    let stop = CancellationToken::new();
    let task = tokio::spawn(elector.run(stop.clone()));
    (leadership, stop, task)
}

fn lease_writes(api: &FakeApi) -> Vec<Recorded> {
    api.requests()
        .into_iter()
        .filter(|r| r.path.starts_with(LEASES) && r.method != "GET")
        .collect()
}

#[tokio::test(start_paused = true)]
async fn creates_the_lease_renews_it_and_releases_it_on_shutdown() {
    let store = Arc::new(Mutex::new(Store::default()));
    let api = server(store.clone());
    let (mut leadership, stop, task) = start(&api, "edgelb-a");

    let term = within(leadership.acquired()).await.unwrap();
    assert!(leadership.is_leader());
    let writes = lease_writes(&api);
    assert_eq!(writes.len(), 1);
    let create = &writes[0];
    assert_eq!(
        (create.method.as_str(), create.path.as_str()),
        ("POST", LEASES)
    );
    let body = create.body.as_ref().unwrap();
    assert_eq!(body["apiVersion"], "coordination.k8s.io/v1");
    assert_eq!(body["kind"], "Lease");
    assert_eq!(body["metadata"]["name"], "edgelb-leader");
    assert_eq!(body["spec"]["holderIdentity"], "edgelb-a");
    assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(body["spec"]["leaseTransitions"], 0);
    let acquired = body["spec"]["acquireTime"].as_str().unwrap().to_owned();
    assert!(
        acquired.ends_with('Z') && acquired.contains('.'),
        "MicroTime: {acquired}"
    );
    assert!(body["spec"]["renewTime"].is_string());

    // Renewals every 2 s, each guarded by the resourceVersion just read.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let writes = lease_writes(&api);
    assert_eq!(
        writes.len(),
        3,
        "{:?}",
        writes.iter().map(Recorded::line).collect::<Vec<_>>()
    );
    for (i, renew) in writes[1..].iter().enumerate() {
        assert_eq!((renew.method.as_str(), renew.path.as_str()), ("PUT", LEASE));
        let b = renew.body.as_ref().unwrap();
        assert_eq!(b["metadata"]["resourceVersion"], json!((i + 1).to_string()));
        assert_eq!(b["spec"]["holderIdentity"], "edgelb-a");
        assert_eq!(
            b["spec"]["acquireTime"],
            json!(acquired),
            "renewing keeps acquireTime"
        );
        assert_eq!(b["spec"]["leaseTransitions"], 0);
    }
    assert!(!term.is_cancelled());

    // Shutdown: leadership ends first, then the Lease is released for the others.
    stop.cancel();
    task.await.unwrap().unwrap();
    assert!(term.is_cancelled());
    assert!(!leadership.is_leader());
    let release = lease_writes(&api).pop().unwrap();
    assert_eq!(release.method, "PUT");
    let b = release.body.unwrap();
    assert!(b["spec"].get("holderIdentity").is_none(), "{b}");
    assert_eq!(b["spec"]["leaseDurationSeconds"], 1);
    assert_eq!(
        b["metadata"]["resourceVersion"],
        json!(store.lock().unwrap().rv.saturating_sub(1).to_string())
    );
    // The elector has stopped: no further leadership terms.
    assert!(leadership.acquired().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn waits_for_a_live_holder_and_takes_over_an_expired_lease() {
    let store = Arc::new(Mutex::new(Store::default()));
    {
        let mut s = store.lock().unwrap();
        s.rv = 99;
        s.lease = Some(lease_json("edgelb-b", 3));
        s.write_as("edgelb-b"); // rv 100
    }
    let api = server(store.clone());
    let (leadership, stop, task) = start(&api, "edgelb-a");

    // edgelb-b renews every 2 s for a minute: edgelb-a never writes.
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        store.lock().unwrap().write_as("edgelb-b");
        assert!(!leadership.is_leader());
    }
    assert!(lease_writes(&api).is_empty());

    // edgelb-b dies. The record stops changing; 15 s later (our clock) edgelb-a takes over.
    let dead_at = tokio::time::Instant::now();
    let rv = store.lock().unwrap().rv;
    let mut rx = leadership.receiver();
    within(rx.wait_for(|l| *l)).await.unwrap();
    let waited = dead_at.elapsed();
    assert!(
        waited >= Duration::from_secs(15) && waited <= Duration::from_secs(18),
        "took over after {waited:?}"
    );
    let takeover = lease_writes(&api).pop().unwrap();
    assert_eq!(takeover.method, "PUT");
    let b = takeover.body.unwrap();
    assert_eq!(b["metadata"]["resourceVersion"], json!(rv.to_string()));
    assert_eq!(b["spec"]["holderIdentity"], "edgelb-a");
    assert_eq!(b["spec"]["leaseTransitions"], 4);
    assert_ne!(b["spec"]["acquireTime"], "2026-11-01T08:00:00.000000Z");
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn two_replicas_never_lead_together_and_hand_over_on_release() {
    let store = Arc::new(Mutex::new(Store::default()));
    let api = server(store.clone());
    let (a, stop_a, task_a) = start(&api, "edgelb-a");
    let (b, stop_b, task_b) = start(&api, "edgelb-b");

    let both = Arc::new(AtomicBool::new(false));
    let (ma, mb, flag) = (a.clone(), b.clone(), both.clone());
    let monitor = tokio::spawn(async move {
        loop {
            if ma.is_leader() && mb.is_leader() {
                flag.store(true, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(a.is_leader() ^ b.is_leader(), "exactly one leads");
    let (leader, mut follower, stop_leader, task_leader, follower_name) = if a.is_leader() {
        (a, b, stop_a.clone(), task_a, "edgelb-b")
    } else {
        (b, a, stop_b.clone(), task_b, "edgelb-a")
    };

    // The leader shuts down and releases: the other takes over within a retry period, not
    // after a full lease duration.
    stop_leader.cancel();
    task_leader.await.unwrap().unwrap();
    assert!(!leader.is_leader());
    let released_at = tokio::time::Instant::now();
    within(follower.acquired()).await.unwrap();
    assert!(
        released_at.elapsed() <= Duration::from_secs(3),
        "{:?}",
        released_at.elapsed()
    );
    assert_eq!(
        store.lock().unwrap().holder().as_deref(),
        Some(follower_name)
    );
    assert!(!both.load(Ordering::SeqCst), "two leaders at once");
    monitor.abort();
    stop_a.cancel();
    stop_b.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_write_conflict_is_retried_at_once_without_losing_leadership() {
    let store = Arc::new(Mutex::new(Store::default()));
    let api = server(store.clone());
    let (mut leadership, stop, task) = start(&api, "edgelb-a");
    let term = within(leadership.acquired()).await.unwrap();

    store.lock().unwrap().conflict_next_put = true;
    let before = api.requests().len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let lines: Vec<String> = api.requests()[before..]
        .iter()
        .map(Recorded::line)
        .collect();
    assert_eq!(
        lines,
        [
            format!("GET {LEASE}"),
            format!("PUT {LEASE}"), // 409: the Lease changed under us
            format!("GET {LEASE}"),
            format!("PUT {LEASE}"), // renewed on the fresh resourceVersion
        ]
    );
    assert!(leadership.is_leader() && !term.is_cancelled());
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn leadership_ends_at_once_when_another_holder_shows_up() {
    let store = Arc::new(Mutex::new(Store::default()));
    let api = server(store.clone());
    let (mut leadership, stop, task) = start(&api, "edgelb-a");
    let term = within(leadership.acquired()).await.unwrap();

    // edgelb-b took the Lease (say we were partitioned away and it expired for the others).
    store.lock().unwrap().write_as("edgelb-b");
    let at = tokio::time::Instant::now();
    within(term.cancelled()).await;
    assert!(at.elapsed() <= Duration::from_secs(2), "{:?}", at.elapsed());
    assert!(!leadership.is_leader());
    // And it does not write over the new holder.
    let writes_before = lease_writes(&api).len();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(lease_writes(&api).len(), writes_before);
    stop.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(store.lock().unwrap().holder().as_deref(), Some("edgelb-b"));
}

#[tokio::test(start_paused = true)]
async fn leadership_ends_when_renewals_fail_past_the_deadline() {
    let store = Arc::new(Mutex::new(Store::default()));
    let api = server(store.clone());
    let (mut leadership, stop, task) = start(&api, "edgelb-a");
    let term = within(leadership.acquired()).await.unwrap();

    store.lock().unwrap().down = true;
    let down_at = tokio::time::Instant::now();
    // Transient errors do not end leadership...
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(leadership.is_leader());
    // ...but 10 s without a renewal does, before the 15 s Lease runs out for the others.
    within(term.cancelled()).await;
    let after = down_at.elapsed();
    assert!(
        after >= Duration::from_secs(8) && after <= Duration::from_secs(12),
        "{after:?}"
    );

    // The API server comes back: the Lease is still ours on record, so we lead again.
    store.lock().unwrap().down = false;
    within(leadership.acquired()).await.unwrap();
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[test]
fn invalid_timings_are_rejected() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let api = server(Arc::new(Mutex::new(Store::default())));
        let mut cfg = config("edgelb-a");
        cfg.renew_deadline = Duration::from_secs(20);
        let err = LeaderElector::new(api.client.clone(), cfg).err().unwrap();
        assert!(err.to_string().contains("renew_deadline"), "{err}");
        let err = LeaderElector::new(api.client.clone(), config(""))
            .err()
            .unwrap();
        assert!(err.to_string().contains("identity"), "{err}");
    });
}
