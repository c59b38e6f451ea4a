//! The in-memory object store: objects by resource, namespace and name, one monotonic
//! resourceVersion for everything, and the history of every change (what watches replay).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::ApiError;

/// A resource type the server serves. All of them are namespaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resource {
    /// `v1`, `discovery.k8s.io/v1`, …
    pub group_version: &'static str,
    /// The path segment: `services`, …
    pub plural: &'static str,
    /// `Service`, …
    pub kind: &'static str,
    /// Whether `status` is a subresource: then only `…/status` writes change it.
    pub status_subresource: bool,
}

/// What edgelb reads and writes.
pub(crate) const RESOURCES: &[Resource] = &[
    Resource {
        group_version: "v1",
        plural: "services",
        kind: "Service",
        status_subresource: true,
    },
    Resource {
        group_version: "discovery.k8s.io/v1",
        plural: "endpointslices",
        kind: "EndpointSlice",
        status_subresource: false,
    },
    Resource {
        group_version: "events.k8s.io/v1",
        plural: "events",
        kind: "Event",
        status_subresource: false,
    },
    Resource {
        group_version: "coordination.k8s.io/v1",
        plural: "leases",
        kind: "Lease",
        status_subresource: false,
    },
    // external-dns's custom resource (its CRD installed), for the named mode's DNS.
    Resource {
        group_version: "externaldns.k8s.io/v1alpha1",
        plural: "dnsendpoints",
        kind: "DNSEndpoint",
        status_subresource: false,
    },
    // edgelb's own custom resources (deploy/crds.yaml installed).
    Resource {
        group_version: "edgelb.io/v1alpha1",
        plural: "edgenodes",
        kind: "EdgeNode",
        status_subresource: true,
    },
    Resource {
        group_version: "edgelb.io/v1alpha1",
        plural: "edgepools",
        kind: "EdgePool",
        status_subresource: false,
    },
];

impl Resource {
    /// The resource served at `/api/v1/…` (`group_version` `v1`) or `/apis/GROUP/VERSION/…`.
    pub(crate) fn by_path(group_version: &str, plural: &str) -> Option<Self> {
        RESOURCES
            .iter()
            .find(|r| r.group_version == group_version && r.plural == plural)
            .copied()
    }

    /// The resource of an object's `kind`.
    pub(crate) fn by_kind(kind: &str) -> Option<Self> {
        RESOURCES.iter().find(|r| r.kind == kind).copied()
    }

    /// `services "web"`, as the API server names objects in messages.
    fn named(&self, name: &str) -> String {
        let group = self.group_version.rsplit_once('/').map_or("", |(g, _)| g);
        if group.is_empty() {
            format!("{} {name:?}", self.plural)
        } else {
            format!("{}.{group} {name:?}", self.plural)
        }
    }
}

/// One label requirement of a `labelSelector`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A `labelSelector` and a `fieldSelector` (`metadata.name`, `metadata.namespace`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Selector {
    labels: Vec<LabelRequirement>,
    /// (field, equal?, value)
    fields: Vec<(String, bool, String)>,
}

