//! Status written by the notify stage: on Monitors the match and retraction counts and the newest
//! match, on Triggers delivery and failure counts, the newest delivery and error, and the
//! `Delivering` condition.
//!
//! Counts are accumulated in memory and flushed at most every `interval`. Several workers add to
//! the same totals, so each flush reads the object, adds its delta and writes with the
//! resourceVersion it read (a conflict re-reads). The `Delivering` condition is server-side applied
//! under the worker's own field manager, so the operator's conditions are untouched.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chainwatch_core::MonitorMatch;
use chainwatch_core::monitor::MonitorKey;
use chainwatch_crds::{Monitor, Trigger};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::notify::counts::DeliveredCounts;

/// Field manager of the worker's status writes.
pub const FIELD_MANAGER: &str = "chainwatch-worker";

/// Where the notify stage reports.
pub trait StatusSink: Send + Sync + 'static {
    fn matched(&self, m: &MonitorMatch);
    fn delivered(&self, namespace: &str, trigger: &str);
    /// A match of the monitor was on a block a reorg replaced (its notifications retracted or
    /// withheld).
    fn retracted(&self, monitor: &MonitorKey);
    /// A delivery was dead-lettered: `reason` is the condition reason (`ScriptTimedOut`, …).
    fn failed(&self, namespace: &str, trigger: &str, reason: &str, error: &str);
    /// A trigger-condition script of the monitor ran (`None`) or failed.
    fn condition_ran(&self, monitor: &MonitorKey, error: Option<&crate::script::ScriptError>);
    /// `count` notifications to the trigger wait for a retry (`error`: the newest failure, when
    /// one more came).
    fn pending(&self, namespace: &str, trigger: &str, count: u64, error: Option<&str>);
}

/// Reports nowhere (`chainwatch dev` prints instead).
pub struct NoStatus;

impl StatusSink for NoStatus {
    fn matched(&self, _: &MonitorMatch) {}
    fn delivered(&self, _: &str, _: &str) {}
    fn retracted(&self, _: &MonitorKey) {}
    fn failed(&self, _: &str, _: &str, _: &str, _: &str) {}
    fn condition_ran(&self, _: &MonitorKey, _: Option<&crate::script::ScriptError>) {}
    fn pending(&self, _: &str, _: &str, _: u64, _: Option<&str>) {}
}

#[derive(Default, Clone)]
struct MonitorDelta {
    matches: u64,
    retracted: u64,
    last: Option<(u64, String, u64, String)>,
}

#[derive(Default, Clone)]
struct TriggerDelta {
    delivered: u64,
    failed: u64,
    last_delivery_ms: Option<u64>,
    last_error: Option<(String, String, u64)>,
    /// Notifications waiting for a retry now, and the newest error of one.
    pending: Option<u64>,
    pending_error: Option<String>,
}

#[derive(Default)]
struct Pending {
    monitors: HashMap<MonitorKey, MonitorDelta>,
    triggers: HashMap<(String, String), TriggerDelta>,
    /// Delivering condition (status, reason) last applied per trigger.
    delivering: HashMap<(String, String), (bool, String)>,
    /// The newest outcome of each monitor's trigger-condition scripts (reason, message), not yet
    /// written, and the last one written.
    scripts: HashMap<MonitorKey, Option<(String, String)>>,
    scripts_written: HashMap<MonitorKey, Option<(String, String)>>,
}

/// Writes status to the API server.
pub struct KubeStatus {
    client: Client,
    pending: Mutex<Pending>,
}

fn time(ms: u64) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_millisecond(ms as i64)
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

impl KubeStatus {
    pub fn new(client: Client) -> Self {
        Self { client, pending: Mutex::default() }
    }

    /// Brings each Trigger's `deliveredCount` up to the distinct deliveries the delivered-key
    /// log holds since the Trigger was created — what a crashed worker delivered but had not
    /// written yet. Run once the log is read and before this worker delivers anything, so that
    /// what it counts from then on (its own deliveries) is not in `counts` already. Returns how
    /// many Triggers were behind.
    pub async fn recount(&self, counts: &DeliveredCounts) -> usize {
        use futures::StreamExt;
        let triggers = counts.triggers();
        let total = triggers.len();
        let behind = futures::stream::iter(triggers)
            .map(|(ns, name)| async move { self.recount_one(counts, &ns, &name).await })
            .buffer_unordered(8)
            .filter(|behind| std::future::ready(*behind))
            .count()
            .await;
        tracing::info!(triggers = total, behind, "delivered counts checked against the delivered-key log");
        behind
    }

