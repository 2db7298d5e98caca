//! What the ingester reports about its network, and the writer that patches it into the Network's
//! status at a bounded rate (server-side apply with its own field manager, so the operator's
//! conditions are left alone).

use std::time::{Duration, SystemTime};

use chainwatch_crds::Network;
use chainwatch_crds::network::conditions::{BROKER_REACHABLE, PROGRESSING, RPC_REACHABLE};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Field manager of the ingester's status writes.
pub const FIELD_MANAGER: &str = "chainwatch-ingester";

/// A condition's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    pub ok: Option<bool>,
    pub reason: String,
    pub message: String,
}

impl Health {
    pub fn ok(reason: &str, message: &str) -> Self {
        Self {
            ok: Some(true),
            reason: reason.into(),
            message: chainwatch_platform::redact::scrub(message, []),
        }
    }

    pub fn failing(reason: &str, message: &str) -> Self {
        // an endpoint is named by scheme://host only: its path or query may hold a key
        let message = chainwatch_platform::redact::scrub(message, []);
        Self { ok: Some(false), reason: reason.into(), message: message.chars().take(512).collect() }
    }
}

/// The ingester's view of its network.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IngestStatus {
    pub head: Option<u64>,
    pub target: Option<u64>,
    pub last_published: Option<u64>,
    pub last_published_at: Option<SystemTime>,
    pub rpc: Health,
    pub progressing: Health,
    /// Whether the broker takes the blocks (unknown in `chainwatch dev`).
    pub broker: Health,
    /// Ranges skipped by maxPastBlocks, newest last.
    pub skipped: Vec<(u64, u64)>,
    /// (first replaced block, depth, when).
    pub last_reorg: Option<(u64, u64, SystemTime)>,
}

impl IngestStatus {
    pub fn lag(&self) -> Option<u64> {
        Some(self.head?.saturating_sub(self.last_published?))
    }
}

/// A time as RFC 3339 (in messages).
pub fn rfc3339(t: SystemTime) -> String {
    time(t).0.to_string()
}

fn time(t: SystemTime) -> Time {
    Time(k8s_openapi::jiff::Timestamp::try_from(t).unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH))
}

fn condition(kind: &str, h: &Health, since: SystemTime) -> serde_json::Value {
    json!({
        "type": kind,
        "status": match h.ok { Some(true) => "True", Some(false) => "False", None => "Unknown" },
        "reason": if h.reason.is_empty() { "Unknown" } else { &h.reason },
        "message": h.message,
        "lastTransitionTime": time(since),
    })
}

/// The status patch (only the fields the ingester owns).
pub fn status_patch(
    s: &IngestStatus,
    rpc_since: SystemTime,
    progress_since: SystemTime,
    broker_since: SystemTime,
) -> serde_json::Value {
    let mut conditions = vec![
        condition(RPC_REACHABLE, &s.rpc, rpc_since),
        condition(PROGRESSING, &s.progressing, progress_since),
    ];
    if s.broker.ok.is_some() {
        conditions.push(condition(BROKER_REACHABLE, &s.broker, broker_since));
    }
    let mut status = json!({"conditions": conditions});
    if let Some(h) = s.head {
        status["head"] = json!(h);
    }
    if let Some(b) = s.last_published {
        status["lastBlock"] = json!(b);
    }
    if let Some(l) = s.lag() {
        status["lag"] = json!(l);
    }
    if let Some(t) = s.last_published_at {
        status["lastBlockTime"] = json!(time(t));
    }
    if !s.skipped.is_empty() {
        status["skippedRanges"] =
            json!(s.skipped.iter().map(|(f, t)| json!({"from": f, "to": t})).collect::<Vec<_>>());
    }
    if let Some((from, depth, at)) = s.last_reorg {
        status["lastReorg"] = json!({"fromBlock": from, "depth": depth, "time": time(at)});
    }
    json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "status": status})
}

/// Patches the Network's status from the watch channel: at most every `interval`, and at once when
/// a condition changes.
pub async fn write_status(
    api: Api<Network>,
    name: String,
    mut rx: watch::Receiver<IngestStatus>,
    interval: Duration,
    stop: CancellationToken,
) {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut last_sent: Option<IngestStatus> = None;
    let mut rpc_since = SystemTime::now();
    let mut progress_since = SystemTime::now();
    let mut broker_since = SystemTime::now();
    loop {
        let current = rx.borrow_and_update().clone();
        let conditions_changed = last_sent.as_ref().is_none_or(|l| {
            l.rpc.ok != current.rpc.ok
                || l.progressing.ok != current.progressing.ok
                || l.broker.ok != current.broker.ok
                || l.rpc.reason != current.rpc.reason
                || l.progressing.reason != current.progressing.reason
        });
        if last_sent.as_ref() != Some(&current) {
            if let Some(l) = &last_sent {
                if l.rpc.ok != current.rpc.ok {
                    rpc_since = SystemTime::now();
                }
                if l.progressing.ok != current.progressing.ok {
                    progress_since = SystemTime::now();
                }
                if l.broker.ok != current.broker.ok {
                    broker_since = SystemTime::now();
                }
            }
            match api
                .patch_status(
                    &name,
                    &params,
                    &Patch::Apply(status_patch(&current, rpc_since, progress_since, broker_since)),
                )
                .await
            {
                Ok(_) => last_sent = Some(current),
                Err(e) => tracing::warn!(network = %name, error = %e, "status patch failed"),
            }
        }
        let wait = if conditions_changed { Duration::ZERO } else { interval };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
    }
}