/// Splits on commas outside parentheses (`a in (x,y),b` is two requirements).
fn split_requirements(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn set_values(text: &str) -> Option<Vec<String>> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

impl Selector {
    /// Parses the query's selectors; a syntax the server does not know is a 400, as on a
    /// real API server.
    pub(crate) fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, ApiError> {
        let bad = |what: &str, text: &str| {
            ApiError::bad_request(format!("unable to parse requirement: {what} {text:?}"))
        };
        let mut selector = Self::default();
        for req in split_requirements(labels.unwrap_or("")) {
            let parsed = if let Some((k, v)) = req.split_once("!=") {
                LabelRequirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
                LabelRequirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = req.split_once(" notin ") {
                LabelRequirement::NotIn(
                    k.trim().into(),
                    set_values(v).ok_or_else(|| bad("label", req))?,
                )
            } else if let Some((k, v)) = req.split_once(" in ") {
                LabelRequirement::In(
                    k.trim().into(),
                    set_values(v).ok_or_else(|| bad("label", req))?,
                )
            } else if let Some(k) = req.strip_prefix('!') {
                LabelRequirement::NotExists(k.trim().into())
            } else if !req.contains([' ', '(', ')']) {
                LabelRequirement::Exists(req.into())
            } else {
                return Err(bad("label", req));
            };
            selector.labels.push(parsed);
        }
        for req in split_requirements(fields.unwrap_or("")) {
            let (field, equal, value) = if let Some((k, v)) = req.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
                (k, true, v)
            } else {
                return Err(bad("field", req));
            };
            let field = field.trim();
            if !matches!(field, "metadata.name" | "metadata.namespace") {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            selector
                .fields
                .push((field.to_owned(), equal, value.trim().to_owned()));
        }
        Ok(selector)
    }

    /// Whether `obj` is selected.
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        let label = |k: &str| obj["metadata"]["labels"][k].as_str();
        let labels_ok = self.labels.iter().all(|req| match req {
            LabelRequirement::Equals(k, v) => label(k) == Some(v.as_str()),
            LabelRequirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            LabelRequirement::Exists(k) => label(k).is_some(),
            LabelRequirement::NotExists(k) => label(k).is_none(),
            LabelRequirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelRequirement::NotIn(k, vs) => !label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
        });
        labels_ok
            && self.fields.iter().all(|(field, equal, value)| {
                let actual = match field.as_str() {
                    "metadata.name" => obj["metadata"]["name"].as_str(),
                    _ => obj["metadata"]["namespace"].as_str(),
                };
                (actual == Some(value.as_str())) == *equal
            })
    }
}

/// RFC 7386 JSON merge patch.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// `now` as the API server writes timestamps: `2026-11-26T23:31:31Z`.
pub(crate) fn timestamp_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// One change, as watches replay it.
#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    resource: &'static str,
    namespace: String,
    old: Option<Value>,
    new: Option<Value>,
}

type Key = (&'static str, String, String);

/// Every object, and the history of changes.
#[derive(Debug, Default)]
pub(crate) struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: Vec<Change>,
    /// History up to this resourceVersion is gone: watches from before it get 410 Gone.
    compacted: u64,
    counter: u64,
    /// Paged lists in progress (`limit` and `continue`).
    pub(crate) pages: super::pages::Pages,
}

fn name_of(obj: &Value) -> Option<&str> {
    obj["metadata"]["name"].as_str().filter(|n| !n.is_empty())
}

/// A list item: what a real API server writes has no kind and apiVersion.
fn list_item(obj: &Value) -> Value {
    let mut item = obj.clone();
    if let Value::Object(map) = &mut item {
        map.remove("kind");
        map.remove("apiVersion");
    }
    item
}

impl Store {
    /// The current resourceVersion (of the last change).
    pub(crate) fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Forgets the history so far, as etcd compaction does, after one more write elsewhere in
    /// the cluster (the resourceVersion moves on, no object of ours changes): every watch,
    /// open or new, from before now is answered 410 Gone and its client must list again.
    pub(crate) fn expire(&mut self) {
        self.rv += 1;
        self.history.clear();
        self.compacted = self.rv;
    }

    /// The 410 Gone a watch from `since` gets, if its history is compacted away.
    pub(crate) fn gone(&self, since: u64) -> Option<ApiError> {
        (since < self.compacted).then(|| {
            ApiError::new(
                410,
                "Expired",
                format!("too old resource version: {since} ({})", self.compacted),
            )
        })
    }

    fn key(res: Resource, namespace: &str, name: &str) -> Key {
        (res.plural, namespace.to_owned(), name.to_owned())
    }

    fn not_found(res: Resource, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{} not found", res.named(name)))
    }

    /// One object.
    pub(crate) fn get(
        &self,
        res: Resource,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.objects
            .get(&Self::key(res, namespace, name))
            .cloned()
            .ok_or_else(|| Self::not_found(res, name))
    }

    /// A `…List` of the selected objects in `namespace` (all namespaces when `None`).
    pub(crate) fn list(
        &self,
        res: Resource,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Value {
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|((plural, ns, _), obj)| {
                *plural == res.plural && namespace.is_none_or(|n| n == ns) && selector.matches(obj)
            })
            .map(|(_, obj)| list_item(obj))
            .collect();
        json!({
            "kind": format!("{}List", res.kind),
            "apiVersion": res.group_version,
            "metadata": {"resourceVersion": self.rv.to_string()},
            "items": items,
        })
    }

