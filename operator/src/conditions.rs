//! Conditions: admission's [`Check`]s merged into the previous conditions so that
//! `lastTransitionTime` only changes when the status does, written with one status apply, and
//! announced as events on transitions.

use chainwatch_crds::common::{Condition, Time};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde::de::DeserializeOwned;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::events::Level;
use crate::labels::MANAGER;
pub use chainwatch_core::config::Check;

pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// The conditions to write: `desired`, keeping the transition time of unchanged statuses.
pub fn merge(previous: &[Condition], desired: &[Check], generation: Option<i64>) -> Vec<Condition> {
    desired
        .iter()
        .map(|d| {
            let status = if d.ok { "True" } else { "False" }.to_string();
            let since = previous
                .iter()
                .find(|c| c.type_ == d.type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(now);
            Condition {
                type_: d.type_.clone(),
                status,
                reason: d.reason.clone(),
                message: d.message.clone(),
                last_transition_time: since,
                observed_generation: generation,
            }
        })
        .collect()
}

/// The conditions of one writer after a reconcile.
pub struct Update {
    /// The writer's conditions to apply.
    pub conditions: Vec<Condition>,
    /// Whether they say something new.
    pub changed: bool,
    /// Whether Ready was True before (None when there was no Ready).
    pub was_ready: Option<bool>,
}

/// Merges `desired` into the `current` conditions of the object (only the types in `desired`
/// are this writer's; others belong to other field managers).
pub fn update(current: &[Condition], desired: &[Check], generation: Option<i64>) -> Update {
    let desired: Vec<Check> = desired.iter().cloned().chain(kstatus(desired)).collect();
    let mine: Vec<_> =
        current.iter().filter(|c| desired.iter().any(|d| d.type_ == c.type_)).cloned().collect();
    let conditions = merge(&mine, &desired, generation);
    Update {
        changed: !same(&mine, &conditions),
        was_ready: ready(current).map(|c| c.status == "True"),
        conditions,
    }
}

/// `Reconciling` and `Stalled` as kstatus (Flux, kpt, Argo CD's kstatus mode) reads them, from a
/// writer's `Ready`: a step on the way ([`TRANSITIONAL`]) is Reconciling, any other problem
/// Stalled (it needs someone to act), Ready neither.
pub fn kstatus(desired: &[Check]) -> Vec<Check> {
    let Some(ready) = desired.iter().find(|d| d.type_ == "Ready") else { return Vec::new() };
    if ready.ok {
        return vec![
            Check::new("Reconciling", false, "Ready", ""),
            Check::new("Stalled", false, "Ready", ""),
        ];
    }
    let problem = |type_: &str| Check::new(type_, true, &ready.reason, ready.message.clone());
    if TRANSITIONAL.contains(&ready.reason.as_str()) {
        vec![problem("Reconciling"), Check::new("Stalled", false, "Reconciling", "")]
    } else {
        vec![Check::new("Reconciling", false, "Stalled", ""), problem("Stalled")]
    }
}

/// Whether two condition lists say the same (times aside).
pub fn same(a: &[Condition], b: &[Condition]) -> bool {
    let key = |c: &Condition| {
        (c.type_.clone(), c.status.clone(), c.reason.clone(), c.message.clone(), c.observed_generation)
    };
    let mut ka: Vec<_> = a.iter().map(key).collect();
    let mut kb: Vec<_> = b.iter().map(key).collect();
    ka.sort();
    kb.sort();
    ka == kb
}

/// The Ready condition of a list, if any.
pub fn ready(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == "Ready")
}

/// Server-side applies the given status fields of object `name` with the operator's field manager
/// (fields it does not name, like the ingester's conditions, keep their owners).
pub async fn apply_status<K>(api: &Api<K>, name: &str, status: serde_json::Value) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch =
        serde_json::json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    api.patch_status(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map(|_| ())
        .map_err(|source| Error::Status { name: name.to_string(), source })
}

/// `Ready=False` reasons that are a step on the way, not a problem: announced as Normal events.
pub const TRANSITIONAL: &[&str] = &[WAITING_FOR_INGESTER, REFERENCE_PENDING];

/// The Network's children are applied; its ingester has not reported yet.
pub const WAITING_FOR_INGESTER: &str = "WaitingForIngester";

/// A referenced Secret or ConfigMap cannot be read yet (its namespace is not listed yet).
pub const REFERENCE_PENDING: &str = "ReferencePending";

/// Publishes an event when readiness flips: Normal with `ok_reason` (or a transitional reason),
/// else Warning with the reason of the failing condition.
pub async fn announce<K>(ctx: &Context, obj: &K, was_ready: Option<bool>, ready: &Check, ok_reason: &str)
where
    K: Resource<DynamicType = ()>,
{
    if was_ready == Some(ready.ok) {
        return;
    }
    let (level, reason) = if ready.ok {
        (Level::Normal, ok_reason)
    } else if TRANSITIONAL.contains(&ready.reason.as_str()) {
        (Level::Normal, ready.reason.as_str())
    } else {
        (Level::Warning, ready.reason.as_str())
    };
    ctx.events.publish(obj, level, reason, &ready.message).await;
}

