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

pub mod channels;
pub mod dedup;
pub mod destination;
pub mod lanes;
pub mod payload;
pub mod throttle;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chainwatch_core::MonitorMatch;
use chainwatch_core::template;
use chainwatch_crds::common::Jitter;
use chainwatch_platform::bus::{Consumer, DEADLETTER_TOPIC, DEFERRED_TOPIC, Message, Producer};
use chainwatch_platform::codec::{DeadLetterRecord, DeferredRecord, Kind, MatchRecord, now_ms, peek_kind};
use chainwatch_platform::{Backoff, redact};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{ResolvedTrigger, Snapshot};
use crate::metrics::WorkerMetrics;
use crate::script::{RunFor, ScriptRunner, script_input};
use crate::status::StatusSink;
use channels::{Channels, DeliveryError, Notification};
use dedup::{DeliveredLog, Sender};
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
    pub(crate) throttles: Arc<Throttles>,
    pub(crate) status: Arc<dyn StatusSink>,
    pub(crate) metrics: WorkerMetrics,
    /// Records held at most (in flight, waiting in a lane, or due later), all tenants.
    pub(crate) concurrency: usize,
    pub(crate) fairness: lanes::Fairness,
}

/// One unit of work: a match (all its triggers), or one trigger's retry.
struct Job {
    msg: Arc<Message>,
    record: MatchRecord,
    trigger: Option<String>,
    attempts: u32,
    deferrals: u32,
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
    },
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
    /// The lane a match belongs to: its namespace's tenant.
    fn lane_of(&self, record: &MatchRecord) -> String {
        let ns = &record.matched.monitor.key.namespace;
        self.config.borrow().tenant_of(ns).map_or_else(|| ns.clone(), |t| t.name.clone())
    }

    /// Consumes until `stop`, then finishes the notifications in progress and commits.
    pub async fn run(self, stop: CancellationToken) {
        let stage = Arc::new(self);
        let mut lanes: lanes::Lanes<Job> = lanes::Lanes::new(stage.fairness);
        let mut timers: lanes::Timers<Job> = lanes::Timers::default();
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
                        stage.clone().arrived(Arc::new(msg), &mut lanes, &mut timers, &mut running)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "consuming notifications failed");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                },
                Some(done) = running.join_next(), if !running.is_empty() => {
                    let Ok((lane, msg)) = done else { continue };
                    stage.consumer.done(&msg);
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
        // in flight: finished; waiting and due later: not done, so read again after a restart
        while let Some(done) = running.join_next().await {
            if let Ok((_, msg)) = done {
                stage.consumer.done(&msg);
            }
        }
        if let Err(e) = stage.consumer.commit().await {
            tracing::warn!(error = %e, "committing notification offsets on shutdown failed");
        }
        tracing::info!(waiting = lanes.waiting(), due_later = timers.len(), "notify stopped");
    }

    /// A record arrived: a match, or a deferred notification (now due, or held until it is).
    fn arrived(
        self: Arc<Self>,
        msg: Arc<Message>,
        lanes: &mut lanes::Lanes<Job>,
        timers: &mut lanes::Timers<Job>,
        running: &mut tokio::task::JoinSet<(Option<String>, Arc<Message>)>,
    ) {
        let decoded = match peek_kind(&msg.payload) {
            Ok(Kind::Deferred) => DeferredRecord::decode(&msg.payload).map(|d| {
                let due = d.due_at_ms;
                (
                    Job {
                        msg: msg.clone(),
                        record: d.record,
                        trigger: d.trigger,
                        attempts: d.attempts,
                        deferrals: d.deferrals,
                    },
                    due,
                )
            }),
            _ => MatchRecord::decode(&msg.payload)
                .map(|r| (Job { msg: msg.clone(), record: r, trigger: None, attempts: 0, deferrals: 0 }, 0)),
        };
        match decoded {
            Err(e) => {
                running.spawn(async move {
                    self.dead_letter(&msg.source(), None, None, None, "undecodable", &e.to_string(), 1, None)
                        .await;
                    (None, msg)
                });
            }
            Ok((job, due)) if due > now_ms() => {
                if timers.len() < MAX_TIMERS {
                    timers.push(due, job);
                } else {
                    // too many held: back to the topic, same due time
                    running.spawn(async move {
                        self.defer(&job, job.trigger.clone(), job.attempts, job.deferrals, due, "retry")
                            .await;
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
                    self.defer(&job, job.trigger.clone(), job.attempts, job.deferrals + 1, due, "backlog")
                        .await;
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

    /// Puts a notification aside on the deferred topic (keyed by tenant), due at `due_ms`.
    async fn defer(
        &self,
        job: &Job,
        trigger: Option<String>,
        attempts: u32,
        deferrals: u32,
        due_ms: u64,
        reason: &str,
    ) {
        let record = DeferredRecord {
            record: job.record.clone(),
            trigger,
            attempts,
            deferrals,
            due_at_ms: due_ms,
            reason: reason.into(),
        };
        let key = self.lane_of(&job.record);
        let backoff = Backoff::default();
        let mut attempt = 0;
        while let Err(e) = self.producer.send(DEFERRED_TOPIC, &key, record.encode()).await {
            tracing::error!(error = %e, "putting a notification aside failed; retrying");
            tokio::time::sleep(backoff.delay(attempt.min(6))).await;
            attempt += 1;
        }
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

    /// Handles one job: a match (its trigger conditions, then every trigger), or one trigger's
    /// retry.
    async fn process(&self, job: &Job) {
        let msg = &job.msg;
        let record = &job.record;
        let m = &record.matched;
        if job.trigger.is_none() && job.deferrals == 0 {
            self.status.matched(m);
        }
        let raw = m.upstream_json();
        let snapshot = self.config.borrow().clone();
        if job.trigger.is_none() && !m.monitor.trigger_conditions.is_empty() {
            let tenant = snapshot.tenant_of(&m.monitor.key.namespace).filter(|t| t.limits.allow_scripts);
            let Some(tenant) = tenant else {
                let detail =
                    "the monitor has trigger-condition scripts but its tenant does not allow scripts";
                self.dead_letter(
                    &msg.source(),
                    Some(m),
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
        let triggers: Vec<&String> = match &job.trigger {
            Some(t) => vec![t],
            None => m.monitor.triggers.iter().collect(),
        };
        let deliveries = triggers.into_iter().map(|t| {
            self.deliver(&source, m, &raw, t, &snapshot, record.block_published_at_ms, job.attempts)
        });
        for (t, outcome) in futures::future::join_all(deliveries).await.into_iter().enumerate() {
            if let Delivered::Retry { attempts, due_ms } = outcome {
                let trigger = job.trigger.clone().unwrap_or_else(|| m.monitor.triggers[t].clone());
                self.metrics.deferred("retry");
                self.defer(job, Some(trigger), attempts, job.deferrals, due_ms, "retry").await;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn deliver(
        &self,
        source: &str,
        m: &MonitorMatch,
        raw: &Value,
        trigger_name: &str,
        snapshot: &Snapshot,
        published_at_ms: u64,
        attempts: u32,
    ) -> Delivered {
        let key = m.idempotency_key(trigger_name);
        if self.delivered.contains(&key) {
            self.metrics.duplicate();
            tracing::debug!(monitor = %m.monitor.key, trigger = trigger_name, %key, "already delivered");
            return Delivered::Done;
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
            return Delivered::Done;
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
                    Some(m),
                    Some(trigger_name),
                    Some(&key),
                    "throttled",
                    &format!("the trigger's throttle ({} per {})", th.max_notifications, th.window),
                    0,
                    Some(raw.clone()),
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
                Some(m),
                Some(trigger_name),
                Some(&key),
                "throttled",
                &format!("tenant {} allows {per_minute} notifications per minute", t.name),
                0,
                Some(raw.clone()),
            )
            .await;
            return Delivered::Done;
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
        let mut attempt = attempts;
        let error = loop {
            match self.channels.send(&trigger, &notification).await {
                Ok(()) => {
                    let mut tries = 0;
                    let sender = Sender {
                        namespace: ns.clone(),
                        trigger: trigger_name.to_string(),
                        tenant: tenant.map(|t| t.name.clone()),
                    };
                    while let Err(e) = self.delivered.record(&key, &sender).await {
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
                    return Delivered::Done;
                }
                Err(e) if e.is_transient() && attempt < max_retries => {
                    self.metrics.retry(channel);
                    let error = redact::scrub(&e.to_string(), trigger.secret_values());
                    tracing::debug!(trigger = trigger_name, attempt, %error, "delivery failed; retrying");
                    let delay = backoff.delay(attempt);
                    attempt += 1;
                    if delay >= INLINE_RETRY {
                        // out of the lane: the tenant's other notifications go on meanwhile
                        return Delivered::Retry {
                            attempts: attempt,
                            due_ms: now_ms() + delay.as_millis() as u64,
                        };
                    }
                    tokio::time::sleep(delay).await;
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
        Delivered::Done
    }
}

/// Sleeps until a wall-clock time (milliseconds since the epoch).
async fn sleep_until_ms(due_ms: u64) {
    tokio::time::sleep(Duration::from_millis(due_ms.saturating_sub(now_ms()))).await;
}
