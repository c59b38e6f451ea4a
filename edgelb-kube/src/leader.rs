//! Leader election with a `coordination.k8s.io/v1` Lease.
//!
//! One replica holds the Lease and deploys; the others wait. The holder renews the Lease every
//! [`LeaderElectionConfig::retry_period`]; when it cannot renew within
//! [`LeaderElectionConfig::renew_deadline`], or finds another holder, it stops leading at once
//! (before the Lease expires for the others). Candidates take the Lease over when its record
//! has not changed for the Lease duration (measured on their own clock, so clock skew between
//! nodes does not matter) or when it was released. Every write carries the `resourceVersion`
//! that was read, so two candidates can never both win: the loser gets a 409 Conflict.

use std::time::Duration;

use edgelb_core::CancellationToken;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{Error, Result, status_code};

/// Settings of the [`LeaderElector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    /// Namespace of the Lease (edgelb's own namespace).
    pub namespace: String,
    /// Name of the Lease (default `edgelb-leader`).
    pub lease_name: String,
    /// This replica's identity, unique among replicas (the pod name).
    pub identity: String,
    /// How long a Lease is valid after its last renewal (default 15 s).
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renewal (default 10 s; less
    /// than `lease_duration`).
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew (default 2 s; less than `renew_deadline`).
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// Defaults for a Lease in `namespace`, held as `identity`.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            lease_name: "edgelb-leader".to_owned(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Checks names and timings as [`LeaderElector::new`] does (for `edgelb check`).
    pub fn validate(&self) -> Result<()> {
        for (setting, value) in [
            ("leader election namespace", &self.namespace),
            ("leader election lease name", &self.lease_name),
            ("leader election identity", &self.identity),
        ] {
            if value.is_empty() {
                return Err(Error::config(
                    setting,
                    "it is empty; set it (the identity is usually the pod name, from the downward API)",
                ));
            }
        }
        if self.lease_duration.as_secs() < 1
            || !(self.retry_period < self.renew_deadline
                && self.renew_deadline < self.lease_duration)
        {
            return Err(Error::config(
                "leader election timings",
                format!(
                    "need retry_period < renew_deadline < lease_duration and lease_duration >= 1s, got {:?} / {:?} / {:?}",
                    self.retry_period, self.renew_deadline, self.lease_duration
                ),
            ));
        }
        Ok(())
    }
}

/// Whether this replica leads, as the [`LeaderElector`] publishes it.
///
/// ```no_run
/// # async fn demo(mut leadership: edgelb_kube::Leadership) {
/// while let Some(term) = leadership.acquired().await {
///     // Lead until `term` is cancelled: start the pipeline and the status writer with it.
///     term.cancelled().await;
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Leadership {
    rx: watch::Receiver<bool>,
}

impl Leadership {
    /// Whether this replica leads right now.
    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    /// The underlying channel: `true` while leading.
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }

    /// Waits until this replica leads, and returns a token that is cancelled the moment it
    /// stops leading (lost, released, or the elector stopped). `None` once the elector has
    /// stopped.
    pub async fn acquired(&mut self) -> Option<CancellationToken> {
        self.rx.wait_for(|leading| *leading).await.ok()?;
        let term = CancellationToken::new();
        let mut rx = self.rx.clone();
        let token = term.clone();
        tokio::spawn(async move {
            // An error means the elector is gone: leadership ends too.
            let _ = rx.wait_for(|leading| !*leading).await;
            token.cancel();
        });
        Some(term)
    }
}

/// What one attempt found.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// We hold the Lease (acquired or renewed).
    Held,
    /// Someone else holds a valid Lease.
    HeldByOther(String),
    /// A write lost a race (409): read again.
    Conflict,
}

/// Runs leader election on a Lease.
///
/// ```no_run
/// use edgelb_core::CancellationToken;
/// use edgelb_kube::{LeaderElectionConfig, LeaderElector};
/// # async fn demo(client: kube::Client) -> edgelb_kube::Result<()> {
/// let elector = LeaderElector::new(client, LeaderElectionConfig::new("edgelb", "edgelb-7d9f-abcde"))?;
/// let mut leadership = elector.leadership();
/// let shutdown = CancellationToken::new();
/// let election = tokio::spawn(elector.run(shutdown.clone()));
/// if let Some(term) = leadership.acquired().await {
///     term.cancelled().await; // deploy until here
/// }
/// shutdown.cancel(); // releases the Lease
/// election.await.ok();
/// # Ok(()) }
/// ```
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    tx: watch::Sender<bool>,
    /// The Lease record last seen and when it was first seen (our clock).
    observed: Option<(String, Instant)>,
}

