//! `chainwatch redeliver`: delivers dead-lettered notifications again, once each. A redelivery is
//! a deferred record (reason `redeliver`, due now) keyed by the notification's tenant, so the
//! worker that owns the tenant's notifications delivers it, within the tenant's limits, with the
//! same Idempotency-Key as the first attempt (the key comes from the match and the trigger). Each
//! dead letter sent again is marked in `chainwatch.redelivered`, so running the command twice
//! redelivers nothing twice; a notification that did reach its receiver meanwhile is suppressed
//! by the delivered-key log.
//!
//! It talks to Kafka, not to the API server: it is the platform team's tool (whoever may read the
//! dead-letter topic), not a tenant's. `--namespace` narrows it to one tenant's notifications.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::Context;
use chainwatch_platform::bus::kafka::KafkaArgs;
use chainwatch_platform::bus::{DEADLETTER_TOPIC, DEFERRED_TOPIC, Producer, REDELIVERED_TOPIC};
use chainwatch_platform::codec::{DeadLetterRecord, DeferredRecord, now_ms};

#[derive(Debug, clap::Args)]
pub struct RedeliverArgs {
    /// Only notifications of this namespace's monitors.
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Only notifications to this trigger.
    #[arg(long)]
    pub trigger: Option<String>,
    /// Only notifications of this monitor (`name` or `namespace/name`).
    #[arg(long)]
    pub monitor: Option<String>,
    /// Only dead letters with this reason: `retries_exhausted` (the receiver failed until the
    /// retry policy gave up), `rejected` (it refused the notification), `scripts_not_allowed`, ….
    #[arg(long)]
    pub reason: Option<String>,
    /// Only dead letters written in this last while (`90m`, `6h`, `2d`).
    #[arg(long, value_parser = chainwatch_crds::common::parse_duration)]
    pub since: Option<Duration>,
    /// Print what would be delivered again, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// Which dead letters to deliver again.
#[derive(Debug, Default)]
pub struct Selection {
    pub namespace: Option<String>,
    pub trigger: Option<String>,
    pub monitor: Option<String>,
    pub reason: Option<String>,
    /// Written at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
}

/// A dead letter and where it is on the dead-letter topic (`topic/partition@offset`).
pub struct Letter {
    pub position: String,
    pub letter: DeadLetterRecord,
}

/// What a run does.
#[derive(Default)]
pub struct Plan {
    /// To deliver again: the dead letter, and the redelivery to publish (key, record).
    pub redeliver: Vec<(Letter, String, DeferredRecord)>,
    /// Selected, and delivered again by an earlier run.
    pub already: usize,
    /// Selected, but with no notification to deliver: a block's dead letter, or one written
    /// before wire format 1.2 (without the match).
    pub without_match: usize,
}

impl Selection {
    fn takes(&self, l: &DeadLetterRecord) -> bool {
        let m = l.record.as_ref().map(|r| &r.matched.monitor.key);
        let namespace = m.map(|k| k.namespace.as_str()).or_else(|| l.monitor.as_deref()?.split('/').next());
        let reason = l.reason.split(':').next().unwrap_or_default().trim();
        self.namespace.as_deref().is_none_or(|n| namespace == Some(n))
            && self.trigger.as_deref().is_none_or(|t| l.trigger.as_deref() == Some(t))
            && self.monitor.as_deref().is_none_or(|want| {
                l.monitor.as_deref().is_some_and(|have| {
                    have == want || have.split_once('/').is_some_and(|(_, name)| name == want)
                })
            })
            && self.reason.as_deref().is_none_or(|r| reason == r)
            && self.since_ms.is_none_or(|t| l.at_ms >= t)
    }

