//! What the status writer knows of the Services it writes: uid, an Event reference and the
//! current `status.loadBalancer.ingress`, kept from a watch so that no GET is needed and a
//! re-created or externally changed Service is seen.

use std::collections::HashMap;

use edgelb_core::ServiceKey;
use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};

use crate::source::CappedBackoff;
use crate::status::Ingress;

/// One Service as the status writer last saw it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Observed {
    /// Where Events about the Service go (carries its uid).
    pub(crate) reference: ObjectReference,
    /// Its `status.loadBalancer.ingress`, whoever wrote it.
    pub(crate) ingress: Vec<Ingress>,
}

impl Observed {
    /// The Service as it stands, or `None` for a Service that has no usable key.
    pub(crate) fn of(svc: &Service) -> Option<(ServiceKey, Self)> {
        let key = ServiceKey::new(svc.namespace().unwrap_or_default(), svc.name_any()).ok()?;
        let mut reference = svc.object_ref(&());
        // A reference names the object; its version only goes stale.
        reference.resource_version = None;
        let ingress = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|list| {
                list.iter()
                    .filter_map(|i| match (&i.ip, &i.hostname) {
                        (Some(ip), _) => Some(Ingress {
                            address: ip.clone(),
                            is_ip: true,
                            proxy: i.ip_mode.as_deref() == Some("Proxy"),
                        }),
                        (None, Some(name)) => Some(Ingress {
                            address: name.clone(),
                            is_ip: false,
                            proxy: false,
                        }),
                        (None, None) => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some((key, Self { reference, ingress }))
    }
}

/// The Services the writer may have to write: `type: LoadBalancer` ones, and any that still
/// carries a load balancer ingress (a Service that stopped being a LoadBalancer keeps the
/// status edgelb wrote until edgelb clears it).
fn is_load_balancer(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .is_some_and(|s| s.type_.as_deref() == Some("LoadBalancer"))
        || svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .is_some_and(|i| !i.is_empty())
}

/// The `type: LoadBalancer` Services of the cluster, reduced to what the writer needs.
#[derive(Debug, Default)]
pub(crate) struct ObservedServices {
    by_key: HashMap<ServiceKey, Observed>,
    /// Filled during a (re)list, swapped in when it completes.
    listing: Option<HashMap<ServiceKey, Observed>>,
    ready: bool,
    failing: bool,
}

impl ObservedServices {
    /// The watch that feeds [`ObservedServices::apply`].
    pub(crate) fn watch(
        client: Client,
    ) -> BoxStream<'static, watcher::Result<watcher::Event<Service>>> {
        watcher(Api::<Service>::all(client), watcher::Config::default())
            .backoff(CappedBackoff::default())
            .boxed()
    }

    /// Whether the first list has completed: before that, a Service not seen may exist.
    pub(crate) fn ready(&self) -> bool {
        self.ready
    }

    /// The Service `key`, if it exists (as far as the watch knows).
    pub(crate) fn get(&self, key: &ServiceKey) -> Option<&Observed> {
        self.by_key.get(key)
    }

    /// Records what a write returned (the watch echoes it later).
    pub(crate) fn record(&mut self, key: ServiceKey, seen: Observed) {
        self.by_key.insert(key, seen);
    }

    /// Forgets `key` (the API server said it does not exist).
    pub(crate) fn forget(&mut self, key: &ServiceKey) {
        self.by_key.remove(key);
    }

    /// Takes one watch event; returns whether what the writer compares against changed.
    pub(crate) fn apply(&mut self, event: watcher::Result<watcher::Event<Service>>) -> bool {
        match event {
            Ok(event) => {
                if self.failing {
                    self.failing = false;
                    tracing::info!("watching Services for their load balancer status works again");
                }
                self.apply_event(event)
            }
            Err(e) => {
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(
                        error = %e,
                        "watching Services for their load balancer status failed; retrying at most 1 s apart, writing nothing new meanwhile"
                    );
                }
                false
            }
        }
    }

    fn apply_event(&mut self, event: watcher::Event<Service>) -> bool {
        match event {
            watcher::Event::Init => {
                self.listing = Some(HashMap::new());
                false
            }
            watcher::Event::InitApply(svc) => {
                if let (true, Some((key, seen)), Some(listing)) = (
                    is_load_balancer(&svc),
                    Observed::of(&svc),
                    self.listing.as_mut(),
                ) {
                    listing.insert(key, seen);
                }
                false
            }
            watcher::Event::InitDone => {
                if let Some(listing) = self.listing.take() {
                    self.by_key = listing;
                }
                self.ready = true;
                true
            }
            watcher::Event::Apply(svc) => match Observed::of(&svc) {
                Some((key, seen)) if is_load_balancer(&svc) => {
                    self.by_key.insert(key, seen.clone()) != Some(seen)
                }
                Some((key, _)) => self.by_key.remove(&key).is_some(),
                None => false,
            },
            watcher::Event::Delete(svc) => match Observed::of(&svc) {
                Some((key, _)) => self.by_key.remove(&key).is_some(),
                None => false,
            },
        }
    }
}
