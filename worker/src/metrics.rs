//! Worker metrics. Labels are bounded: network (configured Networks), channel (six kinds), outcome,
//! stage, reason (fixed sets), kind (six kinds), group (two consumer groups), tenant (the Tenants the
//! platform team creates; `none` for a namespace of none). Families of fixed label
//! sets are exposed at zero from the start (an alert sees the series before the first event).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Net {
    network: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Delivery {
    channel: String,
    outcome: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Channel {
    channel: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageReason {
    stage: String,
    reason: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Scope {
    scope: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantL {
    tenant: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantOutcome {
    tenant: String,
    outcome: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeL {
    outcome: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Group {
    group: String,
}

/// What became of a notification of a replaced block (`chainwatch_worker_retractions_total{outcome}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retraction {
    /// It had been delivered: a retraction went to the same trigger.
    Sent,
    /// It had not been delivered yet (waiting, retrying, or its match came after the reorg): it
    /// never will be.
    Withheld,
    /// The retraction could not be delivered (dead-lettered).
    DeadLettered,
}

impl Retraction {
    const ALL: [Retraction; 3] = [Retraction::Sent, Retraction::Withheld, Retraction::DeadLettered];

    pub fn as_str(self) -> &'static str {
        match self {
            Retraction::Sent => "sent",
            Retraction::Withheld => "withheld",
            Retraction::DeadLettered => "dead_lettered",
        }
    }
}

/// How a delivery ended (`chainwatch_worker_deliveries_total{outcome}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    DeadLettered,
}

impl Outcome {
    const ALL: [Outcome; 2] = [Outcome::Delivered, Outcome::DeadLettered];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Worker metric families.
#[derive(Clone)]
pub struct WorkerMetrics {
    monitors: Family<Net, Gauge>,
    rejected: Gauge,
    config_version: Gauge,
    blocks: Family<Net, Counter>,
    matches: Family<Net, Counter>,
    evaluation: Family<Net, Histogram>,
    eval_errors: Family<Net, Counter>,
    decode_errors: Family<Net, Counter>,
    reorgs: Family<Net, Counter>,
    match_resends: Family<Net, Counter>,
    tenant_evaluations: Family<TenantL, Counter>,
    tenant_matches: Family<TenantL, Counter>,
    tenant_notifications: Family<TenantOutcome, Counter>,
    dead_letters: Family<StageReason, Counter>,
    deliveries: Family<Delivery, Counter>,
    retries: Family<Channel, Counter>,
    delivery_latency: Family<Channel, Histogram>,
    end_to_end: Family<Channel, Histogram>,
    throttled: Family<Scope, Counter>,
    duplicates: Counter,
    retractions: Family<OutcomeL, Counter>,
    condition_drops: Counter,
    deferred: Family<Reason, Counter>,
    pending_retries: Gauge,
    lag: Family<Group, Gauge>,
    assigned: Family<Group, Gauge>,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self {
            monitors: Family::default(),
            rejected: Gauge::default(),
            config_version: Gauge::default(),
            blocks: Family::default(),
            matches: Family::default(),
            evaluation: Family::new_with_constructor(latency),
            eval_errors: Family::default(),
            decode_errors: Family::default(),
            reorgs: Family::default(),
            match_resends: Family::default(),
            tenant_evaluations: Family::default(),
            tenant_matches: Family::default(),
            tenant_notifications: Family::default(),
            dead_letters: Family::default(),
            deliveries: Family::default(),
            retries: Family::default(),
            delivery_latency: Family::new_with_constructor(latency),
            end_to_end: Family::new_with_constructor(latency),
            throttled: Family::default(),
            duplicates: Counter::default(),
            retractions: Family::default(),
            condition_drops: Counter::default(),
            deferred: Family::default(),
            pending_retries: Gauge::default(),
            lag: Family::default(),
            assigned: Family::default(),
        }
    }
}

impl WorkerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("chainwatch_worker");
        r.register("monitors", "Admitted, unpaused monitors evaluated per network", m.monitors.clone());
        r.register(
            "monitors_rejected",
            "Monitors left out (not admitted or not compiling)",
            m.rejected.clone(),
        );
        r.register(
            "config_version",
            "Version of the configuration snapshot in use",
            m.config_version.clone(),
        );
        r.register("blocks_evaluated", "Blocks evaluated by the filter stage", m.blocks.clone());
        r.register("matches", "Matches produced", m.matches.clone());
        r.register(
            "evaluation_duration_seconds",
            "Time to evaluate every monitor on a block",
            m.evaluation.clone(),
        );
        r.register(
            "expression_errors",
            "Expressions that failed at run time (the condition did not match)",
            m.eval_errors.clone(),
        );
        r.register("decode_errors", "Calls, logs and XDR that did not decode", m.decode_errors.clone());
        r.register("reorg_records", "Reorg records received", m.reorgs.clone());
        r.register(
            "match_resends",
            "Match records sent again because the broker did not acknowledge them",
            m.match_resends.clone(),
        );
        r.register(
            "dead_letters",
            "Records sent to the dead-letter topic, by stage and reason",
            m.dead_letters.clone(),
        );
        r.register("deliveries", "Notification deliveries by channel and outcome", m.deliveries.clone());
        r.register("delivery_retries", "Delivery attempts after the first", m.retries.clone());
        r.register(
            "delivery_duration_seconds",
            "Time of a successful delivery, retries included",
            m.delivery_latency.clone(),
        );
        r.register(
            "block_to_notification_seconds",
            "Time from block publication to delivered notification",
            m.end_to_end.clone(),
        );
        r.register(
            "throttled",
            "Notifications not sent because of a throttle (trigger) or a tenant limit",
            m.throttled.clone(),
        );
        r.register(
            "duplicates_suppressed",
            "Notifications not sent again because their idempotency key was delivered",
            m.duplicates.clone(),
        );
        r.register(
            "retractions",
            "Notifications of blocks a reorg replaced: retraction sent (it had been delivered), withheld (it had not been), dead_lettered (the retraction failed)",
            m.retractions.clone(),
        );
        for outcome in Retraction::ALL {
            let _ = m.retractions.get_or_create(&OutcomeL { outcome: outcome.as_str().into() });
        }
        r.register(
            "trigger_condition_drops",
            "Matches dropped by a trigger-condition script",
            m.condition_drops.clone(),
        );
        r.register(
            "notifications_deferred",
            "Notifications put aside on the deferred topic: a retry later (retry) or a full tenant lane (backlog)",
            m.deferred.clone(),
        );
        for reason in ["retry", "backlog"] {
            let _ = m.deferred.get_or_create(&Reason { reason: reason.into() });
        }
        r.register(
            "notifications_pending_retry",
            "Notifications this worker holds for a retry after a failed delivery (each Trigger's share is its status.pendingCount)",
            m.pending_retries.clone(),
        );
        r.register(
            "consumer_lag",
            "Records not yet consumed by the group, on this worker's partitions",
            m.lag.clone(),
        );
        r.register(
            "assigned_partitions",
            "Partitions of the group's topics assigned to this worker",
            m.assigned.clone(),
        );
        r.register(
            "tenant_evaluations",
            "Monitor evaluations by tenant: blocks evaluated times the tenant's monitors on them (usage)",
            m.tenant_evaluations.clone(),
        );
        r.register("tenant_matches", "Matches by tenant (usage)", m.tenant_matches.clone());
        r.register(
            "tenant_notifications",
            "Notifications by tenant and outcome (delivered, dead_lettered: usage and per-tenant failures)",
            m.tenant_notifications.clone(),
        );
        // the families alerts and dashboards query, at zero before the first event
        for (stage, reasons) in crate::dead_letters::STAGES {
            for reason in reasons {
                let _ = m
                    .dead_letters
                    .get_or_create(&StageReason { stage: stage.into(), reason: reason.to_string() });
            }
        }
        for channel in chainwatch_crds::trigger::CHANNELS {
            let _ = m.retries.get_or_create(&Channel { channel: channel.into() });
            for outcome in Outcome::ALL {
                let _ = m
                    .deliveries
                    .get_or_create(&Delivery { channel: channel.into(), outcome: outcome.as_str().into() });
            }
        }
        m
    }

    /// The configuration in use: its version, how many monitors were left out, and how many are
    /// evaluated per network.
    pub fn config<'a>(
        &self,
        version: u64,
        rejected: usize,
        per_network: impl Iterator<Item = (&'a str, usize)>,
        tenants: impl Iterator<Item = &'a str>,
    ) {
        // every tenant's usage series, at zero from the moment it is known
        for tenant in tenants {
            let _ = self.tenant_evaluations.get_or_create(&TenantL { tenant: tenant.into() });
            let _ = self.tenant_matches.get_or_create(&TenantL { tenant: tenant.into() });
            for outcome in Outcome::ALL {
                let _ = self.tenant_notifications.get_or_create(&TenantOutcome {
                    tenant: tenant.into(),
                    outcome: outcome.as_str().into(),
                });
            }
        }
        for (n, count) in per_network {
            self.monitors.get_or_create(&Net { network: n.into() }).set(count as i64);
        }
        self.rejected.set(rejected as i64);
        self.config_version.set(version as i64);
    }
    pub fn block(&self, network: &str, took: Duration, stats: &chainwatch_core::monitor::index::MatchStats) {
        let l = Net { network: network.into() };
        self.blocks.get_or_create(&l).inc();
        self.matches.get_or_create(&l).inc_by(stats.matches);
        self.evaluation.get_or_create(&l).observe(took.as_secs_f64());
        self.eval_errors.get_or_create(&l).inc_by(stats.eval_errors);
        self.decode_errors.get_or_create(&l).inc_by(stats.decode_errors);
    }
    pub fn match_resends(&self, network: &str, n: u64) {
        self.match_resends.get_or_create(&Net { network: network.into() }).inc_by(n);
    }
    pub fn reorg(&self, network: &str) {
        self.reorgs.get_or_create(&Net { network: network.into() }).inc();
    }
    pub fn dead_letter(&self, stage: &str, reason: crate::dead_letters::Reason) {
        self.dead_letters
            .get_or_create(&StageReason { stage: stage.into(), reason: reason.to_string() })
            .inc();
    }
    pub fn delivery(&self, channel: &str, tenant: &str, outcome: Outcome) {
        self.deliveries
            .get_or_create(&Delivery { channel: channel.into(), outcome: outcome.as_str().into() })
            .inc();
        self.tenant_notifications
            .get_or_create(&TenantOutcome { tenant: tenant.into(), outcome: outcome.as_str().into() })
            .inc();
    }
    pub fn tenant_evaluations(&self, tenant: &str, monitors: u64) {
        self.tenant_evaluations.get_or_create(&TenantL { tenant: tenant.into() }).inc_by(monitors);
    }
    pub fn tenant_matches(&self, tenant: &str, n: u64) {
        self.tenant_matches.get_or_create(&TenantL { tenant: tenant.into() }).inc_by(n);
    }
    pub fn retry(&self, channel: &str) {
        self.retries.get_or_create(&Channel { channel: channel.into() }).inc();
    }
    pub fn delivered(&self, channel: &str, took: Duration, block_published_at_ms: u64) {
        let l = Channel { channel: channel.into() };
        self.delivery_latency.get_or_create(&l).observe(took.as_secs_f64());
        let now = chainwatch_platform::codec::now_ms();
        if block_published_at_ms > 0 && now >= block_published_at_ms {
            self.end_to_end.get_or_create(&l).observe((now - block_published_at_ms) as f64 / 1000.0);
        }
    }
    pub fn throttled(&self, scope: &str) {
        self.throttled.get_or_create(&Scope { scope: scope.into() }).inc();
    }
    pub fn duplicate(&self) {
        self.duplicates.inc();
    }
    pub fn retraction(&self, outcome: Retraction) {
        self.retractions.get_or_create(&OutcomeL { outcome: outcome.as_str().into() }).inc();
    }
    pub fn deferred(&self, reason: &str) {
        self.deferred.get_or_create(&Reason { reason: reason.into() }).inc();
    }
    pub fn pending_retries(&self, n: usize) {
        self.pending_retries.set(n as i64);
    }
    pub fn condition_drop(&self) {
        self.condition_drops.inc();
    }
    pub fn assigned(&self, group: &str, n: usize) {
        self.assigned.get_or_create(&Group { group: group.into() }).set(n as i64);
    }
    pub fn lag(&self, group: &str, lag: i64) {
        self.lag.get_or_create(&Group { group: group.into() }).set(lag);
    }
}