/// How long a new object's missing reference may take to appear (a directory applied in any
/// order) before it is announced as a Warning. The condition says it at once.
pub const REFERENCE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// `Ready=False` reasons that name something not created yet.
pub const MISSING_REFERENCE: &[&str] = &[
    "NetworkNotFound",
    "TriggerNotFound",
    "SecretNotFound",
    "SecretKeyNotFound",
    "ConfigMapNotFound",
    "NoTenant",
];

fn held_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    let m = obj.meta();
    format!(
        "{}/{}/{}",
        K::kind(&()),
        m.namespace.as_deref().unwrap_or_default(),
        m.name.as_deref().unwrap_or_default()
    )
}

/// [`announce`], except that a missing reference of an object younger than [`REFERENCE_GRACE`]
/// is held: no Warning if it resolves in time, else one when the grace ends
/// ([`release_held`]). Returns how long until a held Warning is due (reconcile again then).
pub async fn announce_references<K>(
    ctx: &Context,
    obj: &K,
    was_ready: Option<bool>,
    ready: &Check,
    ok_reason: &str,
) -> Option<std::time::Duration>
where
    K: Resource<DynamicType = ()>,
{
    let key = held_key(obj);
    if !ready.ok && MISSING_REFERENCE.contains(&ready.reason.as_str()) {
        let created = obj.meta().creation_timestamp.as_ref().map(|t| t.0);
        let age = created.and_then(|c| {
            let ms = k8s_openapi::jiff::Timestamp::now().duration_since(c).as_millis();
            u64::try_from(ms).ok().map(std::time::Duration::from_millis)
        });
        if let Some(left) = age.and_then(|a| REFERENCE_GRACE.checked_sub(a)) {
            let due = std::time::Instant::now() + left;
            ctx.events.held.hold(key, crate::events::HeldWarning { reason: ready.reason.clone(), due });
            return Some(left);
        }
    }
    ctx.events.held.drop_held(&key);
    announce(ctx, obj, was_ready, ready, ok_reason).await;
    None
}

/// A held Warning: published once its grace is over and the same problem stays; dropped when
/// the object is Ready or has another problem (announced on its own). Returns how long until it
/// is due.
pub async fn release_held<K>(ctx: &Context, obj: &K, ready: &Check) -> Option<std::time::Duration>
where
    K: Resource<DynamicType = ()>,
{
    let key = held_key(obj);
    let held = ctx.events.held.get(&key)?;
    if ready.ok || ready.reason != held.reason {
        ctx.events.held.drop_held(&key);
        return None;
    }
    let now = std::time::Instant::now();
    if now < held.due {
        return Some(held.due - now);
    }
    ctx.events.held.drop_held(&key);
    ctx.events.publish(obj, Level::Warning, &ready.reason, &ready.message).await;
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_changes_only_with_the_status() {
        let first = merge(&[], &[Check::new("Ready", false, "Compiling", "x")], Some(1));
        let again = merge(&first, &[Check::new("Ready", false, "OtherReason", "y")], Some(2));
        assert_eq!(first[0].last_transition_time, again[0].last_transition_time);
        std::thread::sleep(std::time::Duration::from_millis(5));
        let flipped = merge(&again, &[Check::new("Ready", true, "Admitted", "ok")], Some(2));
        assert_ne!(flipped[0].last_transition_time, again[0].last_transition_time);
        assert!(!same(&again, &flipped));
        assert!(same(&flipped, &merge(&flipped, &[Check::new("Ready", true, "Admitted", "ok")], Some(2))));
    }

    #[test]
    fn kstatus_reads_a_step_as_reconciling_and_a_problem_as_stalled() {
        let of = |ready: Check| {
            update(&[], &[ready], Some(3))
                .conditions
                .into_iter()
                .filter(|c| c.type_ != "Ready")
                .map(|c| (c.type_, c.status, c.reason))
                .collect::<Vec<_>>()
        };
        let c = |t: &str, s: &str, r: &str| (t.to_string(), s.to_string(), r.to_string());
        assert_eq!(
            of(Check::new("Ready", true, "Admitted", "ok")),
            [c("Reconciling", "False", "Ready"), c("Stalled", "False", "Ready")]
        );
        assert_eq!(
            of(Check::new("Ready", false, WAITING_FOR_INGESTER, "applied")),
            [c("Reconciling", "True", WAITING_FOR_INGESTER), c("Stalled", "False", "Reconciling")]
        );
        assert_eq!(
            of(Check::new("Ready", false, "TriggerNotFound", "spec.triggers[0]: ...")),
            [c("Reconciling", "False", "Stalled"), c("Stalled", "True", "TriggerNotFound")]
        );
        // every condition carries the generation it was computed for
        let all = update(&[], &[Check::new("Ready", true, "Admitted", "ok")], Some(3)).conditions;
        assert!(all.iter().all(|c| c.observed_generation == Some(3)));
        // a writer without Ready (the ingester's, say) gets neither
        assert!(kstatus(&[Check::new("TopicReady", true, "TopicReady", "")]).is_empty());
    }
}
