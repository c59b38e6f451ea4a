//! The manifests in `deploy/`: validated offline against the Kubernetes schemas with PyPI's
//! `kubernetes-validate` (scripts/test installs it), plus checks of what the schemas cannot
//! see (least-privilege RBAC, a hardened pod).
//!
//! Without `kubernetes-validate` on PATH the schema test is skipped with a message, except in
//! CI (`CI` set), where it fails: CI must not pass without validating.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns too

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml_ng::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every YAML document of a file.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn kustomization() -> Value {
    documents(&deploy_dir().join("kustomization.yaml")).remove(0)
}

fn resources() -> Vec<PathBuf> {
    kustomization()["resources"]
        .as_sequence()
        .expect("kustomization.yaml lists resources")
        .iter()
        .map(|r| deploy_dir().join(r.as_str().unwrap()))
        .collect()
}

fn str_of<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for key in path {
        cur = cur.get(*key)?;
    }
    cur.as_str()
}

/// Objects of `kind` across the kustomization's resources.
fn objects(kind: &str) -> Vec<Value> {
    resources()
        .iter()
        .flat_map(|p| documents(p))
        .filter(|d| str_of(d, &["kind"]) == Some(kind))
        .collect()
}

const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
];

/// A small rendering of the kustomization (namespace, labels, images), so the schema check
/// also covers what `kubectl apply -k` sends, with or without kubectl at hand.
fn render() -> String {
    let k = kustomization();
    let namespace = str_of(&k, &["namespace"]).map(str::to_owned);
    let mut labels = BTreeMap::new();
    for entry in k["labels"].as_sequence().into_iter().flatten() {
        for (key, value) in entry["pairs"].as_mapping().into_iter().flatten() {
            labels.insert(
                key.as_str().unwrap().to_owned(),
                value.as_str().unwrap().to_owned(),
            );
        }
    }
    let images: Vec<(String, String)> = k["images"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|i| {
            let name = str_of(i, &["name"]).unwrap().to_owned();
            let new_name = str_of(i, &["newName"]).unwrap_or(&name).to_owned();
            let tag = str_of(i, &["newTag"]).unwrap_or("latest");
            (name, format!("{new_name}:{tag}"))
        })
        .collect();
    let mut out = String::new();
    for path in resources() {
        for mut doc in documents(&path) {
            let kind = str_of(&doc, &["kind"]).unwrap_or_default().to_owned();
            let meta = doc["metadata"].as_mapping_mut().unwrap();
            if let (Some(ns), false) = (&namespace, CLUSTER_SCOPED.contains(&kind.as_str())) {
                meta.insert("namespace".into(), ns.clone().into());
            }
            let doc_labels = meta
                .entry("labels".into())
                .or_insert_with(|| Value::Mapping(Default::default()));
            for (key, value) in &labels {
                doc_labels
                    .as_mapping_mut()
                    .unwrap()
                    .insert(key.clone().into(), value.clone().into());
            }
            if let Some(containers) = doc
                .get_mut("spec")
                .and_then(|s| s.get_mut("template"))
                .and_then(|t| t.get_mut("spec"))
                .and_then(|s| s.get_mut("containers"))
                .and_then(Value::as_sequence_mut)
            {
                for c in containers {
                    let image = c["image"].as_str().unwrap().to_owned();
                    if let Some((_, new)) = images.iter().find(|(n, _)| *n == image) {
                        c["image"] = new.clone().into();
                    }
                }
            }
            out.push_str("---\n");
            out.push_str(&serde_yaml_ng::to_string(&doc).unwrap());
        }
    }
    out
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// Runs `kubernetes-validate --strict` on `files`; panics with its output on failure.
fn validate(files: &[PathBuf]) {
    let out = Command::new("kubernetes-validate")
        .arg("--strict")
        .arg("--quiet")
        .args(files)
        .output()
        .expect("running kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate rejected {files:?}:\n{text}"
    );
    println!("kubernetes-validate: {files:?} valid\n{text}");
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    if !on_path("kubernetes-validate") {
        let msg = "kubernetes-validate is not on PATH: install it (python3 -m venv v && v/bin/pip install kubernetes-validate, as scripts/test does) to validate deploy/";
        if std::env::var_os("CI").is_some() {
            panic!("{msg} (required in CI)");
        }
        println!("SKIPPED: {msg}");
        eprintln!("SKIPPED: {msg}");
        return;
    }
    let dir = deploy_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    validate(&files);

    // What `apply -k` would send: our own rendering, and kubectl's when it is installed.
    let tmp = std::env::temp_dir().join(format!("edgelb-manifests-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let rendered = tmp.join("rendered.yaml");
    std::fs::write(&rendered, render()).unwrap();
    validate(std::slice::from_ref(&rendered));
    if on_path("kubectl") {
        let out = Command::new("kubectl")
            .args(["kustomize"])
            .arg(&dir)
            .output()
            .expect("running kubectl kustomize");
        assert!(
            out.status.success(),
            "kubectl kustomize deploy/ failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let by_kubectl = tmp.join("kubectl-kustomize.yaml");
        std::fs::write(&by_kubectl, &out.stdout).unwrap();
        validate(std::slice::from_ref(&by_kubectl));
    } else {
        println!("kubectl not on PATH: validated edgelb's own rendering of the kustomization");
    }
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn every_manifest_is_in_the_kustomization_except_the_example_secret() {
    let listed: BTreeSet<PathBuf> = resources().into_iter().collect();
    for path in &listed {
        assert!(
            path.is_file(),
            "kustomization lists a missing file: {path:?}"
        );
    }
    for entry in std::fs::read_dir(deploy_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !name.ends_with(".yaml") || name == "kustomization.yaml" {
            continue;
        }
        if name == "secret.example.yaml" {
            assert!(
                !listed.contains(&path),
                "the example Secret must not be applied (it would overwrite the real one)"
            );
            continue;
        }
        assert!(
            listed.contains(&path),
            "{name} is not listed in kustomization.yaml"
        );
    }
}

/// `(apiGroup, resource, verbs)` of a role's rules, flattened.
fn rules(role: &Value) -> BTreeSet<(String, String, BTreeSet<String>)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_sequence().unwrap() {
        let verbs: BTreeSet<String> = rule["verbs"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert!(
            rule.get("resourceNames").is_none() || !verbs.contains("create"),
            "resourceNames cannot restrict create"
        );
        for group in rule["apiGroups"].as_sequence().unwrap() {
            for resource in rule["resources"].as_sequence().unwrap() {
                out.insert((
                    group.as_str().unwrap().to_owned(),
                    resource.as_str().unwrap().to_owned(),
                    verbs.clone(),
                ));
            }
        }
    }
    out
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn rbac_grants_exactly_what_edgelb_uses() {
    let cluster = objects("ClusterRole");
    assert_eq!(cluster.len(), 1);
    let expected: BTreeSet<_> = [
        ("", "services", set(&["get", "list", "watch"])),
        ("", "services/status", set(&["patch"])),
        (
            "discovery.k8s.io",
            "endpointslices",
            set(&["get", "list", "watch"]),
        ),
        ("events.k8s.io", "events", set(&["create", "patch"])),
    ]
    .into_iter()
    .map(|(g, r, v)| (g.to_owned(), r.to_owned(), v))
    .collect();
    assert_eq!(rules(&cluster[0]), expected);

    let roles = objects("Role");
    assert_eq!(roles.len(), 2);
    for role in &roles {
        assert_eq!(str_of(role, &["metadata", "namespace"]), Some("edgelb"));
    }
    let role = |name: &str| {
        roles
            .iter()
            .find(|r| str_of(r, &["metadata", "name"]) == Some(name))
            .unwrap_or_else(|| panic!("no Role {name}"))
    };
    let lease: BTreeSet<_> = [(
        "coordination.k8s.io".to_owned(),
        "leases".to_owned(),
        set(&["get", "create", "update"]),
    )]
    .into_iter()
    .collect();
    assert_eq!(
        rules(role("edgelb-leader-election")),
        lease,
        "leases only, in edgelb's namespace"
    );
    let edges: BTreeSet<_> = [
        ("edgenodes", set(&["get", "list", "watch"])),
        ("edgepools", set(&["get", "list", "watch"])),
        ("edgenodes/status", set(&["patch"])),
    ]
    .into_iter()
    .map(|(r, v)| ("edgelb.io".to_owned(), r.to_owned(), v))
    .collect();
    assert_eq!(
        rules(role("edgelb-edges")),
        edges,
        "read EdgeNodes and EdgePools, write EdgeNode status only, in edgelb's namespace"
    );
    // The CRDs are namespaced: a Role in edgelb's namespace is all it takes.
    for crd in objects("CustomResourceDefinition") {
        assert_eq!(str_of(&crd, &["spec", "scope"]), Some("Namespaced"));
    }

    // Both are bound to the ServiceAccount the Deployment runs as.
    let sa = objects("ServiceAccount");
    let sa_name = str_of(&sa[0], &["metadata", "name"]).unwrap();
    for binding in objects("ClusterRoleBinding")
        .iter()
        .chain(objects("RoleBinding").iter())
    {
        let subject = &binding["subjects"][0];
        assert_eq!(str_of(subject, &["kind"]), Some("ServiceAccount"));
        assert_eq!(str_of(subject, &["name"]), Some(sa_name));
        assert_eq!(str_of(subject, &["namespace"]), Some("edgelb"));
    }
    let deployment = &objects("Deployment")[0];
    assert_eq!(
        str_of(
            deployment,
            &["spec", "template", "spec", "serviceAccountName"]
        ),
        Some(sa_name)
    );
}

#[test]
fn the_pod_is_hardened_and_wired_to_its_config_and_secret() {
    let deployment = &objects("Deployment")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], Value::Bool(true));
    assert_eq!(
        str_of(pod, &["securityContext", "seccompProfile", "type"]),
        Some("RuntimeDefault")
    );
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], Value::Bool(true));
    assert_eq!(sc["allowPrivilegeEscalation"], Value::Bool(false));
    assert_eq!(sc["capabilities"]["drop"][0].as_str(), Some("ALL"));
    for probe in ["livenessProbe", "readinessProbe"] {
        assert!(c.get(probe).is_some(), "{probe} missing");
    }
    assert_eq!(
        str_of(c, &["livenessProbe", "httpGet", "path"]),
        Some("/healthz")
    );
    assert_eq!(
        str_of(c, &["readinessProbe", "httpGet", "path"]),
        Some("/readyz")
    );
    for r in ["requests", "limits"] {
        assert!(c["resources"][r]["memory"].as_str().is_some(), "{r}.memory");
    }
    let env: Vec<&str> = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"POD_NAME") && env.contains(&"POD_NAMESPACE"),
        "{env:?}"
    );
    // kubectl logs and log collectors get one JSON object per line, no colour codes.
    let log_format = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str() == Some("EDGELB_LOG_FORMAT"));
    assert_eq!(
        log_format.and_then(|e| e["value"].as_str()),
        Some("json"),
        "{env:?}"
    );

    let volumes = pod["volumes"].as_sequence().unwrap();
    let secret = volumes
        .iter()
        .find(|v| v.get("secret").is_some())
        .expect("a Secret volume");
    let secret_name = str_of(secret, &["secret", "secretName"]).unwrap();
    let example = documents(&deploy_dir().join("secret.example.yaml")).remove(0);
    assert_eq!(str_of(&example, &["metadata", "name"]), Some(secret_name));
    let keys: BTreeSet<&str> = example["stringData"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keys, ["id_ed25519", "known_hosts"].into_iter().collect());
    let cm_volume = volumes
        .iter()
        .find(|v| v.get("configMap").is_some())
        .expect("a ConfigMap volume");
    let cm_name = str_of(cm_volume, &["configMap", "name"]).unwrap();
    let cm = objects("ConfigMap")
        .into_iter()
        .find(|c| str_of(c, &["metadata", "name"]) == Some(cm_name))
        .expect("the ConfigMap the Deployment mounts");
    let config: Value = serde_yaml_ng::from_str(str_of(&cm, &["data", "config.yaml"]).unwrap())
        .expect("config.yaml is YAML");
    // The config points at the files the Secret volume provides.
    let mount = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == secret["name"])
        .unwrap();
    let dir = str_of(mount, &["mountPath"]).unwrap();
    assert_eq!(
        str_of(&config, &["deployer", "ssh", "key"]),
        Some(format!("{dir}/id_ed25519").as_str())
    );
    assert_eq!(
        str_of(&config, &["deployer", "ssh", "known_hosts"]),
        Some(format!("{dir}/known_hosts").as_str())
    );
    // The probes reach the port the config serves /healthz and /readyz on.
    let port = c["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some("http"))
        .expect("a port named http (the probes use it)");
    let listen = str_of(&config, &["http", "listen"]).unwrap();
    assert_eq!(
        listen.rsplit(':').next(),
        Some(port["containerPort"].as_u64().unwrap().to_string().as_str())
    );
}
