//! The notify stage: consumes `chainwatch.matches`, runs the monitor's trigger conditions, and
//! delivers one notification per trigger — deduplicated by idempotency key, throttled, retried with
//! the trigger's retry policy, dead-lettered with the reason after the last attempt. A match's
//! offset moves only once every trigger was delivered, suppressed or dead-lettered.

pub mod channels;
pub mod dedup;
pub mod destination;
pub mod payload;
pub mod throttle;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chainwatch_core::MonitorMatch;
use chainwatch_core::template;
use chainwatch_crds::common::Jitter;
use chainwatch_platform::{Backoff, redact};
use chainwatch_platform::bus::{Consumer, DEADLETTER_TOPIC, Message, Producer};
use chainwatch_platform::codec::{DeadLetterRecord, MatchRecord, now_ms};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{ResolvedTrigger, Snapshot};
use crate::metrics::WorkerMetrics;
use crate::status::StatusSink;
use channels::{Channels, DeliveryError, Notification};
use dedup::DeliveredLog;
use crate::script::{RunFor, ScriptRunner, script_input};
use throttle::Throttles;

/// The notify stage.
#[derive(Clone)]
pub struct NotifyStage {
    pub(crate) consumer: Arc<dyn Consumer>,
    pub(crate) producer: Arc<dyn Producer>,
    pub(crate) config: watch::Receiver<Arc<Snapshot>>,
    pub(crate) channels: Arc<Channels>,
    pub(crate) scripts: ScriptRunner,
    pub(crate) delivered: DeliveredLog,
    pub(crate) throttles: Arc<Throttles>,
    pub(crate) status: Arc<dyn StatusSink>,
    pub(crate) metrics: WorkerMetrics,
    /// Matches handled concurrently.
    pub(crate) concurrency: usize,
}

/// The retry policy of a trigger, with upstream's defaults.
pub fn retry_of(t: &ResolvedTrigger) -> (u32, Backoff) {
    let p = t.spec.retry_policy.clone().unwrap_or_default();
    let dur = |d: &Option<chainwatch_crds::DurationString>, default: Duration| {
        d.as_ref().and_then(|d| d.parse().ok()).unwrap_or(default)
    };
    (
        p.max_retries.unwrap_or(3),
        Backoff {
            initial: dur(&p.initial_backoff, Duration::from_millis(250)),
            max: dur(&p.max_backoff, Duration::from_secs(10)),
            base: p.base_for_backoff.unwrap_or(2),
            full_jitter: p.jitter.unwrap_or_default() == Jitter::Full,
        },
    )
}

impl NotifyStage {
    /// Consumes until `stop`, then finishes the matches in progress and commits.
    pub async fn run(self, stop: CancellationToken) {
        let (consumer, concurrency) = (self.consumer.clone(), self.concurrency);
        crate::stage::consume(consumer, concurrency, stop, "notify", move |msg| {
            let stage = self.clone();
            async move { stage.process(&msg).await }
        })
        .await;
    }

    #[allow(clippy::too_many_arguments)]
    async fn dead_letter(
        &self,
        source: &str,
        m: Option<&MonitorMatch>,
        trigger: Option<&str>,
        key: Option<&str>,
        reason: &str,
        detail: &str,
        attempts: u32,
        payload: Option<Value>,
    ) {
        self.metrics.dead_letter("notify", reason);
        tracing::error!(%source, monitor = ?m.map(|m| m.monitor.key.to_string()), ?trigger, %reason, %detail, "dead-lettering a notification");
        let record = DeadLetterRecord {
            stage: "notification".into(),
            reason: format!("{reason}: {detail}"),
            network: m.map(|m| m.network.clone()).unwrap_or_default(),
            source: source.to_string(),
            monitor: m.map(|m| m.monitor.key.to_string()),
            trigger: trigger.map(str::to_string),
            idempotency_key: key.map(str::to_string),
            attempts,
            at_ms: now_ms(),
            payload,
        };
        let backoff = Backoff::default();
        let mut attempt = 0;
        while let Err(e) = self.producer.send(DEADLETTER_TOPIC, key.unwrap_or(source), record.encode()).await
        {
            tracing::error!(error = %e, "writing a dead letter failed; retrying");
            tokio::time::sleep(backoff.delay(attempt.min(6))).await;
            attempt += 1;
        }
    }