    /// The redeliveries of the selected `letters` not in `done` (positions redelivered before).
    pub fn plan(&self, letters: Vec<Letter>, done: &HashSet<String>, now_ms: u64) -> Plan {
        let mut plan = Plan::default();
        for l in letters {
            if l.letter.stage != "notification" || !self.takes(&l.letter) {
                continue;
            }
            if done.contains(&l.position) {
                plan.already += 1;
                continue;
            }
            let Some(record) = l.letter.record.clone() else {
                plan.without_match += 1;
                continue;
            };
            let key = l.letter.tenant.clone().unwrap_or_else(|| record.matched.monitor.key.namespace.clone());
            let again = DeferredRecord {
                record,
                trigger: l.letter.trigger.clone(),
                attempts: 0,
                deferrals: 0,
                due_at_ms: now_ms,
                reason: "redeliver".into(),
                // a fresh retry window: the receiver may fail again
                first_attempt_at_ms: None,
                error: None,
            };
            plan.redeliver.push((l, key, again));
        }
        plan
    }
}

pub async fn run(args: RedeliverArgs) -> anyhow::Result<()> {
    let selection = Selection {
        namespace: args.namespace.clone(),
        trigger: args.trigger.clone(),
        monitor: args.monitor.clone(),
        reason: args.reason.clone(),
        since_ms: args.since.map(|d| now_ms().saturating_sub(d.as_millis() as u64)),
    };
    let idle = Duration::from_secs(30);
    let done: HashSet<String> = args
        .kafka
        .read_all(REDELIVERED_TOPIC, idle)
        .await
        .with_context(|| format!("reading {REDELIVERED_TOPIC}"))?
        .into_iter()
        .filter_map(|m| m.key)
        .collect();
    let mut letters = Vec::new();
    let mut unreadable = 0;
    for m in args
        .kafka
        .read_all(DEADLETTER_TOPIC, idle)
        .await
        .with_context(|| format!("reading {DEADLETTER_TOPIC}"))?
    {
        match DeadLetterRecord::decode(&m.payload) {
            Ok(letter) => letters.push(Letter { position: m.source(), letter }),
            Err(_) => unreadable += 1,
        }
    }
    let plan = selection.plan(letters, &done, now_ms());
    let producer = (!args.dry_run).then(|| args.kafka.producer()).transpose()?;
    let mut per_trigger: BTreeMap<String, usize> = BTreeMap::new();
    for (l, key, again) in &plan.redeliver {
        let monitor = l.letter.monitor.as_deref().unwrap_or("?");
        let trigger = l.letter.trigger.as_deref().unwrap_or("(every trigger)");
        let tx = again.record.matched.transaction_hash();
        if let Some(p) = &producer {
            p.send(DEFERRED_TOPIC, key, again.encode())
                .await
                .with_context(|| format!("publishing the redelivery of {}", l.position))?;
            p.send(REDELIVERED_TOPIC, &l.position, now_ms().to_string().into_bytes())
                .await
                .with_context(|| format!("marking {} redelivered", l.position))?;
        }
        println!(
            "{} {monitor} → {trigger}: tx {tx} ({}; dead-lettered {})",
            if args.dry_run { "would redeliver" } else { "redelivered" },
            l.letter.reason,
            ago(now_ms().saturating_sub(l.letter.at_ms)),
        );
        *per_trigger.entry(format!("{} {trigger}", namespace_of(monitor))).or_default() += 1;
    }
    if let Some(p) = &producer {
        p.flush(Duration::from_secs(30)).await.context("flushing the redeliveries")?;
    }
    let verb = if args.dry_run { "would be delivered again" } else { "delivered again" };
    println!("{} notification(s) {verb}", plan.redeliver.len());
    for (trigger, n) in per_trigger {
        println!("  {n} to {trigger}");
    }
    if plan.already > 0 {
        println!("{} redelivered by an earlier run (not again)", plan.already);
    }
    if plan.without_match > 0 {
        println!(
            "{} without a notification to deliver (written before wire format 1.2, or not decodable)",
            plan.without_match
        );
    }
    if unreadable > 0 {
        println!("{unreadable} dead letter(s) not readable by this version: skipped");
    }
    Ok(())
}

fn namespace_of(monitor: &str) -> &str {
    monitor.split_once('/').map_or("", |(ns, _)| ns)
}

fn ago(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..172_800 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use chainwatch_platform::codec::MatchRecord;
    use serde_json::json;

    use super::*;

    fn record(ns: &str) -> MatchRecord {
        serde_json::from_value(json!({
            "match": {
                "monitor": {"key": {"namespace": ns, "name": "large"}, "display_name": "large", "triggers": ["hook"], "upstream": {}},
                "network": "stellar-testnet",
                "block": {"number": 7, "hash": "ab", "timestamp": 1},
                "transaction": {"chain": "stellar", "hash": "tx1", "status": "SUCCESS", "application_order": 1, "fee_bump": false, "envelope_xdr": "", "result_xdr": ""},
                "matched_on": {"functions": [], "events": [], "transactions": []},
                "matched_on_args": {"functions": [], "events": []}},
            "block_published_at_ms": 1, "produced_at_ms": 1}))
        .unwrap()
    }

    fn letter(offset: u32, ns: &str, trigger: &str, reason: &str, at_ms: u64) -> Letter {
        Letter {
            position: format!("chainwatch.deadletter/0@{offset}"),
            letter: DeadLetterRecord {
                stage: "notification".into(),
                reason: format!("{reason}: HTTP 503"),
                network: "stellar-testnet".into(),
                source: "chainwatch.matches/3@9".into(),
                monitor: Some(format!("{ns}/large")),
                trigger: Some(trigger.into()),
                idempotency_key: Some("k".into()),
                attempts: 4,
                at_ms,
                payload: None,
                record: Some(record(ns)),
                tenant: Some(format!("tenant-{ns}")),
            },
        }
    }

    fn positions(plan: &Plan) -> Vec<&str> {
        plan.redeliver.iter().map(|(l, _, _)| l.position.as_str()).collect()
    }

    #[test]
    fn each_selected_dead_letter_is_delivered_again_once_to_its_tenants_worker() {
        let letters = || {
            vec![
                letter(0, "acme", "hook", "retries_exhausted", 1_000),
                letter(1, "acme", "slack", "rejected", 2_000),
                letter(2, "globex", "hook", "retries_exhausted", 3_000),
            ]
        };
        let all = Selection::default().plan(letters(), &HashSet::new(), 10_000);
        assert_eq!(positions(&all).len(), 3);
        let (_, key, again) = &all.redeliver[0];
        assert_eq!(key, "tenant-acme", "keyed by tenant: the worker owning its notifications");
        assert_eq!(
            (again.trigger.as_deref(), again.attempts, again.due_at_ms, again.reason.as_str()),
            (Some("hook"), 0, 10_000, "redeliver")
        );
        assert_eq!(again.first_attempt_at_ms, None, "a fresh retry window");

        // filters
        let by = |s: Selection| s.plan(letters(), &HashSet::new(), 10_000);
        let acme = by(Selection { namespace: Some("acme".into()), ..Default::default() });
        assert_eq!(positions(&acme), ["chainwatch.deadletter/0@0", "chainwatch.deadletter/0@1"]);
        let hook = by(Selection { trigger: Some("hook".into()), ..Default::default() });
        assert_eq!(positions(&hook), ["chainwatch.deadletter/0@0", "chainwatch.deadletter/0@2"]);
        let rejected = by(Selection { reason: Some("rejected".into()), ..Default::default() });
        assert_eq!(positions(&rejected), ["chainwatch.deadletter/0@1"]);
        let named = by(Selection { monitor: Some("globex/large".into()), ..Default::default() });
        assert_eq!(positions(&named), ["chainwatch.deadletter/0@2"]);
        assert_eq!(by(Selection { monitor: Some("large".into()), ..Default::default() }).redeliver.len(), 3);
        assert_eq!(by(Selection { monitor: Some("small".into()), ..Default::default() }).redeliver.len(), 0);
        let recent = by(Selection { since_ms: Some(2_000), ..Default::default() });
        assert_eq!(positions(&recent), ["chainwatch.deadletter/0@1", "chainwatch.deadletter/0@2"]);

        // a second run: what the first sent is not sent again
        let done: HashSet<String> = ["chainwatch.deadletter/0@0".to_string()].into();
        let again = Selection::default().plan(letters(), &done, 20_000);
        assert_eq!((again.redeliver.len(), again.already), (2, 1));
    }

    #[test]
    fn blocks_and_letters_without_the_match_are_counted_not_sent() {
        let mut block = letter(0, "acme", "hook", "undecodable", 1);
        block.letter.stage = "block".into();
        let mut old = letter(1, "acme", "hook", "retries_exhausted", 1);
        old.letter.record = None; // written before wire format 1.2
        let plan = Selection::default().plan(vec![block, old], &HashSet::new(), 10);
        assert_eq!((plan.redeliver.len(), plan.without_match), (0, 1));
    }
}
