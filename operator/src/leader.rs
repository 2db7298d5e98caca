//! Leader election with a coordination.k8s.io/v1 Lease, so that two operator replicas are safe:
//! only the holder runs the controllers.
//!
//! Like client-go's leader election, no replica ever compares a time written by another replica
//! with its own wall clock (clocks of two nodes may disagree by more than a lease duration). A
//! candidate instead watches the Lease *record* change: it notes, on its own monotonic clock, when
//! it first saw the current record (resourceVersion), and takes the lease over only when that
//! record has stayed unchanged for the lease's `leaseDurationSeconds`. The holder renews every
//! eighth of the duration; if it cannot renew within two thirds of it (its renew deadline,
//! counted from the start of its last successful renewal, which precedes any candidate's
//! observation of that renewal), it stops its controllers and gives them a sixth of the duration
//! to drain — so a holder has stopped before any candidate may take over. The times written into the Lease
//! (`acquireTime`, `renewTime`) are for people and tools; this code never reads them back.
//! Every write carries the resourceVersion it read, so two candidates cannot both win a takeover.
//! On shutdown the holder releases the lease (empty holder) so a standby takes over at once.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The wall clock written into the Lease (only written, never compared).
pub type WallClock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// A contender for the lease.
#[derive(Clone)]
pub struct LeaderElection {
    pub api: Api<Lease>,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    clock: WallClock,
    /// The Lease record last seen and when (this replica's monotonic clock).
    observed: Arc<Mutex<Option<(String, Instant)>>>,
}

/// The leadership [`LeaderElection::lead`] won.
pub struct Leadership {
    /// Cancelled when the lease is lost (not renewed in time, or taken) or `stop` is cancelled:
    /// the controllers stop on it.
    pub stop: CancellationToken,
    /// Cancelled only when the lease is lost: the controllers must then be gone within
    /// [`LeaderElection::drain_after_loss`].
    pub lost: CancellationToken,
    renewer: tokio::task::JoinHandle<()>,
    done: CancellationToken,
    election: LeaderElection,
}

impl Leadership {
    /// Stops renewing (after the controllers stopped) and, on shutdown, releases the lease so a
    /// standby takes over without waiting for it to expire.
    pub async fn step_down(self, release: bool) {
        self.done.cancel();
        let _ = self.renewer.await;
        if release && !self.lost.is_cancelled() {
            self.election.release().await;
        }
    }
}

impl LeaderElection {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, lease_duration: Duration) -> Self {
        Self {
            api,
            name: name.into(),
            identity: identity.into(),
            lease_duration,
            clock: Arc::new(Timestamp::now),
            observed: Arc::default(),
        }
    }

    /// The wall clock this replica writes into the Lease (tests skew it).
    pub fn with_clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// How often the holder renews, and a candidate looks.
    fn retry_period(&self) -> Duration {
        self.lease_duration / 8
    }

    /// How long after the start of its last successful renewal a holder still counts as leading.
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }

    /// How long the controllers may take to stop after the lease was lost: the holder is then
    /// done at 5/6 of the duration after its last renewal began, before any candidate (at the
    /// earliest the full duration after it) takes over.
    pub fn drain_after_loss(&self) -> Duration {
        self.lease_duration / 6
    }

    fn now(&self) -> MicroTime {
        MicroTime((self.clock)())
    }

    /// Whether the lease held by someone else has expired, by this replica's observation of its
    /// record: unchanged for the lease duration since this replica first saw it.
    async fn expired(&self, lease: &Lease, duration: Duration) -> bool {
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let mut observed = self.observed.lock().await;
        match observed.as_ref() {
            Some((seen, at)) if *seen == version => at.elapsed() >= duration,
            _ => {
                *observed = Some((version, Instant::now()));
                false
            }
        }
    }

    /// One attempt: `Ok(true)` when this replica holds the lease afterwards.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let seconds = self.lease_duration.as_secs().max(1) as i32;
        match self.api.get_opt(&self.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(self.now()),
                        renew_time: Some(self.now()),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let holder = spec.holder_identity.clone().unwrap_or_default();
                let mine = holder == self.identity;
                if !mine && !holder.is_empty() {
                    // the holder's own duration: it stops leading by that, not by ours
                    let duration =
                        Duration::from_secs(spec.lease_duration_seconds.unwrap_or(seconds).max(1) as u64);
                    if !self.expired(&lease, duration).await {
                        return Ok(false);
                    }
                }
                let mut new = spec.clone();
                new.holder_identity = Some(self.identity.clone());
                new.lease_duration_seconds = Some(seconds);
                new.renew_time = Some(self.now());
                if !mine {
                    new.acquire_time = Some(self.now());
                    new.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                lease.spec = Some(new);
                match self.api.replace(&self.name, &PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Waits until the lease is held (or `stop`: `None`); then renews it in the background until
    /// [`Leadership::step_down`].
    pub async fn lead(&self, stop: CancellationToken) -> Option<Leadership> {
        let mut won_at;
        loop {
            won_at = Instant::now();
            match self.try_acquire().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "reading the leader lease failed"),
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(self.retry_period()) => {}
            }
        }
        *self.observed.lock().await = None;
        tracing::info!(identity = %self.identity, lease = %self.name, "became the leader");
        let (controllers, lost, done) =
            (stop.child_token(), CancellationToken::new(), CancellationToken::new());
        let renewer =
            tokio::spawn(self.clone().renew(won_at, controllers.clone(), lost.clone(), done.clone()));
        Some(Leadership { stop: controllers, lost, renewer, done, election: self.clone() })
    }

    /// Renews until `done`; on a loss cancels `lost` and `controllers`.
    async fn renew(
        self,
        mut renewed_at: Instant,
        controllers: CancellationToken,
        lost: CancellationToken,
        done: CancellationToken,
    ) {
        let mut attempted = renewed_at;
        loop {
            let deadline = renewed_at + self.renew_deadline();
            tokio::select! {
                _ = done.cancelled() => return,
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::error!(identity = %self.identity, "the leader lease could not be renewed in time: stopping the controllers");
                    break;
                }
                _ = tokio::time::sleep_until(attempted + self.retry_period()) => {}
            }
            attempted = Instant::now();
            match tokio::time::timeout_at(deadline, self.try_acquire()).await {
                Ok(Ok(true)) => renewed_at = attempted,
                Ok(Ok(false)) => {
                    tracing::error!(identity = %self.identity, "another replica holds the lease: stopping the controllers");
                    break;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "renewing the leader lease failed"),
                Err(_) => {} // the deadline: reported at the top of the loop
            }
        }
        lost.cancel();
        controllers.cancel();
        done.cancelled().await;
    }

    /// Gives the lease up (so a standby takes over without waiting for it to expire).
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await
            && lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(self.identity.as_str())
        {
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
                spec.renew_time = None;
            }
            let _ = self.api.replace(&self.name, &PostParams::default(), &lease).await;
        }
    }
}