    /// Handles one match record.
    pub async fn process(&self, msg: &Message) {
        let record = match MatchRecord::decode(&msg.payload) {
            Ok(r) => r,
            Err(e) => {
                self.dead_letter(&msg.source(), None, None, None, "undecodable", &e.to_string(), 1, None)
                    .await;
                return;
            }
        };
        let m = record.matched;
        self.status.matched(&m);
        let raw = m.upstream_json();
        let snapshot = self.config.borrow().clone();
        if !m.monitor.trigger_conditions.is_empty() {
            let tenant = snapshot.tenant_of(&m.monitor.key.namespace).filter(|t| t.limits.allow_scripts);
            let Some(tenant) = tenant else {
                let detail =
                    "the monitor has trigger-condition scripts but its tenant does not allow scripts";
                self.dead_letter(
                    &msg.source(),
                    Some(&m),
                    None,
                    None,
                    "scripts_not_allowed",
                    detail,
                    0,
                    Some(raw),
                )
                .await;
                return;
            };
            let run_for = tenant.run_for();
            for (i, cond) in m.monitor.trigger_conditions.iter().enumerate() {
                match self.scripts.condition(cond, &script_input(&raw, &cond.arguments), &run_for).await {
                    Ok(true) => {
                        self.status.condition_ran(&m.monitor.key, None);
                        self.metrics.condition_drop();
                        tracing::info!(monitor = %m.monitor.key, condition = i, tx = %m.transaction_hash(), "trigger condition filtered the match out");
                        return;
                    }
                    Ok(false) => self.status.condition_ran(&m.monitor.key, None),
                    Err(e) => {
                        self.status.condition_ran(&m.monitor.key, Some(&e));
                        tracing::warn!(monitor = %m.monitor.key, condition = i, error = %e, "trigger condition failed; keeping the match")
                    }
                }
            }
        }
        let source = msg.source();
        let deliveries = m
            .monitor
            .triggers
            .iter()
            .map(|t| self.deliver(&source, &m, &raw, t, &snapshot, record.block_published_at_ms));
        futures::future::join_all(deliveries).await;
    }

