//! Leader election on a `coordination.k8s.io/v1` Lease, as kube-controller-manager does it
//! (client-go's `leaderelection`): a candidate takes the lease when it is free or its
//! holder has not renewed it for `lease_duration` (judged by this candidate's own clock
//! from when it last saw the record change, so clock skew between machines does not
//! matter); the holder renews every `retry_period` and steps down when it could not renew
//! for `renew_deadline`. Writes carry the resourceVersion read, so two candidates can never
//! both win.
//!
//! kube-lease-manager (the crate for this) has second granularity and no retry period, so
//! the upstream flags could not be honoured with it; this is the same small state machine
//! client-go runs.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How a candidate competes.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// Namespace of the Lease (`kube-system`).
    pub namespace: String,
    /// Name of the Lease (e.g. `moor-controller-manager`).
    pub name: String,
    /// This candidate's identity, unique among candidates.
    pub identity: String,
    /// How long a lease is valid after its last renewal (upstream default 15 s).
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before stepping down (10 s).
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and the holder renews (2 s).
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// Upstream's defaults for the Lease `name` in `kube-system`, with a unique identity.
    pub fn new(name: impl Into<String>) -> Self {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        LeaderConfig {
            namespace: "kube-system".to_owned(),
            name: name.into(),
            identity: format!("{host}_{}", uuid::Uuid::new_v4()),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Run `work` only while holding the Lease: campaign, start `work(term)` on winning, cancel
/// `term` (and wait for the work to end) when the lease is lost, then campaign again — until
/// `shutdown` fires, when the lease is released for a successor.
pub async fn run_while_leader<F, Fut>(
    client: Client,
    config: LeaderConfig,
    shutdown: CancellationToken,
    mut work: F,
) where
    F: FnMut(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut elector = LeaderElector::new(client, config);
    while elector.acquire(&shutdown).await {
        let term = shutdown.child_token();
        let running = tokio::spawn(work(term.clone()));
        elector.hold(&shutdown).await;
        term.cancel();
        let _ = running.await;
        if shutdown.is_cancelled() {
            // Released only once the work has stopped, so a successor never overlaps it.
            elector.release().await;
            break;
        }
    }
}

/// A candidate for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderConfig,
    /// The record last seen and when (by this candidate's clock) it last changed.
    observed: Option<(LeaseSpec, Instant)>,
}

/// What one attempt found.
enum Attempt {
    /// We hold the lease (acquired or renewed).
    Held,
    /// Someone else holds a valid lease.
    Taken,
}

impl LeaderElector {
    /// A candidate using `client`.
    pub fn new(client: Client, config: LeaderConfig) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// Wait until this candidate holds the lease; false if `shutdown` fired first.
    pub async fn acquire(&mut self, shutdown: &CancellationToken) -> bool {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Held) => {
                    tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
                    return true;
                }
                Ok(Attempt::Taken) => {}
                Err(e) => {
                    tracing::debug!(lease = %self.config.name, error = %e, "acquiring the lease")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(self.config.retry_period) => {}
            }
        }
    }

    /// Keep the lease renewed until it is lost (no successful renewal for
    /// `renew_deadline`) or `shutdown` fires. The caller stops its work and then calls
    /// [`LeaderElector::release`], so a successor takes over at once but never overlaps.
    pub async fn hold(&mut self, shutdown: &CancellationToken) {
        let mut last_renewal = Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.config.retry_period) => {}
            }
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Held) => last_renewal = Instant::now(),
                Ok(Attempt::Taken) => {
                    tracing::warn!(lease = %self.config.name, "leadership lost to another candidate");
                    return;
                }
                Err(e) => {
                    tracing::warn!(lease = %self.config.name, error = %e, "renewing the lease");
                    if last_renewal.elapsed() >= self.config.renew_deadline {
                        tracing::warn!(lease = %self.config.name, "could not renew within the deadline; stepping down");
                        return;
                    }
                }
            }
        }
    }

    fn record(
        &self,
        now: jiff::Timestamp,
        transitions: i32,
        acquired: Option<MicroTime>,
    ) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let now = jiff::Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.record(now, 0, None)),
            };
            let created = self.api.create(&PostParams::default(), &lease).await?;
            self.observe(created.spec.unwrap_or_default());
            return Ok(Attempt::Held);
        };
        let current = lease.spec.clone().unwrap_or_default();
        self.observe(current.clone());
        let holder = current.holder_identity.as_deref().unwrap_or("");
        let ours = holder == self.config.identity;
        let expired = self
            .observed
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() >= self.config.lease_duration);
        if !holder.is_empty() && !ours && !expired {
            return Ok(Attempt::Taken);
        }
        let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours {
            current.acquire_time.clone()
        } else {
            None
        };
        lease.spec = Some(self.record(now, transitions, acquired));
        // The resourceVersion read makes this a compare-and-swap: of two candidates taking
        // an expired lease, one gets a conflict.
        let replaced = self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await?;
        self.observe(replaced.spec.unwrap_or_default());
        Ok(Attempt::Held)
    }

    /// Remember the record; its observation time moves only when it changed.
    fn observe(&mut self, spec: LeaseSpec) {
        match &self.observed {
            Some((seen, _)) if *seen == spec => {}
            _ => self.observed = Some((spec, Instant::now())),
        }
    }

    /// Give the lease up (holder cleared) if we hold it, so a successor need not wait for
    /// it to expire.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        if let Err(e) = self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            tracing::debug!(lease = %self.config.name, error = %e, "releasing the lease");
        }
    }
}
