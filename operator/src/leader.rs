//! Leader election with a coordination.k8s.io/v1 Lease, so that two operator replicas are safe:
//! only the holder runs the controllers. The holder renews every third of the lease duration; a
//! replica takes over a lease whose renewal is older than its duration. Every write carries the
//! resourceVersion it read, so two replicas cannot both win. A holder that cannot renew before its
//! lease expires stops its controllers; on shutdown it releases the lease so a standby takes over at
//! once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio_util::sync::CancellationToken;

/// A contender for the lease.
#[derive(Clone)]
pub struct LeaderElection {
    pub api: Api<Lease>,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
}

fn now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

impl LeaderElection {
    fn renew_every(&self) -> Duration {
        self.lease_duration / 3
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
                        acquire_time: Some(MicroTime(now())),
                        renew_time: Some(MicroTime(now())),
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
                let duration =
                    Duration::from_secs(spec.lease_duration_seconds.unwrap_or(seconds).max(1) as u64);
                let expired = match &spec.renew_time {
                    Some(MicroTime(t)) => now().duration_since(*t).unsigned_abs() > duration && now() > *t,
                    None => true,
                };
                let mine = holder == self.identity;
                if !mine && !holder.is_empty() && !expired {
                    return Ok(false);
                }
                let mut new = spec.clone();
                new.holder_identity = Some(self.identity.clone());
                new.lease_duration_seconds = Some(seconds);
                new.renew_time = Some(MicroTime(now()));
                if !mine {
                    new.acquire_time = Some(MicroTime(now()));
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

    /// Waits until the lease is held (or `stop`); then renews it in the background. The returned
    /// token is cancelled when the lease is lost or `stop` is cancelled; the caller then drains
    /// its controllers and [`release`](Self::release)s the lease, so the two never overlap.
    pub async fn lead(
        &self,
        stop: CancellationToken,
    ) -> Option<(CancellationToken, tokio::task::JoinHandle<()>)> {
        loop {
            match self.try_acquire().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "reading the leader lease failed"),
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(self.renew_every()) => {}
            }
        }
        tracing::info!(identity = %self.identity, lease = %self.name, "became the leader");
        let leading = CancellationToken::new();
        let me = self.clone();
        let lost = leading.clone();
        let task = tokio::spawn(async move {
            let mut last_renewal = std::time::Instant::now();
            loop {
                tokio::select! {
                    _ = stop.cancelled() => {
                        lost.cancel();
                        return;
                    }
                    _ = tokio::time::sleep(me.renew_every()) => {}
                }
                match me.try_acquire().await {
                    Ok(true) => last_renewal = std::time::Instant::now(),
                    Ok(false) => {
                        tracing::error!(identity = %me.identity, "another replica holds the lease: stopping the controllers");
                        lost.cancel();
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "renewing the leader lease failed");
                        if last_renewal.elapsed() >= me.lease_duration {
                            tracing::error!(
                                "the leader lease expired without renewal: stopping the controllers"
                            );
                            lost.cancel();
                            return;
                        }
                    }
                }
            }
        });
        Some((leading, task))
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
