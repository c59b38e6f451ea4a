use serde_json::json;

use super::*;

fn service(uid: &str, spec: serde_json::Value, annotations: serde_json::Value) -> Service {
    let mut spec_obj = json!({"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}]});
    if let (Some(base), Some(extra)) = (spec_obj.as_object_mut(), spec.as_object()) {
        base.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop", "uid": uid, "resourceVersion": "1", "annotations": annotations},
        "spec": spec_obj,
    }))
    .unwrap()
}

fn ranges(svc: &Service) -> Option<Vec<String>> {
    read(svc)
        .unwrap()
        .map(|r| r.iter().map(ToString::to_string).collect())
}

fn key() -> ServiceKey {
    ServiceKey::new("shop", "web").unwrap()
}

#[test]
fn the_field_wins_and_the_annotation_counts_only_while_it_is_empty() {
    let both = service(
        "u",
        json!({"loadBalancerSourceRanges": [" 10.1.2.3/8 ", "fd00::/8"]}),
        json!({SOURCE_RANGES_ANNOTATION: "192.168.0.0/16"}),
    );
    assert_eq!(ranges(&both).unwrap(), ["10.0.0.0/8", "fd00::/8"]);
    let annotation = service(
        "u",
        json!({"loadBalancerSourceRanges": []}),
        json!({SOURCE_RANGES_ANNOTATION: " 192.168.0.0/16, 203.0.113.0/24 "}),
    );
    assert_eq!(
        ranges(&annotation).unwrap(),
        ["192.168.0.0/16", "203.0.113.0/24"]
    );
    let neither = service("u", json!({}), json!({SOURCE_RANGES_ANNOTATION: "  "}));
    assert_eq!(ranges(&neither), None);
}

#[test]
fn garbage_is_named_escaped_and_cut() {
    let svc = service(
        "u",
        json!({"loadBalancerSourceRanges": ["10.0.0.0/8", "10.0.0.0/33", "x\nINFO forged", "1.2.3.4", "a", "b"]}),
        json!({}),
    );
    let err = read(&svc).unwrap_err();
    assert!(
        err.starts_with("spec.loadBalancerSourceRanges has 5 entries"),
        "{err}"
    );
    assert!(
        err.contains(r#""x\nINFO forged""#) && err.contains("and 2 more"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
}

#[test]
fn ten_thousand_ranges_are_read_and_more_refused_without_parsing_them() {
    let many: Vec<String> = (0..10_000u32)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect();
    let svc = service("u", json!({"loadBalancerSourceRanges": many}), json!({}));
    assert_eq!(read(&svc).unwrap().unwrap().len(), 10_000);
    let too_many = vec!["10.0.0.0/8"; 10_001].join(",");
    let svc = service("u", json!({}), json!({SOURCE_RANGES_ANNOTATION: too_many}));
    assert!(read(&svc).unwrap_err().contains("at most 10000"));
}

#[test]
fn invalid_ranges_keep_the_previous_ones_or_admit_nobody() {
    let mut memory = SourceRangeMemory::default();
    let mut warnings = Vec::new();
    let good = service(
        "u1",
        json!({"loadBalancerSourceRanges": ["10.0.0.0/8"]}),
        json!({}),
    );
    let bad = service(
        "u1",
        json!({"loadBalancerSourceRanges": ["10.0.0.0/8", "nope"]}),
        json!({}),
    );
    let valid: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];

    // Never valid: nobody may connect.
    assert_eq!(memory.resolve(&bad, &key(), &mut warnings), Some(vec![]));
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].reason, "InvalidSourceRanges");
    assert!(
        warnings[0].message.contains("nobody may connect"),
        "{:?}",
        warnings[0]
    );

    // Valid, then invalid: the valid ones stay.
    assert_eq!(
        memory.resolve(&good, &key(), &mut warnings),
        Some(valid.clone())
    );
    assert_eq!(warnings.len(), 1);
    assert_eq!(memory.resolve(&bad, &key(), &mut warnings), Some(valid));
    assert!(
        warnings[1]
            .message
            .contains("keeps its previous 1 valid range"),
        "{:?}",
        warnings[1]
    );

    // Allow-all before (no ranges), then invalid: still everyone.
    let open = service("u1", json!({}), json!({}));
    assert_eq!(memory.resolve(&open, &key(), &mut warnings), None);
    assert_eq!(memory.resolve(&bad, &key(), &mut warnings), None);
    assert!(warnings[2].message.contains("everyone may connect"));

    // A Service re-created under the same name (new uid) starts afresh, and a forgotten one too.
    let recreated = service(
        "u2",
        json!({"loadBalancerSourceRanges": ["nope"]}),
        json!({}),
    );
    assert_eq!(
        memory.resolve(&recreated, &key(), &mut warnings),
        Some(vec![])
    );
    memory.resolve(&good, &key(), &mut warnings);
    memory.retain(&|_| false);
    assert_eq!(memory.resolve(&bad, &key(), &mut warnings), Some(vec![]));
}

#[test]
fn session_affinity_follows_the_spec() {
    use crate::session_affinity::session_affinity;
    let mut warnings = Vec::new();
    let none = service("u", json!({"sessionAffinity": "None"}), json!({}));
    assert_eq!(session_affinity(&none, &mut warnings), None);
    let default = service("u", json!({"sessionAffinity": "ClientIP"}), json!({}));
    assert_eq!(
        session_affinity(&default, &mut warnings).map(|a| a.timeout_seconds),
        Some(10_800)
    );
    let given = service(
        "u",
        json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
        json!({}),
    );
    assert_eq!(
        session_affinity(&given, &mut warnings).map(|a| a.timeout_seconds),
        Some(60)
    );
    assert!(warnings.is_empty());
    let too_long = service(
        "u",
        json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86_401}}}),
        json!({}),
    );
    assert_eq!(
        session_affinity(&too_long, &mut warnings).map(|a| a.timeout_seconds),
        Some(10_800)
    );
    let unknown = service("u", json!({"sessionAffinity": "Cookie"}), json!({}));
    assert_eq!(session_affinity(&unknown, &mut warnings), None);
    let reasons: Vec<&str> = warnings.iter().map(|w| w.reason).collect();
    assert_eq!(
        reasons,
        ["InvalidSessionAffinity", "InvalidSessionAffinity"]
    );
}