    async fn recount_one(&self, counts: &DeliveredCounts, ns: &str, name: &str) -> bool {
        let api: Api<Trigger> = Api::namespaced(self.client.clone(), ns);
        for _ in 0..5 {
            let Ok(Some(current)) = api.get_opt(name).await else { return false };
            let created_ms = current
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(0, |t| t.0.as_millisecond().max(0) as u64);
            let logged = counts.since(ns, name, created_ms);
            if current.status.as_ref().and_then(|s| s.delivered_count).unwrap_or(0) >= logged {
                return false;
            }
            let patch = json!({"metadata": {"resourceVersion": current.metadata.resource_version},
                "status": {"deliveredCount": logged}});
            match api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => return true,
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => {
                    tracing::warn!(trigger = %format!("{ns}/{name}"), error = %e, "recounting deliveries failed");
                    return false;
                }
            }
        }
        false
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Flushes every `interval` until `stop`, then once more.
    pub async fn run(&self, interval: Duration, stop: CancellationToken) {
        loop {
            let stopped = tokio::select! {
                _ = stop.cancelled() => true,
                _ = tokio::time::sleep(interval) => false,
            };
            self.flush().await;
            if stopped {
                return;
            }
        }
    }

    /// Writes what accumulated.
    pub async fn flush(&self) {
        let (monitors, triggers) = {
            let mut p = self.lock();
            (std::mem::take(&mut p.monitors), std::mem::take(&mut p.triggers))
        };
        for (key, delta) in monitors {
            if let Err(e) = self.flush_monitor(&key, &delta).await {
                tracing::warn!(monitor = %key, error = %e, "writing monitor status failed; keeping the counts for the next flush");
                let mut p = self.lock();
                let d = p.monitors.entry(key).or_default();
                d.matches += delta.matches;
                d.retracted += delta.retracted;
                if d.last.is_none() {
                    d.last = delta.last;
                }
            }
        }
        let scripts: Vec<(MonitorKey, Option<(String, String)>)> = {
            let mut p = self.lock();
            let pending = std::mem::take(&mut p.scripts);
            pending.into_iter().filter(|(k, v)| p.scripts_written.get(k) != Some(v)).collect()
        };
        for (key, outcome) in scripts {
            match self.write_scripts_condition(&key, outcome.as_ref()).await {
                Ok(()) => {
                    self.lock().scripts_written.insert(key, outcome);
                }
                Err(e) => {
                    tracing::warn!(monitor = %key, error = %e, "writing the TriggerConditions condition failed")
                }
            }
        }
        for ((ns, name), delta) in triggers {
            if let Err(e) = self.flush_trigger(&ns, &name, &delta).await {
                tracing::warn!(trigger = %format!("{ns}/{name}"), error = %e, "writing trigger status failed; keeping the counts for the next flush");
                let mut p = self.lock();
                let d = p.triggers.entry((ns, name)).or_default();
                d.delivered += delta.delivered;
                d.failed += delta.failed;
                d.last_delivery_ms = d.last_delivery_ms.max(delta.last_delivery_ms);
                if d.last_error.is_none() {
                    d.last_error = delta.last_error;
                }
                if d.pending.is_none() {
                    d.pending = delta.pending;
                }
                if d.pending_error.is_none() {
                    d.pending_error = delta.pending_error;
                }
            }
        }
    }

    /// `TriggerConditions` on the Monitor: True while its scripts run, False with the script's
    /// reason when one misbehaves (a timeout, a crash, output that is not true/false).
    async fn write_scripts_condition(
        &self,
        key: &MonitorKey,
        failure: Option<&(String, String)>,
    ) -> Result<(), kube::Error> {
        let api: Api<Monitor> = Api::namespaced(self.client.clone(), &key.namespace);
        let (status, reason, message) = match failure {
            None => ("True", "ScriptsRan", "the trigger-condition scripts ran".to_string()),
            Some((reason, message)) => ("False", reason.as_str(), message.chars().take(512).collect()),
        };
        let patch = json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Monitor", "status": {"conditions": [{
            "type": "TriggerConditions", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": time(chainwatch_platform::codec::now_ms()),
        }]}});
        api.patch_status(&key.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await?;
        Ok(())
    }

    async fn flush_monitor(&self, key: &MonitorKey, delta: &MonitorDelta) -> Result<(), kube::Error> {
        let api: Api<Monitor> = Api::namespaced(self.client.clone(), &key.namespace);
        for _ in 0..5 {
            let Some(current) = api.get_opt(&key.name).await? else { return Ok(()) };
            let now = current.status.as_ref();
            let count = now.and_then(|s| s.match_count).unwrap_or(0) + delta.matches;
            let mut status = json!({"matchCount": count});
            if delta.retracted > 0 {
                let retracted = now.and_then(|s| s.retracted_count).unwrap_or(0) + delta.retracted;
                status["retractedCount"] = json!(retracted);
            }
            if let Some((at, network, block, tx)) = &delta.last {
                status["lastMatchTime"] = json!(time(*at));
                status["lastMatch"] = json!({"network": network, "block": block, "transaction": tx});
            }
            let patch =
                json!({"metadata": {"resourceVersion": current.metadata.resource_version}, "status": status});
            match api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(e),
            }
        }
        Err(kube::Error::Api(
            kube::core::Status::failure("too many conflicts", "Conflict").with_code(409).boxed(),
        ))
    }

    async fn flush_trigger(&self, ns: &str, name: &str, delta: &TriggerDelta) -> Result<(), kube::Error> {
        let api: Api<Trigger> = Api::namespaced(self.client.clone(), ns);
        for _ in 0..5 {
            let Some(current) = api.get_opt(name).await? else { return Ok(()) };
            let s = current.status.clone().unwrap_or_default();
            let mut status = json!({
                "deliveredCount": s.delivered_count.unwrap_or(0) + delta.delivered,
                "failureCount": s.failure_count.unwrap_or(0) + delta.failed,
            });
            if let Some(ms) = delta.last_delivery_ms {
                status["lastDeliveryTime"] = json!(time(ms));
            }
            if let Some((_, err, ms)) = &delta.last_error {
                status["lastError"] = json!(err.chars().take(1024).collect::<String>());
                status["lastErrorTime"] = json!(time(*ms));
            }
            if let Some(n) = delta.pending {
                status["pendingCount"] = json!(n);
            }
            let patch =
                json!({"metadata": {"resourceVersion": current.metadata.resource_version}, "status": status});
            match api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => break,
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(e),
            }
        }
        // the Delivering condition, on transitions only
        if let Some((ok, reason, message)) = delivering(delta) {
            let key = (ns.to_string(), name.to_string());
            let state = (ok, reason.to_string());
            if self.lock().delivering.get(&key) != Some(&state) {
                let patch = json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "status": {"conditions": [{
                    "type": "Delivering", "status": if ok { "True" } else { "False" }, "reason": reason, "message": message,
                    "lastTransitionTime": time(chainwatch_platform::codec::now_ms()),
                }]}});
                api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
                    .await?;
                self.lock().delivering.insert(key, state);
            }
        }
        Ok(())
    }
}