    async fn deliver(
        &self,
        source: &str,
        m: &MonitorMatch,
        raw: &Value,
        trigger_name: &str,
        snapshot: &Snapshot,
        published_at_ms: u64,
    ) {
        let key = m.idempotency_key(trigger_name);
        if self.delivered.contains(&key) {
            self.metrics.duplicate();
            tracing::debug!(monitor = %m.monitor.key, trigger = trigger_name, %key, "already delivered");
            return;
        }
        let ns = &m.monitor.key.namespace;
        let Some(trigger) = snapshot.triggers.get(&(ns.clone(), trigger_name.to_string())).cloned() else {
            self.dead_letter(
                source,
                Some(m),
                Some(trigger_name),
                Some(&key),
                "trigger_not_found",
                &format!("Trigger {ns}/{trigger_name} does not exist"),
                0,
                Some(raw.clone()),
            )
            .await;
            return;
        };
        let channel = trigger.spec.channel().unwrap_or("unknown");
        let tenant = snapshot.tenant_of(ns);
        if trigger.spec.script.is_some() && !tenant.is_some_and(|t| t.limits.allow_scripts) {
            self.dead_letter(
                source,
                Some(m),
                Some(trigger_name),
                Some(&key),
                "scripts_not_allowed",
                "script triggers need a tenant that allows scripts",
                0,
                Some(raw.clone()),
            )
            .await;
            return;
        }
        if let Some(th) = &trigger.spec.throttle {
            let window = th.window.parse().unwrap_or(Duration::from_secs(60));
            let cooldown = th.cooldown.as_ref().and_then(|c| c.parse().ok());
            if !self.throttles.trigger(
                &(ns.clone(), trigger_name.to_string()),
                th.max_notifications,
                window,
                cooldown,
            ) {
                self.metrics.throttled("trigger");
                self.dead_letter(
                    source,
                    Some(m),
                    Some(trigger_name),
                    Some(&key),
                    "throttled",
                    &format!("the trigger's throttle ({} per {})", th.max_notifications, th.window),
                    0,
                    Some(raw.clone()),
                )
                .await;
                return;
            }
        }
        if let Some(t) = tenant
            && let Some(per_minute) = t.limits.notifications_per_minute
            && !self.throttles.tenant(&t.name, per_minute)
        {
            self.metrics.throttled("tenant");
            self.dead_letter(
                source,
                Some(m),
                Some(trigger_name),
                Some(&key),
                "throttled",
                &format!("tenant {} allows {per_minute} notifications per minute", t.name),
                0,
                Some(raw.clone()),
            )
            .await;
            return;
        }
        let vars = template::variables(m);
        // values from the chain are text in the channel's markup; the template's markup stays
        let markup = channels::Markup::of(&trigger.spec);
        let escaped = |v: &str| markup.escape(v);
        let (title, body, plain) = match &trigger.spec.message {
            Some(msg) => (
                template::render_with(&msg.title, &vars, &escaped),
                template::render_with(&msg.body, &vars, &escaped),
                template::render(&msg.body, &vars),
            ),
            None => (String::new(), String::new(), String::new()),
        };
        let run_for = tenant.map_or_else(|| RunFor::tenant(ns), |t| t.run_for());
        let notification = Notification { title, body, plain, raw, idempotency_key: &key, run_for: &run_for };
        let (max_retries, backoff) = retry_of(&trigger);
        let started = Instant::now();
        let mut attempt = 0;
        let error = loop {
            match self.channels.send(&trigger, &notification).await {
                Ok(()) => {
                    let mut tries = 0;
                    while let Err(e) = self.delivered.record(&key).await {
                        tries += 1;
                        tracing::warn!(error = %e, "recording a delivery failed; retrying");
                        if tries > 5 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                    }
                    self.metrics.delivery(channel, "delivered");
                    self.metrics.delivered(channel, started.elapsed(), published_at_ms);
                    self.status.delivered(ns, trigger_name);
                    tracing::info!(monitor = %m.monitor.key, trigger = trigger_name, channel, tx = %m.transaction_hash(), attempts = attempt + 1, "notification delivered");
                    return;
                }
                Err(e) if e.is_transient() && attempt < max_retries => {
                    self.metrics.retry(channel);
                    let error = redact::scrub(&e.to_string(), trigger.secret_values());
                    tracing::debug!(trigger = trigger_name, attempt, %error, "delivery failed; retrying");
                    tokio::time::sleep(backoff.delay(attempt)).await;
                    attempt += 1;
                }
                Err(e) => break e,
            }
        };
        let reason = match &error {
            DeliveryError::Transient(_) | DeliveryError::Script(_) => "retries_exhausted",
            DeliveryError::Permanent(_) => "rejected",
        };
        self.metrics.delivery(channel, "dead_lettered");
        // what is written down names no secret of the trigger's (a URL's path, a token)
        let message = redact::scrub(&error.to_string(), trigger.secret_values());
        self.status.failed(ns, trigger_name, error.reason(), &message);
        self.dead_letter(
            source,
            Some(m),
            Some(trigger_name),
            Some(&key),
            reason,
            &message,
            attempt + 1,
            Some(raw.clone()),
        )
        .await;
    }
}
