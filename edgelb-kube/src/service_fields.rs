//! The Service fields beyond ports that edgelb honours, filled into a built snapshot: source
//! ranges ([`crate::source_ranges`]) and session affinity ([`crate::session_affinity`]).

use std::collections::HashSet;

use edgelb_core::{ServiceKey, ServiceSpec, Snapshot};
use k8s_openapi::api::core::v1::Service;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::source::slices::Touched;

use crate::convert::Warning;
use crate::session_affinity::session_affinity;
use crate::source_ranges::SourceRangeMemory;

/// What one source remembers of Services across snapshot builds (their last valid source
/// ranges). Call [`ServiceFields::apply`] for every Service of a build, then
/// [`ServiceFields::finish_build`].
#[derive(Debug, Default)]
pub(crate) struct ServiceFields {
    ranges: SourceRangeMemory,
    seen: HashSet<ServiceKey>,
}

impl ServiceFields {
    /// Reads `svc`'s fields and sets them on its entry of `snapshot` (a Service none of whose
    /// ports made it into the snapshot only has its ranges remembered and warned about).
    pub(crate) fn apply(
        &mut self,
        snapshot: &mut Snapshot,
        svc: &Service,
        key: &ServiceKey,
        warnings: &mut Vec<Warning>,
    ) {
        self.seen.insert(key.clone());
        let ranges = self.ranges.resolve(svc, key, warnings);
        let affinity = session_affinity(svc, warnings);
        if let Some(spec) = snapshot.services.get_mut(key) {
            spec.source_ranges = ranges;
            spec.session_affinity = affinity;
        }
    }

    /// Reads `svc`'s fields into `spec`, its own (a source that builds Service by Service).
    /// Pair it with [`ServiceFields::forget_gone`], not with `finish_build`.
    pub(crate) fn fill(
        &mut self,
        spec: &mut ServiceSpec,
        svc: &Service,
        key: &ServiceKey,
        warnings: &mut Vec<Warning>,
    ) {
        spec.source_ranges = self.ranges.resolve(svc, key, warnings);
        spec.session_affinity = session_affinity(svc, warnings);
    }

    /// Forgets the Services among `touched` that `services` no longer holds (deleted, or out
    /// of the class); for [`Touched::All`], every Service it does not hold.
    pub(crate) fn forget_gone(&mut self, touched: &Touched, services: &Store<Service>) {
        let held = |key: &ServiceKey| {
            services
                .get(&ObjectRef::new(&key.name).within(&key.namespace))
                .is_some()
        };
        match touched {
            Touched::All => self.ranges.retain(&held),
            Touched::Some(names) => {
                let gone: HashSet<(String, String)> = names
                    .iter()
                    .filter(|(ns, name)| services.get(&ObjectRef::new(name).within(ns)).is_none())
                    .cloned()
                    .collect();
                if !gone.is_empty() {
                    self.ranges.retain(&|key: &ServiceKey| {
                        !gone.contains(&(key.namespace.clone(), key.name.clone()))
                    });
                }
            }
        }
    }

    /// Forgets Services this build did not see (deleted, or out of the class).
    pub(crate) fn finish_build(&mut self) {
        let seen = std::mem::take(&mut self.seen);
        self.ranges.retain(&|key| seen.contains(key));
    }
}