/// The `Delivering` condition a trigger's news implies (status, reason, message), if any:
/// False `Retrying` while notifications wait for a retry, else what the newest outcome was.
fn delivering(delta: &TriggerDelta) -> Option<(bool, &str, String)> {
    if let Some(n) = delta.pending.filter(|n| *n > 0) {
        let newest =
            delta.pending_error.as_deref().map(|e| format!("; newest error: {e}")).unwrap_or_default();
        let message = format!("{n} notification(s) waiting for a retry{newest}");
        return Some((false, "Retrying", message.chars().take(512).collect()));
    }
    let failed = || {
        delta
            .last_error
            .as_ref()
            .map(|(reason, e, _)| (false, reason.as_str(), e.chars().take(512).collect()))
            .unwrap_or((false, "DeliveryFailed", String::new()))
    };
    let ok = || (true, "Delivered", "the newest notification was delivered".to_string());
    match (delta.last_delivery_ms, &delta.last_error) {
        (Some(d), Some((_, _, e))) if d >= *e => Some(ok()),
        (Some(_), Some(_)) | (None, Some(_)) => Some(failed()),
        (Some(_), None) => Some(ok()),
        (None, None) if delta.pending == Some(0) => {
            Some((true, "Delivered", "no notification waits for a retry".to_string()))
        }
        (None, None) => None,
    }
}

impl StatusSink for KubeStatus {
    fn matched(&self, m: &MonitorMatch) {
        let mut p = self.lock();
        let d = p.monitors.entry(m.monitor.key.clone()).or_default();
        d.matches += 1;
        let newer = d.last.as_ref().is_none_or(|(_, _, b, _)| m.block.number >= *b);
        if newer {
            d.last = Some((
                chainwatch_platform::codec::now_ms(),
                m.network.clone(),
                m.block.number,
                m.transaction_hash(),
            ));
        }
    }

    fn retracted(&self, monitor: &MonitorKey) {
        self.lock().monitors.entry(monitor.clone()).or_default().retracted += 1;
    }

    fn delivered(&self, namespace: &str, trigger: &str) {
        let mut p = self.lock();
        let d = p.triggers.entry((namespace.to_string(), trigger.to_string())).or_default();
        d.delivered += 1;
        d.last_delivery_ms = Some(chainwatch_platform::codec::now_ms());
    }

    fn failed(&self, namespace: &str, trigger: &str, reason: &str, error: &str) {
        let mut p = self.lock();
        let d = p.triggers.entry((namespace.to_string(), trigger.to_string())).or_default();
        d.failed += 1;
        d.last_error = Some((reason.to_string(), error.to_string(), chainwatch_platform::codec::now_ms()));
    }

    fn condition_ran(&self, monitor: &MonitorKey, error: Option<&crate::script::ScriptError>) {
        let outcome = error.map(|e| (e.reason().to_string(), e.to_string()));
        self.lock().scripts.insert(monitor.clone(), outcome);
    }

    fn pending(&self, namespace: &str, trigger: &str, count: u64, error: Option<&str>) {
        let mut p = self.lock();
        let d = p.triggers.entry((namespace.to_string(), trigger.to_string())).or_default();
        d.pending = Some(count);
        if let Some(e) = error {
            d.pending_error = Some(e.to_string());
        }
    }
}