impl LeaderElector {
    /// An elector; fails on invalid settings.
    pub fn new(client: Client, config: LeaderElectionConfig) -> Result<Self> {
        config.validate()?;
        let (tx, _) = watch::channel(false);
        Ok(Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            tx,
            observed: None,
        })
    }

    /// Whether this replica leads; subscribe before calling [`LeaderElector::run`].
    pub fn leadership(&self) -> Leadership {
        Leadership {
            rx: self.tx.subscribe(),
        }
    }

    fn object(&self) -> String {
        format!("Lease {}/{}", self.config.namespace, self.config.lease_name)
    }

    /// Competes for the Lease until `shutdown` is cancelled, then releases it if held.
    /// API errors are logged and retried; this only returns errors from the release.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        let mut last_renewal: Option<Instant> = None;
        let mut next = Instant::now();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(next) => {}
            }
            next = Instant::now() + self.config.retry_period;
            let leading = *self.tx.borrow();
            // A leader's attempt may take only what is left of its renew deadline: the client
            // retries some failures (a 503) on its own, and a hanging renewal must not keep
            // this replica leading past the deadline.
            let budget = match (leading, last_renewal) {
                (true, Some(t)) => self.config.renew_deadline.saturating_sub(t.elapsed()),
                _ => self.config.renew_deadline,
            };
            let attempts = async {
                let outcome = self.attempt().await;
                if matches!(outcome, Ok(Attempt::Conflict)) {
                    // Someone wrote between our read and our write: read again right away.
                    return self.attempt().await;
                }
                outcome
            };
            let Ok(outcome) = tokio::time::timeout(budget, attempts).await else {
                tracing::warn!(
                    lease = %self.object(),
                    waited = ?budget,
                    "the API server did not answer the leader election in time"
                );
                self.check_deadline(leading, last_renewal);
                continue;
            };
            match outcome {
                Ok(Attempt::Held) => {
                    last_renewal = Some(Instant::now());
                    if !leading {
                        tracing::info!(lease = %self.object(), identity = %self.config.identity, "became the leader");
                        self.tx.send_replace(true);
                    }
                }
                Ok(Attempt::HeldByOther(holder)) => {
                    if leading {
                        tracing::warn!(lease = %self.object(), %holder, "lost the leadership to another replica; stopping");
                        self.tx.send_replace(false);
                    } else {
                        tracing::debug!(lease = %self.object(), %holder, "another replica leads");
                    }
                }
                Ok(Attempt::Conflict) => {
                    tracing::debug!(lease = %self.object(), "lease changed twice while we wrote; retrying");
                    self.check_deadline(leading, last_renewal);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "leader election attempt failed");
                    self.check_deadline(leading, last_renewal);
                }
            }
        }
        if *self.tx.borrow() {
            // Stop leading before the Lease is free for others.
            self.tx.send_replace(false);
            self.release().await?;
        }
        Ok(())
    }

    fn check_deadline(&self, leading: bool, last_renewal: Option<Instant>) {
        if leading && last_renewal.is_none_or(|t| t.elapsed() >= self.config.renew_deadline) {
            tracing::warn!(
                lease = %self.object(),
                deadline = ?self.config.renew_deadline,
                "could not renew the lease in time; stopping leading"
            );
            self.tx.send_replace(false);
        }
    }

    /// Reads the Lease and acquires, renews or backs off.
    async fn attempt(&mut self) -> Result<Attempt> {
        let now = Timestamp::now();
        let lease = self
            .api
            .get_opt(&self.config.lease_name)
            .await
            .map_err(|e| Error::api("reading", self.object(), e))?;
        let Some(lease) = lease else {
            return self.create(now).await;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let record = format!(
            "{:?}|{:?}|{:?}",
            holder,
            spec.renew_time.as_ref().map(|t| t.0),
            lease.metadata.resource_version
        );
        let observed_at = match &self.observed {
            Some((seen, at)) if *seen == record => *at,
            _ => {
                let at = Instant::now();
                self.observed = Some((record, at));
                at
            }
        };
        let ours = holder.as_deref() == Some(self.config.identity.as_str());
        if let (Some(other), false) = (&holder, ours) {
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.config.lease_duration, Duration::from_secs);
            if observed_at.elapsed() < duration {
                return Ok(Attempt::HeldByOther(other.clone()));
            }
            tracing::info!(lease = %self.object(), holder = %other, "the lease expired; taking it over");
        }
        let mut spec = spec;
        if !ours {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions =
                Some(spec.lease_transitions.unwrap_or(0) + i32::from(holder.is_some()));
        }
        spec.holder_identity = Some(self.config.identity.clone());
        spec.lease_duration_seconds = Some(self.duration_seconds());
        spec.renew_time = Some(MicroTime(now));
        let updated = Lease {
            metadata: lease.metadata,
            spec: Some(spec),
        };
        // `replace` sends metadata.resourceVersion: the write fails with 409 if the Lease
        // changed since we read it.
        match self
            .api
            .replace(&self.config.lease_name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(Attempt::Held),
            Err(e) if status_code(&e) == Some(409) => Ok(Attempt::Conflict),
            Err(e) => Err(Error::api(
                if ours { "renewing" } else { "acquiring" },
                self.object(),
                e,
            )),
        }
    }

    async fn create(&mut self, now: Timestamp) -> Result<Attempt> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.lease_name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.duration_seconds()),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Held),
            Err(e) if status_code(&e) == Some(409) => Ok(Attempt::Conflict),
            Err(e) => Err(Error::api("creating", self.object(), e)),
        }
    }

    /// Gives the Lease up so another replica can take it at once.
    async fn release(&mut self) -> Result<()> {
        let lease = self
            .api
            .get_opt(&self.config.lease_name)
            .await
            .map_err(|e| Error::api("reading", self.object(), e))?;
        let Some(mut lease) = lease else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(()); // not ours any more
        }
        let now = Timestamp::now();
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(now));
        spec.acquire_time = Some(MicroTime(now));
        match self
            .api
            .replace(&self.config.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                tracing::info!(lease = %self.object(), "released the lease");
                Ok(())
            }
            // Someone else already wrote it: nothing of ours to release.
            Err(e) if status_code(&e) == Some(409) => Ok(()),
            Err(e) => Err(Error::api("releasing", self.object(), e)),
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}
