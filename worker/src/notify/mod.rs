//! The notify stage: consumes `chainwatch.matches` (and `chainwatch.notify.deferred`), runs the
//! monitor's trigger conditions, and delivers one notification per trigger — deduplicated by
//! idempotency key, throttled, retried with the trigger's retry policy, dead-lettered with the
//! reason after the last attempt. A record's offset moves once every trigger was delivered,
//! suppressed, dead-lettered or put aside on the deferred topic.
//!
//! Tenants do not wait on each other ([`lanes`]): each has its own slots and queue; a retry with a
//! delay of a second or more, and a match its tenant's lane has no room for, are put aside on the
//! deferred topic (the offsets move on) and come back when due. Matches are keyed by tenant, so
//! one worker owns each tenant's notifications and its rate limits count them all.
//!
//! A reorg notice (from the filter stage, on every partition) retracts what was notified for the
//! replaced blocks: each delivered notification gets a retraction to the same trigger, and a
//! notification not yet delivered (waiting, retrying, or its match still to come) never is
//! ([`reorgs`]).

pub mod channels;
pub mod counts;
pub mod dedup;
pub mod destination;
pub mod lanes;
pub mod payload;
pub mod pending;
pub mod reorgs;
pub mod retry;
pub mod throttle;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chainwatch_core::MonitorMatch;
use chainwatch_core::template;
use chainwatch_crds::NotifyPhase;
use chainwatch_platform::bus::{Consumer, DEADLETTER_TOPIC, DEFERRED_TOPIC, Message, Producer};
use chainwatch_platform::codec::{
    DeadLetterRecord, DeferredRecord, Kind, MatchRecord, ReorgRecord, now_ms, peek_kind,
};
use chainwatch_platform::{Backoff, redact};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::ResolvedTrigger;
use crate::config::Snapshot;
use crate::dead_letters::Reason;
use crate::metrics::{Outcome, Retraction, WorkerMetrics};
use crate::script::{RunFor, ScriptRunner, script_input};
use crate::status::StatusSink;
use channels::{Channels, DeliveryError, Notification, Text};
use dedup::{DeliveredLog, Sender, retraction_key, superseded_key};
use pending::PendingRetries;
use retry::RetryPlan;
use throttle::{Scope, Throttles};

/// The notify stage.
#[derive(Clone)]
pub struct NotifyStage {
    pub(crate) consumer: Arc<dyn Consumer>,
    pub(crate) producer: Arc<dyn Producer>,
    pub(crate) config: watch::Receiver<Arc<Snapshot>>,
    pub(crate) channels: Arc<Channels>,
    pub(crate) scripts: ScriptRunner,
    pub(crate) delivered: DeliveredLog,
    /// The newest blocks' matches and the replaced blocks (reorgs).
    pub(crate) recent: Arc<reorgs::Recent>,
    pub(crate) throttles: Arc<Throttles>,
    pub(crate) status: Arc<dyn StatusSink>,
    pub(crate) metrics: WorkerMetrics,
    /// Records held at most (in flight, waiting in a lane, or due later), all tenants.
    pub(crate) concurrency: usize,
    pub(crate) fairness: lanes::Fairness,
    /// How long a stop waits for the notifications in progress.
    pub(crate) drain: Duration,
}

/// One unit of work: a match (all its triggers), or one trigger's retry.
struct Job {
    msg: Arc<Message>,
    record: MatchRecord,
    trigger: Option<String>,
    attempts: u32,
    deferrals: u32,
    /// When the trigger's delivery was first attempted (a retry).
    first_attempt_ms: Option<u64>,
}

impl Job {
    fn new(msg: Arc<Message>, record: MatchRecord) -> Self {
        Job { msg, record, trigger: None, attempts: 0, deferrals: 0, first_attempt_ms: None }
    }
}

/// Retries due sooner than this wait in their lane; later ones are put aside.
const INLINE_RETRY: Duration = Duration::from_secs(1);

/// Deferred records held in memory at most; beyond, they go back to the topic.
const MAX_TIMERS: usize = 20_000;

