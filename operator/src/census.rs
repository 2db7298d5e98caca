//! `chainwatch_operator_objects{kind,ready}`: how many objects of each kind are Ready, not Ready,
//! or not reconciled for their current generation — counted from the shared caches every few
//! seconds while this replica leads (a per-object gauge would be unbounded).

use std::time::Duration;

use chainwatch_crds::common::Condition;
use chainwatch_platform::cache::{Cache, Cached};
use tokio_util::sync::CancellationToken;

use crate::conditions;
use crate::context::Ctx;

/// Counts by what `Ready` says of the current generation: [true, false, unknown].
pub fn tally<'a>(objects: impl Iterator<Item = (Option<i64>, &'a [Condition])>) -> [usize; 3] {
    let mut counts = [0; 3];
    for (generation, conditions) in objects {
        let i = match conditions::ready(conditions) {
            Some(c) if c.observed_generation.is_some() && c.observed_generation == generation => {
                if c.status == "True" { 0 } else { 1 }
            }
            _ => 2,
        };
        counts[i] += 1;
    }
    counts
}

/// The tally of one cache.
fn count<K: Cached>(cache: &Cache<K>, conditions: impl Fn(&K) -> Option<&Vec<Condition>>) -> [usize; 3] {
    let objects = cache.store().state();
    tally(
        objects
            .iter()
            .map(|o| (o.meta().generation, conditions(o.as_ref()).map_or(&[][..], |c| c.as_slice()))),
    )
}

/// Sets the gauge every `every` until `stop`.
pub async fn run(ctx: Ctx, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (c, m) = (&ctx.caches, &ctx.metrics);
        m.objects("Network", count(&c.networks, |o| o.status.as_ref().map(|s| &s.conditions)));
        m.objects("Monitor", count(&c.monitors, |o| o.status.as_ref().map(|s| &s.conditions)));
        m.objects("Trigger", count(&c.triggers, |o| o.status.as_ref().map(|s| &s.conditions)));
        m.objects("Tenant", count(&c.tenants, |o| o.status.as_ref().map(|s| &s.conditions)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(status: &str, generation: Option<i64>) -> Condition {
        serde_json::from_value(
            serde_json::json!({"type": "Ready", "status": status, "reason": "r", "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": generation}),
        )
        .unwrap()
    }

    #[test]
    fn only_a_verdict_on_the_current_generation_counts() {
        let ok = [ready("True", Some(2))];
        let bad = [ready("False", Some(2))];
        let stale = [ready("True", Some(1))];
        let objects: Vec<(Option<i64>, &[Condition])> =
            vec![(Some(2), &ok), (Some(2), &bad), (Some(2), &stale), (Some(1), &[]), (Some(2), &ok)];
        assert_eq!(tally(objects.into_iter()), [2, 1, 2]);
    }
}