    /// Checks an object sent for `namespace` (and `name`, for writes to one object).
    fn check_body(
        res: Resource,
        namespace: &str,
        name: Option<&str>,
        body: &Value,
    ) -> Result<(), ApiError> {
        if !body.is_object() || !body["metadata"].is_object() {
            return Err(ApiError::bad_request(format!(
                "a {} needs an object with metadata",
                res.kind
            )));
        }
        if let Some(kind) = body["kind"].as_str()
            && kind != res.kind
        {
            return Err(ApiError::bad_request(format!(
                "kind {kind} sent to the {} endpoint",
                res.plural
            )));
        }
        if let Some(api_version) = body["apiVersion"].as_str()
            && api_version != res.group_version
        {
            return Err(ApiError::bad_request(format!(
                "apiVersion {api_version} sent to the {} endpoint",
                res.group_version
            )));
        }
        if let Some(ns) = body["metadata"]["namespace"].as_str()
            && !ns.is_empty()
            && ns != namespace
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
                    .to_owned(),
            ));
        }
        if let (Some(name), Some(in_body)) = (name, name_of(body))
            && name != in_body
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({in_body}) does not match the name on the URL ({name})"
            )));
        }
        Ok(())
    }

    /// Stores `obj` as the new state of (res, namespace, name) with the next resourceVersion.
    fn commit(
        &mut self,
        res: Resource,
        namespace: &str,
        name: &str,
        mut obj: Value,
        old: Option<Value>,
    ) -> Value {
        self.rv += 1;
        obj["kind"] = json!(res.kind);
        obj["apiVersion"] = json!(res.group_version);
        obj["metadata"]["name"] = json!(name);
        obj["metadata"]["namespace"] = json!(namespace);
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects
            .insert(Self::key(res, namespace, name), obj.clone());
        self.history.push(Change {
            rv: self.rv,
            resource: res.plural,
            namespace: namespace.to_owned(),
            old,
            new: Some(obj.clone()),
        });
        obj
    }

    /// A fresh 5-character name suffix, as `generateName` gets.
    fn suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        self.counter += 1;
        let mut n = self.counter.wrapping_mul(2_654_435_761) % 14_348_907; // 27^5
        (0..5)
            .map(|_| {
                let c = ALPHABET[(n % 27) as usize];
                n /= 27;
                char::from(c)
            })
            .collect()
    }

    /// `POST`: a new object (`metadata.name`, or `generateName` plus a suffix).
    pub(crate) fn create(
        &mut self,
        res: Resource,
        namespace: &str,
        mut body: Value,
    ) -> Result<Value, ApiError> {
        Self::check_body(res, namespace, None, &body)?;
        let name = match (name_of(&body), body["metadata"]["generateName"].as_str()) {
            (Some(name), _) => name.to_owned(),
            (None, Some(prefix)) if !prefix.is_empty() => {
                let prefix = prefix.to_owned();
                format!("{prefix}{}", self.suffix())
            }
            _ => {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "{} is invalid: metadata.name: Required value: name or generateName is required",
                        res.kind
                    ),
                ));
            }
        };
        if self.objects.contains_key(&Self::key(res, namespace, &name)) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} already exists", res.named(&name)),
            ));
        }
        self.counter += 1;
        let meta = &mut body["metadata"];
        meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012x}", self.counter));
        meta["creationTimestamp"] = json!(timestamp_now());
        if meta["generation"].is_null() {
            meta["generation"] = json!(1);
        }
        if res.status_subresource {
            body["status"] = json!({"loadBalancer": {}});
        }
        Ok(self.commit(res, namespace, &name, body, None))
    }

    /// `PUT`: replaces an object; a `metadata.resourceVersion` that is not the current one is a
    /// 409 Conflict. With a status subresource, the status is kept.
    pub(crate) fn replace(
        &mut self,
        res: Resource,
        namespace: &str,
        name: &str,
        mut body: Value,
    ) -> Result<Value, ApiError> {
        Self::check_body(res, namespace, Some(name), &body)?;
        let old = self.get(res, namespace, name)?;
        if let Some(rv) = body["metadata"]["resourceVersion"].as_str()
            && !rv.is_empty()
            && Some(rv) != old["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {}: the object has been modified; please apply your changes to the latest version and try again",
                    res.named(name)
                ),
            ));
        }
        for field in ["uid", "creationTimestamp", "generation"] {
            body["metadata"][field] = old["metadata"][field].clone();
        }
        if res.status_subresource {
            body["status"] = old["status"].clone();
        }
        Ok(self.commit(res, namespace, name, body, Some(old)))
    }

    /// `PATCH` with a JSON merge patch, of the object or (`status_only`) of its status. An
    /// unchanged object is not written (no new resourceVersion), as on a real API server.
    pub(crate) fn merge(
        &mut self,
        res: Resource,
        namespace: &str,
        name: &str,
        patch: &Value,
        status_only: bool,
    ) -> Result<Value, ApiError> {
        let old = self.get(res, namespace, name)?;
        if let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
            && Some(rv) != old["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {}: the object has been modified",
                    res.named(name)
                ),
            ));
        }
        let mut patched = old.clone();
        merge_patch(&mut patched, patch);
        let new = if status_only {
            let mut new = old.clone();
            new["status"] = patched["status"].clone();
            new
        } else {
            for field in ["name", "namespace", "uid", "creationTimestamp"] {
                patched["metadata"][field] = old["metadata"][field].clone();
            }
            if res.status_subresource {
                patched["status"] = old["status"].clone();
            }
            patched
        };
        if new == old {
            return Ok(old);
        }
        Ok(self.commit(res, namespace, name, new, Some(old)))
    }

    /// `DELETE`: removes an object; watches get it with the deletion's resourceVersion.
    pub(crate) fn delete(
        &mut self,
        res: Resource,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let old = self
            .objects
            .remove(&Self::key(res, namespace, name))
            .ok_or_else(|| Self::not_found(res, name))?;
        self.rv += 1;
        let mut gone = old.clone();
        gone["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.history.push(Change {
            rv: self.rv,
            resource: res.plural,
            namespace: namespace.to_owned(),
            old: Some(old),
            new: None,
        });
        Ok(gone)
    }

    /// Creates `obj` or updates it in place, as `kubectl apply` would: the status of a
    /// resource with a status subresource is left as it is.
    pub(crate) fn apply(&mut self, mut obj: Value) -> Result<Value, ApiError> {
        let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
        let res = Resource::by_kind(&kind)
            .ok_or_else(|| ApiError::bad_request(format!("unknown kind {kind:?}")))?;
        let namespace = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned();
        let name = name_of(&obj)
            .ok_or_else(|| ApiError::bad_request("apply needs metadata.name".to_owned()))?
            .to_owned();
        match self.get(res, &namespace, &name) {
            Err(_) => self.create(res, &namespace, obj),
            Ok(_) => {
                if let Value::Object(meta) = &mut obj["metadata"] {
                    meta.remove("resourceVersion");
                }
                self.replace(res, &namespace, &name, obj)
            }
        }
    }

    /// Watch events (`{"type": …, "object": …}`) for changes after `since`, of `res` in
    /// `namespace` (all when `None`) as `selector` sees them: an object that starts matching
    /// is ADDED, one that stops matching is DELETED.
    pub(crate) fn events_since(
        &self,
        since: u64,
        res: Resource,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Vec<Value> {
        let start = self.history.partition_point(|c| c.rv <= since);
        self.history[start..]
            .iter()
            .filter(|c| c.resource == res.plural && namespace.is_none_or(|n| n == c.namespace))
            .filter_map(|c| {
                let was = c.old.as_ref().is_some_and(|o| selector.matches(o));
                let is = c.new.as_ref().is_some_and(|n| selector.matches(n));
                let (kind, obj) = match (was, is, &c.new) {
                    (false, true, Some(new)) => ("ADDED", new.clone()),
                    (true, true, Some(new)) => ("MODIFIED", new.clone()),
                    (true, false, Some(new)) => ("DELETED", new.clone()),
                    (true, false, None) => {
                        let mut gone = c.old.clone().unwrap_or_default();
                        gone["metadata"]["resourceVersion"] = json!(c.rv.to_string());
                        ("DELETED", gone)
                    }
                    _ => return None,
                };
                Some(json!({"type": kind, "object": obj}))
            })
            .collect()
    }

    /// ADDED events for every selected object now (a watch from resourceVersion 0 or unset).
    pub(crate) fn current_as_added(
        &self,
        res: Resource,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((plural, ns, _), obj)| {
                *plural == res.plural && namespace.is_none_or(|n| n == ns) && selector.matches(obj)
            })
            .map(|(_, obj)| json!({"type": "ADDED", "object": obj}))
            .collect()
    }

    /// Every object of `res` (tests' view).
    pub(crate) fn all(&self, res: Resource) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((plural, _, _), _)| *plural == res.plural)
            .map(|(_, obj)| obj.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, labels: Value) -> Value {
        json!({"kind": "Service", "metadata": {"name": name, "namespace": "shop", "labels": labels}, "spec": {}})
    }

    #[test]
    fn selectors_parse_and_match() {
        let obj = svc("web", json!({"app": "web", "tier": "edge"}));
        let ok = |l: &str, f: &str| {
            Selector::parse(Some(l), Some(f))
                .unwrap_or_else(|e| panic!("{l:?} {f:?}: {e}"))
                .matches(&obj)
        };
        assert!(ok("app", ""));
        assert!(ok("app=web", "metadata.name=web"));
        assert!(ok(
            "app==web,tier in (edge, core)",
            "metadata.namespace=shop"
        ));
        assert!(ok("!missing,tier notin (core)", "metadata.name!=api"));
        assert!(!ok("app=api", ""));
        assert!(!ok("missing", ""));
        assert!(!ok("", "metadata.name=api"));
        assert!(Selector::parse(None, Some("spec.type=LoadBalancer")).is_err());
        assert!(Selector::parse(Some("a in b"), None).is_err());
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(
            &mut target,
            &json!({"a": "z", "c": {"f": null}, "l": [3], "n": {"x": 1}}),
        );
        assert_eq!(
            target,
            json!({"a": "z", "c": {"d": "e"}, "l": [3], "n": {"x": 1}})
        );
    }

    #[test]
    fn timestamps_look_like_the_api_servers() {
        let t = timestamp_now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && t.as_bytes()[10] == b'T');
    }

    #[test]
    fn versions_conflicts_and_selector_transitions() {
        let mut store = Store::default();
        let services = Resource::by_kind("Service").unwrap();
        let created = store.apply(svc("web", json!({"app": "web"}))).unwrap();
        assert_eq!(created["metadata"]["resourceVersion"], "1");
        assert_eq!(created["status"], json!({"loadBalancer": {}}));
        // A stale write is a conflict; the current one goes through.
        let mut stale = created.clone();
        stale["metadata"]["resourceVersion"] = json!("0");
        assert_eq!(
            store
                .replace(services, "shop", "web", stale)
                .unwrap_err()
                .code,
            409
        );
        store
            .merge(
                services,
                "shop",
                "web",
                &json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}),
                true,
            )
            .unwrap();
        // An unchanged patch writes nothing.
        let same = store
            .merge(
                services,
                "shop",
                "web",
                &json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}),
                true,
            )
            .unwrap();
        assert_eq!(same["metadata"]["resourceVersion"], "2");
        // apply leaves the status alone, and the label change leaves the selector.
        let applied = store.apply(svc("web", json!({"app": "other"}))).unwrap();
        assert_eq!(
            applied["status"]["loadBalancer"]["ingress"][0]["ip"],
            "192.0.2.1"
        );
        store.delete(services, "shop", "web").unwrap();
        let selector = Selector::parse(Some("app=web"), None).unwrap();
        let types: Vec<Value> = store
            .events_since(0, services, Some("shop"), &selector)
            .iter()
            .map(|e| e["type"].clone())
            .collect();
        assert_eq!(types, vec!["ADDED", "MODIFIED", "DELETED"]);
        let all: Vec<Value> = store
            .events_since(1, services, None, &Selector::default())
            .iter()
            .map(|e| e["type"].clone())
            .collect();
        assert_eq!(all, vec!["MODIFIED", "MODIFIED", "DELETED"]);
        assert_eq!(store.resource_version(), 4);
        store.expire();
        assert_eq!(store.gone(4).map(|e| e.code), Some(410));
        assert!(store.gone(5).is_none());
    }
}