/// What a delivery came to.
enum Delivered {
    Done,
    /// Put aside for a retry at this time.
    Retry {
        attempts: u32,
        due_ms: u64,
        first_attempt_ms: u64,
        error: String,
    },
}

impl NotifyStage {
    /// The lane a match belongs to: its namespace's tenant.
    fn lane_of(&self, record: &MatchRecord) -> String {
        self.config.borrow().lane(&record.matched.monitor.key.namespace)
    }

    /// Consumes until `stop`, then finishes the notifications in progress and commits.
    pub async fn run(self, stop: CancellationToken) {
        let stage = Arc::new(self);
        let mut lanes: lanes::Lanes<Job> = lanes::Lanes::new(stage.fairness);
        let mut timers: lanes::Timers<Job> = lanes::Timers::default();
        let mut pending = PendingRetries::new(stage.status.clone());
        // tasks: (the lane a job ran in, if it did; the record done)
        let mut running: tokio::task::JoinSet<(Option<String>, Arc<Message>)> = tokio::task::JoinSet::new();
        tracing::debug!("notify: consuming");
        loop {
            let room = lanes.held() + running.len() < stage.concurrency.max(1) * 64;
            let next_due = timers.next_due();
            tokio::select! {
                _ = stop.cancelled() => break,
                msg = stage.consumer.recv(), if room => match msg {
                    Ok(msg) => {
                        tracing::debug!(source = %msg.source(), "notify: record");
                        stage.clone().arrived(Arc::new(msg), &mut lanes, &mut timers, &mut running, &mut pending)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "consuming notifications failed");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                },
                Some(done) = running.join_next(), if !running.is_empty() => {
                    let Ok((lane, msg)) = done else { continue };
                    stage.consumer.done(&msg);
                    pending.finished(&msg);
                    stage.metrics.pending_retries(pending.total());
                    if let Some(lane) = lane
                        && let Some(next) = lanes.finished(&lane)
                    {
                        running.spawn(stage.clone().work(lane, next));
                    }
                }
                _ = sleep_until_ms(next_due.unwrap_or(0)), if next_due.is_some() => {
                    for job in timers.due(now_ms()) {
                        stage.clone().admit(job, &mut lanes, &mut running);
                    }
                }
            }
        }
        // in flight: finished, for at most the drain timeout; waiting, due later or abandoned:
        // not done, so read again after a restart (a delivery abandoned after its receiver
        // answered is sent again, with the same Idempotency-Key)
        let deadline = tokio::time::Instant::now() + stage.drain;
        let abandoned =
            crate::stage::finish(&mut running, deadline, |(_, msg)| stage.consumer.done(&msg)).await;
        crate::stage::commit(stage.consumer.as_ref(), deadline, "notify").await;
        tracing::info!(waiting = lanes.waiting(), due_later = timers.len(), abandoned, "notify stopped");
    }

    /// A record arrived: a match, or a deferred notification (now due, or held until it is).
    fn arrived(
        self: Arc<Self>,
        msg: Arc<Message>,
        lanes: &mut lanes::Lanes<Job>,
        timers: &mut lanes::Timers<Job>,
        running: &mut tokio::task::JoinSet<(Option<String>, Arc<Message>)>,
        pending: &mut PendingRetries,
    ) {
        let decoded = match peek_kind(&msg.payload) {
            Ok(Kind::Reorg) => {
                running.spawn(async move {
                    match ReorgRecord::decode(&msg.payload) {
                        Ok(reorg) => self.reorg(&reorg, &msg.source()).await,
                        Err(e) => {
                            let detail = e.to_string();
                            self.dead_letter(&msg.source(), None, None, Reason::Undecodable, &detail, 1).await
                        }
                    }
                    (None, msg)
                });
                return;
            }
            Ok(Kind::Deferred) => DeferredRecord::decode(&msg.payload).map(|d| {
                let due = d.due_at_ms;
                if let Some(trigger) = &d.trigger {
                    let ns = &d.record.matched.monitor.key.namespace;
                    pending.held(&msg, ns, trigger, d.error.as_deref());
                }
                (
                    Job {
                        msg: msg.clone(),
                        record: d.record,
                        trigger: d.trigger,
                        attempts: d.attempts,
                        deferrals: d.deferrals,
                        first_attempt_ms: d.first_attempt_at_ms,
                    },
                    due,
                )
            }),
            _ => MatchRecord::decode(&msg.payload).map(|r| (Job::new(msg.clone(), r), 0)),
        };
        match decoded {
            Err(e) => {
                running.spawn(async move {
                    self.dead_letter(&msg.source(), None, None, Reason::Undecodable, &e.to_string(), 1).await;
                    (None, msg)
                });
            }
            Ok((job, due)) if due > now_ms() => {
                if timers.len() < MAX_TIMERS {
                    timers.push(due, job);
                } else {
                    // too many held: back to the topic as it was
                    running.spawn(async move {
                        self.put_aside(&self.lane_of(&job.record), job.msg.payload.clone()).await;
                        (None, job.msg)
                    });
                }
            }
            Ok((job, _)) => self.admit(job, lanes, running),
        }
    }

