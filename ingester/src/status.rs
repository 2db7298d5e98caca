//! What the ingester reports about its network, and the writer that patches it into the Network's
//! status at a bounded rate (server-side apply with its own field manager, so the operator's
//! conditions are left alone).

use std::time::{Duration, SystemTime};

use chainwatch_crds::Network;
use chainwatch_crds::network::conditions::{
    BROKER_REACHABLE, ENDPOINTS_VERIFIED, PROGRESSING, RPC_REACHABLE,
};
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

impl Health {
    /// `EndpointsVerified` from what the RPC pool knows (unknown until an endpoint was asked).
    pub fn of_endpoints(r: &crate::rpc::IdentityReport) -> Self {
        let expected = r.expected.as_deref().unwrap_or("?");
        let counted = format!("{} of {} endpoints verified", r.verified.len(), r.enabled);
        if !r.wrong.is_empty() {
            let which: Vec<String> =
                r.wrong.iter().map(|(label, found)| format!("{label} serves {} {found}", r.what)).collect();
            return Self::failing(
                "WrongChain",
                &format!(
                    "{}, the Network says {expected}: out of rotation and asked again every minute; {counted}",
                    which.join(", ")
                ),
            );
        }
        if r.verified.is_empty() {
            return Self::default();
        }
        Self::ok("Verified", &format!("{counted} to serve {} {expected}", r.what))
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
    /// Whether every endpoint serves the Network's chain.
    pub endpoints: Health,
    /// Ranges skipped by maxPastBlocks, newest last.
    pub skipped: Vec<(u64, u64)>,
    /// (first replaced block, depth, when).
    pub last_reorg: Option<(u64, u64, SystemTime)>,
}

impl IngestStatus {
    pub fn lag(&self) -> Option<u64> {
        Some(self.head?.saturating_sub(self.last_published?))
    }

    /// The conditions the ingester owns; one it knows nothing about yet (broker in `chainwatch
    /// dev`, endpoints before the first answer) is left out rather than written Unknown.
    pub fn conditions(&self) -> Vec<(&'static str, &Health)> {
        let mut out = vec![(RPC_REACHABLE, &self.rpc), (PROGRESSING, &self.progressing)];
        for (kind, h) in [(BROKER_REACHABLE, &self.broker), (ENDPOINTS_VERIFIED, &self.endpoints)] {
            if h.ok.is_some() {
                out.push((kind, h));
            }
        }
        out
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

/// The status patch (only the fields the ingester owns); `since` gives each condition's last
/// transition.
pub fn status_patch(s: &IngestStatus, since: &Transitions) -> serde_json::Value {
    let conditions: Vec<_> =
        s.conditions().into_iter().map(|(kind, h)| condition(kind, h, since.of(kind))).collect();
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

/// When each condition last changed status.
#[derive(Clone, Debug, Default)]
pub struct Transitions(std::collections::HashMap<&'static str, SystemTime>);

impl Transitions {
    fn of(&self, kind: &str) -> SystemTime {
        self.0.get(kind).copied().unwrap_or_else(SystemTime::now)
    }

    /// Records the transitions from `before` to `now`; `true` when a condition's status or
    /// reason changed (worth writing at once).
    fn update(&mut self, before: Option<&IngestStatus>, now: &IngestStatus) -> bool {
        let at = SystemTime::now();
        let mut changed = false;
        for (kind, h) in now.conditions() {
            let old = before
                .and_then(|b| b.conditions().into_iter().find(|(k, _)| *k == kind).map(|(_, h)| h.clone()));
            match old {
                Some(o) if o.ok == h.ok => changed |= o.reason != h.reason,
                _ => {
                    self.0.insert(kind, at);
                    changed = true;
                }
            }
        }
        changed
    }
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
    let mut since = Transitions::default();
    loop {
        let current = rx.borrow_and_update().clone();
        let mut conditions_changed = false;
        if last_sent.as_ref() != Some(&current) {
            let mut next = since.clone();
            conditions_changed = next.update(last_sent.as_ref(), &current);
            match api.patch_status(&name, &params, &Patch::Apply(status_patch(&current, &next))).await {
                Ok(_) => {
                    last_sent = Some(current);
                    since = next;
                }
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