    /// Starts a job in its tenant's lane, queues it there, or puts it aside when the lane is full.
    fn admit(
        self: Arc<Self>,
        job: Job,
        lanes: &mut lanes::Lanes<Job>,
        running: &mut tokio::task::JoinSet<(Option<String>, Arc<Message>)>,
    ) {
        let lane = self.lane_of(&job.record);
        match lanes.admit(&lane, job) {
            lanes::Admit::Start(job) => {
                running.spawn(self.work(lane, job));
            }
            lanes::Admit::Queued => {}
            lanes::Admit::Full(job) => {
                self.metrics.deferred("backlog");
                // later each time it comes back to a full lane: 1 s, 2 s, … 60 s
                let delay = Duration::from_secs(1u64 << job.deferrals.min(6)).min(Duration::from_secs(60));
                let due = now_ms() + delay.as_millis() as u64;
                running.spawn(async move {
                    let aside = DeferredRecord {
                        record: job.record.clone(),
                        trigger: job.trigger.clone(),
                        attempts: job.attempts,
                        deferrals: job.deferrals + 1,
                        due_at_ms: due,
                        reason: "backlog".into(),
                        first_attempt_at_ms: job.first_attempt_ms,
                        error: None,
                    };
                    self.put_aside(&self.lane_of(&job.record), aside.encode()).await;
                    (None, job.msg)
                });
            }
        }
    }

    /// Runs a job; returns its lane and record.
    async fn work(self: Arc<Self>, lane: String, job: Job) -> (Option<String>, Arc<Message>) {
        self.process(&job).await;
        (Some(lane), job.msg.clone())
    }

    /// Puts a deferred record on the deferred topic, keyed by its tenant (waits for the broker).
    async fn put_aside(&self, tenant: &str, record: Vec<u8>) {
        let backoff = Backoff::default();
        let mut attempt = 0;
        while let Err(e) = self.producer.send(DEFERRED_TOPIC, tenant, record.clone()).await {
            tracing::error!(error = %e, "putting a notification aside failed; retrying");
            tokio::time::sleep(backoff.delay(attempt.min(6))).await;
            attempt += 1;
        }
    }

    /// Writes a dead letter of `record`'s notification to `trigger` (all of its triggers when
    /// `None`), with what `chainwatch redeliver` needs to deliver it again.
    async fn dead_letter(
        &self,
        source: &str,
        record: Option<&MatchRecord>,
        trigger: Option<&str>,
        reason: Reason,
        detail: &str,
        attempts: u32,
    ) {
        let m = record.map(|r| &r.matched);
        let key = m.zip(trigger).map(|(m, t)| m.idempotency_key(t));
        let key = key.as_deref();
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
            payload: m.map(MonitorMatch::upstream_json),
            record: record.cloned(),
            tenant: record.map(|r| self.lane_of(r)),
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

    /// Handles one job: a match (its trigger conditions, then every trigger), or one trigger's
    /// retry.
    async fn process(&self, job: &Job) {
        let msg = &job.msg;
        let record = &job.record;
        let m = &record.matched;
        if job.trigger.is_none() && job.deferrals == 0 {
            self.status.matched(m);
        }
        if !self.recent.took_up(record) {
            // its block was replaced before this was notified: it never is
            self.retract(record, job.trigger.as_deref(), &msg.source()).await;
            return;
        }
        let mut raw = m.upstream_json();
        payload::phased(&mut raw, m.phase);
        let snapshot = self.config.borrow().clone();
        if job.trigger.is_none() && !m.monitor.trigger_conditions.is_empty() {
            let tenant = snapshot.tenant_of(&m.monitor.key.namespace).filter(|t| t.limits.allow_scripts);
            let Some(tenant) = tenant else {
                let detail =
                    "the monitor has trigger-condition scripts but its tenant does not allow scripts";
                self.dead_letter(&msg.source(), Some(record), None, Reason::ScriptsNotAllowed, detail, 0)
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
        let triggers: Vec<&String> = match &job.trigger {
            Some(t) => vec![t],
            None => m.monitor.triggers.iter().collect(),
        };
        let deliveries = triggers.iter().map(|t| self.deliver(job, &raw, t, &snapshot));
        for (trigger, outcome) in triggers.iter().zip(futures::future::join_all(deliveries).await) {
            if let Delivered::Retry { attempts, due_ms, first_attempt_ms, error } = outcome {
                self.metrics.deferred("retry");
                let aside = DeferredRecord {
                    record: record.clone(),
                    trigger: Some(trigger.to_string()),
                    attempts,
                    deferrals: job.deferrals,
                    due_at_ms: due_ms,
                    reason: "retry".into(),
                    first_attempt_at_ms: Some(first_attempt_ms),
                    error: Some(error),
                };
                self.put_aside(&self.lane_of(record), aside.encode()).await;
            }
        }
    }

    /// Delivers `job`'s notification to one trigger: once (a key delivered before is not sent
    /// again), within the trigger's and tenant's limits, retried by the trigger's [`RetryPlan`].
    async fn deliver(&self, job: &Job, raw: &Value, trigger_name: &str, snapshot: &Snapshot) -> Delivered {
        let source = &job.msg.source();
        let record = &job.record;
        let m = &record.matched;
        let attempts = job.attempts;
        let key = m.idempotency_key(trigger_name);
        let Some(_claim) = self.delivered.claim(&key) else {
            self.metrics.duplicate();
            tracing::debug!(monitor = %m.monitor.key, trigger = trigger_name, %key, "already delivered or being delivered");
            return Delivered::Done;
        };
        if self.delivered.contains(&retraction_key(&key)) {
            // withheld (and counted) while it waited for a retry
            tracing::debug!(monitor = %m.monitor.key, trigger = trigger_name, block = m.block.number, "not delivering a notification of a block a reorg replaced");
            return Delivered::Done;
        }
        match m.phase {
            Some(NotifyPhase::Seen) if self.delivered.contains(&superseded_key(&key)) => {
                tracing::debug!(monitor = %m.monitor.key, trigger = trigger_name, block = m.block.number, "not delivering a seen notification: its final one went first");
                return Delivered::Done;
            }
            Some(NotifyPhase::Final) => self.after_seen(m, trigger_name, snapshot).await,
            _ => {}
        }
        let ns = &m.monitor.key.namespace;
        let Some(trigger) = snapshot.triggers.get(&(ns.clone(), trigger_name.to_string())).cloned() else {
            self.dead_letter(
                source,
                Some(record),
                Some(trigger_name),
                Reason::TriggerNotFound,
                &format!("Trigger {ns}/{trigger_name} does not exist"),
                0,
            )
            .await;
            return Delivered::Done;
        };
        let channel = trigger.spec.channel().unwrap_or("unknown");
        let tenant = snapshot.tenant_of(ns);
        if trigger.spec.script.is_some() && !tenant.is_some_and(|t| t.limits.allow_scripts) {
            self.dead_letter(
                source,
                Some(record),
                Some(trigger_name),
                Reason::ScriptsNotAllowed,
                "script triggers need a tenant that allows scripts",
                0,
            )
            .await;
            return Delivered::Done;
        }
        // throttles count a notification once, at its first attempt
        if let Some(th) = trigger.spec.throttle.as_ref().filter(|_| attempts == 0) {
            let window = th.window.parse().unwrap_or(Duration::from_secs(60));
            let cooldown = th.cooldown.as_ref().and_then(|c| c.parse().ok());
            if !self.throttles.admit(
                Scope::Trigger(ns.clone(), trigger_name.to_string()),
                &key,
                th.max_notifications,
                window,
                cooldown,
            ) {
                self.metrics.throttled("trigger");
                self.dead_letter(
                    source,
                    Some(record),
                    Some(trigger_name),
                    Reason::Throttled,
                    &format!("the trigger's throttle ({} per {})", th.max_notifications, th.window),
                    0,
                )
                .await;
                return Delivered::Done;
            }
        }
        if let Some(t) = tenant.filter(|_| attempts == 0)
            && let Some(per_minute) = t.limits.notifications_per_minute
            && !self.throttles.admit(
                Scope::Tenant(t.name.clone()),
                &key,
                per_minute,
                Duration::from_secs(60),
                None,
            )
        {
            self.metrics.throttled("tenant");
            self.dead_letter(
                source,
                Some(record),
                Some(trigger_name),
                Reason::Throttled,
                &format!("tenant {} allows {per_minute} notifications per minute", t.name),
                0,
            )
            .await;
            return Delivered::Done;
        }
        let Text { title, body, plain } = rendered(&trigger, m);
        let run_for = tenant.map_or_else(|| RunFor::tenant(ns), |t| t.run_for());
        let notification = Notification {
            title,
            body,
            plain,
            raw,
            idempotency_key: &key,
            run_for: &run_for,
            retraction: None,
            phase: m.phase,
        };
        let plan = RetryPlan::of(&trigger);
        let first_ms = job.first_attempt_ms.unwrap_or_else(now_ms);
        let started = Instant::now();
        let mut attempt = attempts;
        let error = loop {
            match self.channels.send(&trigger, &notification).await {
                Ok(()) => {
                    self.remember(&key, sender(ns, trigger_name, snapshot)).await;
                    self.metrics.delivery(channel, snapshot.tenant_label(ns), Outcome::Delivered);
                    self.metrics.delivered(channel, started.elapsed(), record.block_published_at_ms);
                    self.status.delivered(ns, trigger_name);
                    tracing::info!(monitor = %m.monitor.key, trigger = trigger_name, channel, tx = %m.transaction_hash(), attempts = attempt + 1, "notification delivered");
                    return Delivered::Done;
                }
                Err(e) if e.is_transient() => {
                    let outage = matches!(e, DeliveryError::Transient(_));
                    let Some(delay) = plan.delay(attempt, outage, first_ms, now_ms()) else { break e };
                    self.metrics.retry(channel);
                    let error = redact::scrub(&e.to_string(), trigger.secret_values());
                    tracing::debug!(trigger = trigger_name, attempt, %error, "delivery failed; retrying");
                    attempt += 1;
                    if delay >= INLINE_RETRY {
                        // out of the lane: the tenant's other notifications go on meanwhile
                        return Delivered::Retry {
                            attempts: attempt,
                            due_ms: now_ms() + delay.as_millis() as u64,
                            first_attempt_ms: first_ms,
                            error,
                        };
                    }
                    tokio::time::sleep(delay).await;
                }
                Err(e) => break e,
            }
        };
        let reason = match &error {
            DeliveryError::Transient(_) | DeliveryError::Script(_) => Reason::RetriesExhausted,
            DeliveryError::Permanent(_) => Reason::Rejected,
        };
        self.metrics.delivery(channel, snapshot.tenant_label(ns), Outcome::DeadLettered);
        // what is written down names no secret of the trigger's (a URL's path, a token)
        let message = redact::scrub(&error.to_string(), trigger.secret_values());
        // the dead letter first: what the status reports as failed can be redelivered
        self.dead_letter(source, Some(record), Some(trigger_name), reason, &message, attempt + 1).await;
        self.status.failed(ns, trigger_name, error.reason(), &message);
        Delivered::Done
    }
}

/// The trigger's message for a match: values from the chain are text in the channel's markup
/// (escaped for it); the template's own markup stays.
fn rendered(trigger: &ResolvedTrigger, m: &MonitorMatch) -> Text {
    let vars = template::variables(m);
    let markup = channels::Markup::of(&trigger.spec);
    let escaped = |v: &str| markup.escape(v);
    match &trigger.spec.message {
        Some(msg) => Text {
            title: template::render_with(&msg.title, &vars, &escaped),
            body: template::render_with(&msg.body, &vars, &escaped),
            plain: template::render(&msg.body, &vars),
        },
        None => Text { title: String::new(), body: String::new(), plain: String::new() },
    }
}

/// What chat and email say to retract `original` (the notification of `m` with key `key`).
fn retraction_text(trigger: &ResolvedTrigger, m: &MonitorMatch, original: &Text, key: &str) -> Text {
    let markup = channels::Markup::of(&trigger.spec);
    let say = |escape: &dyn Fn(&str) -> String| {
        format!(
            "Retracted: block {} ({}) of {} was replaced by a reorg, so the notification of monitor {} about transaction {} no longer holds (Idempotency-Key {}).",
            m.block.number,
            escape(&m.block.hash),
            escape(&m.network),
            escape(&m.monitor.display_name),
            escape(&m.transaction_hash()),
            escape(key),
        )
    };
    let title = match original.title.as_str() {
        "" => "Retracted notification".to_string(),
        t => format!("Retracted: {t}"),
    };
    Text { title, body: say(&|v| markup.escape(v)), plain: say(&|v| v.to_string()) }
}

/// Whose a delivery to `trigger` of namespace `ns` is.
fn sender(ns: &str, trigger: &str, snapshot: &Snapshot) -> Sender {
    Sender {
        namespace: ns.to_string(),
        trigger: trigger.to_string(),
        tenant: snapshot.tenant_of(ns).map(|t| t.name.clone()),
    }
}

impl NotifyStage {
    /// Records a delivered (or retracted) key; a broker that does not take it after a few tries
    /// leaves it known to this worker only.
    async fn remember(&self, key: &str, sender: Sender) {
        let mut tries = 0;
        while let Err(e) = self.delivered.record(key, &sender).await {
            tries += 1;
            tracing::warn!(error = %e, "recording a delivery failed; retrying");
            if tries > 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200 * tries)).await;
        }
    }

    /// A `final` notification goes after its `seen` one: a `seen` delivery in progress ends first;
    /// one not delivered (retrying, put aside, dead-lettered, or never taken up: its block was
    /// final when first read) is superseded, so it is never sent after the `final` one.
    async fn after_seen(&self, m: &MonitorMatch, trigger_name: &str, snapshot: &Snapshot) {
        let seen = m.seen_key(trigger_name);
        let superseded = superseded_key(&seen);
        loop {
            if self.delivered.contains(&seen) || self.delivered.contains(&superseded) {
                return;
            }
            if let Some(_nobody) = self.delivered.claim(&seen) {
                // recorded while no seen delivery can start: one that comes due later finds it
                self.remember(&superseded, sender(&m.monitor.key.namespace, trigger_name, snapshot)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A reorg notice: every match this worker took up for a replaced block is retracted.
    async fn reorg(&self, reorg: &ReorgRecord, source: &str) {
        let gone = self.recent.replaced(reorg);
        let blocks: Vec<u64> = reorg.replaced.iter().map(|b| b.number).collect();
        tracing::warn!(network = %reorg.network, ?blocks, matches = gone.len(), "reorg: retracting the replaced blocks' notifications");
        futures::future::join_all(gone.iter().map(|r| self.retract(r, None, source))).await;
    }

    /// Retracts a match of a replaced block: to `only` that trigger (a retry's), or every trigger
    /// of its monitor (counted on the Monitor once).
    async fn retract(&self, record: &MatchRecord, only: Option<&str>, source: &str) {
        let m = &record.matched;
        let triggers: Vec<&str> = match only {
            Some(t) => vec![t],
            None => m.monitor.triggers.iter().map(String::as_str).collect(),
        };
        let done =
            futures::future::join_all(triggers.iter().map(|t| self.retract_one(record, t, source))).await;
        // a copy of a match retracted before changes nothing
        if only.is_none() && done.contains(&true) {
            self.status.retracted(&m.monitor.key);
        }
    }

    /// Retracts one trigger's notification of a replaced block: a retraction if it was delivered
    /// (once: its own key is recorded), else it is marked so that it never is. `false`: it was
    /// retracted before.
    async fn retract_one(&self, record: &MatchRecord, trigger_name: &str, source: &str) -> bool {
        let m = &record.matched;
        let ns = &m.monitor.key.namespace;
        let snapshot = self.config.borrow().clone();
        let key = m.idempotency_key(trigger_name);
        let retracted = retraction_key(&key);
        let Some(_retracting) = self.delivered.claim(&retracted) else {
            self.metrics.duplicate();
            return false;
        };
        // a delivery in progress ends first: delivered, or put aside for a retry
        let delivered = loop {
            if self.delivered.contains(&key) {
                break true;
            }
            if let Some(_nobody) = self.delivered.claim(&key) {
                // recorded while no delivery can start: a retry that comes due finds it
                self.remember(&retracted, sender(ns, trigger_name, &snapshot)).await;
                break false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if !delivered {
            self.metrics.retraction(Retraction::Withheld);
            tracing::info!(monitor = %m.monitor.key, trigger = trigger_name, block = m.block.number, "withholding a notification of a block a reorg replaced");
            return true;
        }
        let Some(trigger) = snapshot.triggers.get(&(ns.clone(), trigger_name.to_string())).cloned() else {
            self.metrics.retraction(Retraction::DeadLettered);
            let detail = format!("Trigger {ns}/{trigger_name} does not exist: its retraction cannot be sent");
            self.dead_letter(source, Some(record), Some(trigger_name), Reason::TriggerNotFound, &detail, 0)
                .await;
            return true;
        };
        let channel = trigger.spec.channel().unwrap_or("unknown");
        let original = rendered(&trigger, m);
        let retraction = retraction_text(&trigger, m, &original, &key);
        let mut raw = m.upstream_json();
        payload::phased(&mut raw, m.phase);
        payload::retracted(&mut raw);
        let run_for = snapshot.tenant_of(ns).map_or_else(|| RunFor::tenant(ns), |t| t.run_for());
        let Text { title, body, plain } = original;
        let notification = Notification {
            title,
            body,
            plain,
            raw: &raw,
            idempotency_key: &key,
            run_for: &run_for,
            retraction: Some(retraction),
            phase: m.phase,
        };
        // retried in place by the trigger's policy (a retraction is never put aside)
        let plan = RetryPlan::of(&trigger);
        let first_ms = now_ms();
        let mut attempt = 0;
        let error = loop {
            match self.channels.send(&trigger, &notification).await {
                Ok(()) => {
                    self.remember(&retracted, sender(ns, trigger_name, &snapshot)).await;
                    self.metrics.retraction(Retraction::Sent);
                    tracing::info!(monitor = %m.monitor.key, trigger = trigger_name, channel, block = m.block.number, tx = %m.transaction_hash(), "retraction delivered");
                    return true;
                }
                Err(e) if e.is_transient() => {
                    let outage = matches!(e, DeliveryError::Transient(_));
                    let Some(delay) = plan.delay(attempt, outage, first_ms, now_ms()) else { break e };
                    self.metrics.retry(channel);
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                }
                Err(e) => break e,
            }
        };
        self.metrics.retraction(Retraction::DeadLettered);
        let message = redact::scrub(&format!("retraction: {error}"), trigger.secret_values());
        let reason = match &error {
            DeliveryError::Permanent(_) => Reason::Rejected,
            _ => Reason::RetriesExhausted,
        };
        self.dead_letter(source, Some(record), Some(trigger_name), reason, &message, attempt + 1).await;
        self.status.failed(ns, trigger_name, error.reason(), &message);
        true
    }
}

/// Sleeps until a wall-clock time (milliseconds since the epoch).
async fn sleep_until_ms(due_ms: u64) {
    tokio::time::sleep(Duration::from_millis(due_ms.saturating_sub(now_ms()))).await;
}
