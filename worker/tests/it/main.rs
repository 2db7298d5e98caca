//! The worker's stages in-process: mainnet block 18,000,000 through the filter stage, its matches
//! through the notify stage to real local HTTP and SMTP receivers, over the in-memory bus.
//! (The same stages over Kafka, as separate processes, are tested end to end in the CLI crate.)

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chainwatch_core::block::{Block, EvmBlock};
use chainwatch_crds::{Monitor, Tenant, Trigger};
use chainwatch_devkit::receivers::{HttpReceiver, SmtpReceiver};
use chainwatch_platform::bus::memory::MemoryBus;
use chainwatch_platform::bus::{
    BusError, Consumer, DEADLETTER_TOPIC, DEFERRED_TOPIC, MATCHES_TOPIC, NOTIFY_GROUP, Producer,
    blocks_topic, filter_group,
};
use chainwatch_platform::codec::{BlockRecord, BlockTopicRecord, DeadLetterRecord, MatchRecord, now_ms};
use chainwatch_worker::config::{Admission, ConfigStore};
use chainwatch_worker::metrics::WorkerMetrics;
use chainwatch_worker::notify::destination::DestinationPolicy;
use chainwatch_worker::stages::{StageSettings, Stages};
use chainwatch_worker::status::{NoStatus, StatusSink};
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const NS: &str = "acme";
const USDT: &str = "0xdac17f958d2ee523a2206206994597c13d831ec7";

fn fixtures() -> PathBuf {
    std::env::var("CHAINWATCH_FIXTURES").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(
            std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("../../shared/fixtures")
    })
}

fn rpc_result(rel: &str) -> Value {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("ethereum-mainnet-rpc").join(rel)).unwrap(),
    )
    .unwrap();
    v[0]["response"]["result"].clone()
}

fn block_18m() -> Block {
    let r = rpc_result("eth_getBlockReceipts/test_02.json");
    Block::Evm(
        EvmBlock::from_rpc(&rpc_result("eth_getBlockByNumber/test_08.json"), r.as_array().unwrap()).unwrap(),
    )
}

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    let data: serde_json::Map<String, Value> = data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    obj(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}, "stringData": data}),
    )
}

fn trigger(name: &str, spec: Value) -> Trigger {
    obj(
        json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "metadata": {"name": name, "namespace": NS}, "spec": spec}),
    )
}

fn fast_retries(max: u32) -> Value {
    json!({"maxRetries": max, "initialBackoff": "10ms", "maxBackoff": "50ms", "jitter": "None"})
}

/// A monitor on USDT transfers above 1,000 USDT: two transactions of block 18,000,000 match.
fn usdt_monitor(triggers: &[&str], extra: Value) -> Monitor {
    let mut spec = json!({
        "displayName": "Large USDT transfer",
        "networks": ["ethereum-mainnet"],
        "addresses": [{"address": USDT, "contractSpec": [
            {"type": "event", "name": "Transfer", "anonymous": false, "inputs": [
                {"indexed": true, "name": "from", "type": "address"}, {"indexed": true, "name": "to", "type": "address"},
                {"indexed": false, "name": "value", "type": "uint256"}]}]}],
        "matchConditions": {"events": [{"signature": "Transfer(address,address,uint256)", "expression": "value > 1000000000"}]},
        "triggers": triggers,
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    obj(
        json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Monitor", "metadata": {"name": "usdt-large", "namespace": NS}, "spec": spec}),
    )
}

fn base_store(allow_scripts: bool) -> ConfigStore {
    let store = ConfigStore::new(Admission::Local);
    store.apply_network(obj(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": "ethereum-mainnet"},
        "spec": {"type": "evm", "rpc": [{"url": "http://unused.invalid"}]}})));
    store.apply_tenant(obj::<Tenant>(
        json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": "acme"},
        "spec": {"namespaces": [NS], "limits": {"allowScripts": allow_scripts}}}),
    ));
    store
}

struct Harness {
    bus: MemoryBus,
    store: ConfigStore,
    registry: prometheus_client::registry::Registry,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Harness {
    fn start(store: ConfigStore, policy: DestinationPolicy) -> Self {
        Self::start_with(store, policy, Arc::new(NoStatus))
    }

    fn start_with(store: ConfigStore, policy: DestinationPolicy, status: Arc<dyn StatusSink>) -> Self {
        Self::start_on(store, policy, status, |bus| Arc::new(bus.clone()))
    }

    /// The stages producing through `producer` (made from the bus).
    fn start_on(
        store: ConfigStore,
        policy: DestinationPolicy,
        status: Arc<dyn StatusSink>,
        producer: impl FnOnce(&MemoryBus) -> Arc<dyn Producer>,
    ) -> Self {
        store.rebuild_now();
        let bus = MemoryBus::new();
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = WorkerMetrics::register(&mut registry);
        let stop = CancellationToken::new();
        let producer = producer(&bus);
        let settings = StageSettings {
            filter_concurrency: 2,
            filter_attempts: 3,
            notify_concurrency: 8,
            destinations: policy,
            ..StageSettings::default()
        };
        let stages = Stages::new(settings, producer, store.clone(), metrics, status);
        let filter = stages.filter(
            "ethereum-mainnet",
            Arc::new(bus.consumer(&filter_group("ethereum-mainnet"), &[&blocks_topic("ethereum-mainnet")])),
        );
        let notify = stages.notify(Arc::new(bus.consumer(NOTIFY_GROUP, &[MATCHES_TOPIC, DEFERRED_TOPIC])));
        let tasks = vec![
            tokio::spawn(filter.run(stop.clone())),
            tokio::spawn(notify.run(stop.clone())),
            tokio::spawn({
                let store = store.clone();
                let stop = stop.clone();
                async move { store.run(stop).await }
            }),
        ];
        Self { bus, store, registry, stop, tasks }
    }

    async fn publish_block(&self, block: Block) {
        let rec = BlockTopicRecord::Block(BlockRecord {
            network: "ethereum-mainnet".into(),
            block,
            published_at_ms: now_ms(),
            phase: Default::default(),
        });
        self.bus.send(&blocks_topic("ethereum-mainnet"), "18000000", rec.encode()).await.unwrap();
    }

    fn dead_letters(&self) -> Vec<DeadLetterRecord> {
        self.bus.records(DEADLETTER_TOPIC).iter().map(|(_, v)| DeadLetterRecord::decode(v).unwrap()).collect()
    }

    async fn wait_dead_letters(&self, n: usize) -> Vec<DeadLetterRecord> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while self.bus.len(DEADLETTER_TOPIC) < n && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.dead_letters()
    }

    /// Sum of a metric's samples.
    fn metric(&self, name: &str) -> f64 {
        chainwatch_platform::admin::encode(&self.registry)
            .lines()
            .filter(|l| {
                l.starts_with(name)
                    && (l.len() == name.len() || [' ', '{'].contains(&l.as_bytes()[name.len()].into()))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            t.await.unwrap();
        }
    }
}

/// A producer whose `nth` send to the matches topic fails (a produce failure in the middle of a
/// block's matches); every other send reaches the bus.
struct FailsOnce {
    bus: MemoryBus,
    nth: usize,
    sent: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Producer for FailsOnce {
    async fn send(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<(), BusError> {
        if topic == MATCHES_TOPIC
            && self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == self.nth
        {
            return Err(BusError::Other("injected: the broker did not acknowledge the record".into()));
        }
        self.bus.send(topic, key, payload).await
    }

    async fn flush(&self, timeout: Duration) -> Result<(), BusError> {
        self.bus.flush(timeout).await
    }
}

fn local() -> DestinationPolicy {
    DestinationPolicy { allow: vec!["127.0.0.1".parse().unwrap()] }
}

#[tokio::test]
async fn every_channel_gets_one_notification_per_match_in_upstreams_shape() {
    let hooks = HttpReceiver::start().await;
    let smtp = SmtpReceiver::start().await;
    let store = base_store(false);
    store.apply_secret(secret(
        "hooks",
        &[
            ("slack", &hooks.url("/slack")),
            ("discord", &hooks.url("/discord")),
            ("telegram", "123456789:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ],
    ));
    store.apply_secret(secret("signing", &[("secret", "s3cret")]));
    let message = json!({"title": "${monitor.name}: ${events.0.args.value}", "body": "Transfer of ${events.0.args.value} in ${transaction.hash}${events}"});
    store.apply_trigger(trigger(
        "slack",
        json!({"slack": {"webhookUrlSecretRef": {"name": "hooks", "key": "slack"}}, "message": message}),
    ));
    store.apply_trigger(trigger(
        "discord",
        json!({"discord": {"webhookUrlSecretRef": {"name": "hooks", "key": "discord"}}, "message": message}),
    ));
    store.apply_trigger(trigger("telegram", json!({"telegram": {"tokenSecretRef": {"name": "hooks", "key": "telegram"}, "chatId": "-100", "apiUrl": hooks.url("/tg")}, "message": message})));
    store.apply_trigger(trigger("webhook", json!({"webhook": {"url": hooks.url("/hook"), "secretRef": {"name": "signing", "key": "secret"}, "headers": {"X-Team": "treasury"}}, "message": message})));
    store.apply_trigger(trigger("raw", json!({"webhook": {"url": hooks.url("/raw"), "payloadMode": "Raw"}})));
    store.apply_trigger(trigger("email", json!({"email": {"host": "127.0.0.1", "port": smtp.addr.port(), "tls": "None", "sender": "alerts@acme.example", "recipients": ["ops@acme.example"]}, "message": message})));
    store
        .apply_monitor(usdt_monitor(&["slack", "discord", "telegram", "webhook", "raw", "email"], json!({})));
    let h = Harness::start(store, local());
    h.publish_block(block_18m()).await;

    let got = hooks.wait_for(10, Duration::from_secs(20)).await;
    let mails = smtp.wait_for(2, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // nothing more arrives
    let got_after = hooks.received();
    assert_eq!(
        got_after.len(),
        10,
        "5 HTTP triggers × 2 matches: {:?}",
        got_after.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert_eq!(smtp.mails().len(), 2);
    let by_path = |p: &str| got.iter().filter(|r| r.path == p).cloned().collect::<Vec<_>>();

    // slack: one mrkdwn section with the title in bold
    let slack = by_path("/slack");
    let texts: Vec<String> =
        slack.iter().map(|r| r.json()["blocks"][0]["text"]["text"].as_str().unwrap().to_string()).collect();
    let first = texts.iter().find(|t| t.contains("1285000000")).expect("the 1,285 USDT transfer");
    assert!(first.starts_with("*Large USDT transfer: 1285000000*\n\nTransfer of 1285000000 in 0xc1e64199d60a6420e360ba326f4026eb61a085481baaec99f2f49224f1b1e96a"), "{first}");
    assert!(first.contains("\n\n*Matched Events:*\n\n*Reason 1*\n\n*Signature:* `Transfer(address,address,uint256)`\n\n*Params:*\n\nfrom: `0x"), "{first}");
    // discord and telegram
    assert!(by_path("/discord")[0].json()["content"].as_str().unwrap().starts_with("*Large USDT transfer: "));
    let tg = by_path("/tg/bot123456789:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/sendMessage");
    assert_eq!(tg.len(), 2);
    assert_eq!(tg[0].json()["parse_mode"], "MarkdownV2");
    assert_eq!(tg[0].json()["chat_id"], "-100");
    // the signed webhook: the receiver can verify X-Signature
    for r in by_path("/hook") {
        let body = r.json();
        let ts: u64 = r.header("X-Timestamp").unwrap().parse().unwrap();
        assert_eq!(
            r.header("X-Signature").unwrap(),
            chainwatch_worker::notify::payload::signature("s3cret", &body, ts)
        );
        assert_eq!(r.header("X-Team"), Some("treasury"));
        assert_eq!(r.header("Idempotency-Key").map(str::len), Some(64));
        assert!(body["title"].as_str().unwrap().starts_with("Large USDT transfer: "));
    }
    // raw: upstream's MonitorMatch JSON
    let raw = by_path("/raw");
    let evm = &raw[0].json()["EVM"];
    assert_eq!(evm["network_slug"], "ethereum-mainnet");
    assert_eq!(evm["matched_on_args"]["events"][0]["signature"], "Transfer(address,address,uint256)");
    assert_eq!(evm["monitor"]["name"], "Large USDT transfer");
    // email: subject = title, HTML alternative rendered from the Markdown body
    let mail = mails.iter().find(|m| m.data.contains("1285000000")).unwrap();
    assert_eq!(mail.to, ["ops@acme.example"]);
    assert!(mail.data.contains("Subject: Large USDT transfer: 1285000000"), "{}", mail.data);
    assert!(mail.data.contains("text/html"), "{}", mail.data);
    h.stop().await;
}

#[tokio::test]
async fn a_receiver_failing_three_times_gets_the_notification_once() {
    let hooks = HttpReceiver::start().await;
    hooks.answer_first(&[500, 500, 500]);
    let store = base_store(false);
    store.apply_trigger(trigger("hook", json!({"webhook": {"url": hooks.url("/hook")}, "message": {"title": "t", "body": "${transaction.hash}"}, "retryPolicy": fast_retries(3)})));
    let mut m = usdt_monitor(&["hook"], json!({}));
    m.spec.match_conditions.events[0].expression = Some("value > 1800000000".into()); // only 0x831b4c…
    store.apply_monitor(m);
    let h = Harness::start(store, local());
    h.publish_block(block_18m()).await;
    let got = hooks.wait_for(1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hooks.received().len(), 1, "delivered exactly once");
    assert_eq!(hooks.attempts(), 4, "three failures, then the delivery");
    assert_eq!(got[0].json()["body"], "0x831b4c265b7b03bf169e3760afad30b985632dad46826e3b76705bda64579f96");
    assert!(h.dead_letters().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn a_receiver_that_always_fails_gets_a_dead_letter_and_the_offset_moves_on() {
    let hooks = HttpReceiver::start().await;
    hooks.answer_always(500);
    let store = base_store(false);
    // upstream's behaviour: no outage retries after the quick ones
    let mut policy = fast_retries(2);
    policy["retryFor"] = json!("0s");
    store.apply_trigger(trigger("hook", json!({"webhook": {"url": hooks.url("/hook")}, "message": {"title": "t", "body": "b"}, "retryPolicy": policy})));
    store.apply_monitor(usdt_monitor(&["hook"], json!({})));
    let h = Harness::start(store, local());
    h.publish_block(block_18m()).await;
    let dead = h.wait_dead_letters(2).await;
    assert_eq!(dead.len(), 2);
    for d in &dead {
        assert_eq!(d.stage, "notification");
        assert_eq!(d.trigger.as_deref(), Some("hook"));
        assert_eq!(d.monitor.as_deref(), Some("acme/usdt-large"));
        assert!(d.reason.starts_with("retries_exhausted: HTTP 500"), "{}", d.reason);
        assert_eq!(d.attempts, 3);
    }
    assert_eq!(hooks.attempts(), 6);
    // the group's position is past both matches: a new member of the group gets nothing
    tokio::time::sleep(Duration::from_millis(100)).await;
    let again = h.bus.consumer(NOTIFY_GROUP, &[MATCHES_TOPIC]);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), again.recv()).await.is_err(),
        "the offsets moved on"
    );
    h.stop().await;
}

#[tokio::test]
async fn the_cloud_metadata_address_is_refused() {
    let store = base_store(false);
    store.apply_trigger(trigger("imds", json!({"webhook": {"url": "http://169.254.169.254/latest/meta-data/"}, "message": {"title": "t", "body": "b"}})));
    store.apply_monitor(usdt_monitor(&["imds"], json!({})));
    let h = Harness::start(store, local());
    h.publish_block(block_18m()).await;
    let dead = h.wait_dead_letters(2).await;
    assert_eq!(dead.len(), 2);
    assert!(
        dead[0].reason.starts_with(
            "rejected: destination 169.254.169.254 is a loopback, private, link-local or metadata address"
        ),
        "{}",
        dead[0].reason
    );
    assert_eq!(dead[0].attempts, 1, "refusals are not retried");
    h.stop().await;
}

#[tokio::test]
async fn a_match_delivered_twice_is_notified_once() {
    let hooks = HttpReceiver::start().await;
    let store = base_store(false);
    store.apply_trigger(trigger("hook", json!({"webhook": {"url": hooks.url("/hook")}, "message": {"title": "t", "body": "${transaction.hash}"}})));
    store.apply_monitor(usdt_monitor(&["hook"], json!({})));
    let h = Harness::start(store, local());
    h.publish_block(block_18m()).await;
    hooks.wait_for(2, Duration::from_secs(20)).await;
    // the same block again (a redelivery): its matches produce the same idempotency keys
    h.publish_block(block_18m()).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(hooks.received().len(), 2);
    assert_eq!(h.metric("chainwatch_worker_duplicates_suppressed_total"), 2.0);
    h.stop().await;
}

#[tokio::test]
async fn trigger_conditions_drop_matches_and_need_a_tenant_that_allows_scripts() {
    let hooks = HttpReceiver::start().await;
    let condition = json!({"triggerConditions": [{"language": "Python", "timeout": "5s",
        "source": "import json,sys\nm=json.load(sys.stdin)['monitor_match']['EVM']\nprint('true' if m['matched_on_args']['events'][0]['args'][2]['value']=='1285000000' else 'false')"}]});
    let store = base_store(true);
    store.apply_trigger(trigger("hook", json!({"webhook": {"url": hooks.url("/hook")}, "message": {"title": "t", "body": "${transaction.hash}"}})));
    store.apply_monitor(usdt_monitor(&["hook"], condition.clone()));
    let h = Harness::start(store, local());
    h.publish_block(block_18m()).await;
    hooks.wait_for(1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let bodies: Vec<Value> = hooks.received().iter().map(|r| r.json()["body"].clone()).collect();
    assert_eq!(
        bodies,
        [json!("0x831b4c265b7b03bf169e3760afad30b985632dad46826e3b76705bda64579f96")],
        "the 1,285 USDT match was filtered out"
    );
    h.stop().await;

    let hooks = HttpReceiver::start().await;
    let store = base_store(false);
    store.apply_trigger(trigger(
        "hook",
        json!({"webhook": {"url": hooks.url("/hook")}, "message": {"title": "t", "body": "b"}}),
    ));
    store.apply_monitor(usdt_monitor(&["hook"], condition));
    let h = Harness::start(store, local());
    h.publish_block(block_18m()).await;
    let dead = h.wait_dead_letters(2).await;
    assert!(dead.iter().all(|d| d.reason.starts_with("scripts_not_allowed")), "{dead:?}");
    assert!(hooks.received().is_empty());
    h.stop().await;
}

/// What the notify stage reported.
#[derive(Default)]
struct Reported(std::sync::Mutex<Vec<(String, String, String)>>);

impl StatusSink for Reported {
    fn matched(&self, _: &chainwatch_core::MonitorMatch) {}
    fn delivered(&self, _: &str, trigger: &str) {
        self.0.lock().unwrap().push((trigger.into(), "Delivered".into(), String::new()));
    }
    fn failed(&self, _: &str, trigger: &str, reason: &str, error: &str) {
        self.0.lock().unwrap().push((trigger.into(), reason.into(), error.into()));
    }
    fn retracted(&self, monitor: &chainwatch_core::monitor::MonitorKey) {
        self.0.lock().unwrap().push((monitor.name.clone(), "Retracted".into(), String::new()));
    }
    fn condition_ran(
        &self,
        _: &chainwatch_core::monitor::MonitorKey,
        _: Option<&chainwatch_worker::script::ScriptError>,
    ) {
    }
    fn pending(&self, _: &str, trigger: &str, count: u64, _: Option<&str>) {
        self.0.lock().unwrap().push((trigger.into(), "Pending".into(), count.to_string()));
    }
}

#[tokio::test]
async fn a_misbehaving_script_shows_on_its_trigger_and_the_rest_carry_on() {
    let hooks = HttpReceiver::start().await;
    let store = base_store(true);
    store.apply_trigger(trigger("hook", json!({"webhook": {"url": hooks.url("/hook")}, "message": {"title": "t", "body": "${transaction.hash}"}})));
    store.apply_trigger(trigger("loop", json!({"script": {"language": "Bash", "source": "setsid sleep 60 & while true; do :; done", "timeout": "300ms"}, "retryPolicy": {"maxRetries": 0}})));
    store.apply_monitor(usdt_monitor(&["loop", "hook"], json!({})));
    let reported = Arc::new(Reported::default());
    let h = Harness::start_with(store, local(), reported.clone());
    h.publish_block(block_18m()).await;
    // both matches reach the webhook, while the script trigger times out on each
    hooks.wait_for(2, Duration::from_secs(20)).await;
    h.wait_dead_letters(2).await;
    let failed: Vec<(String, String, String)> =
        reported.0.lock().unwrap().iter().filter(|(t, _, _)| t == "loop").cloned().collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed.iter().all(|(_, reason, e)| reason == "ScriptTimedOut" && e.contains("timeout")),
        "{failed:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_throttled_trigger_sends_what_its_window_allows() {
    let hooks = HttpReceiver::start().await;
    let store = base_store(false);
    store.apply_trigger(trigger("hook", json!({"webhook": {"url": hooks.url("/hook")}, "message": {"title": "t", "body": "b"}, "throttle": {"maxNotifications": 1, "window": "1m"}})));
    store.apply_monitor(usdt_monitor(&["hook"], json!({})));
    let h = Harness::start(store, local());
    h.publish_block(block_18m()).await;
    let dead = h.wait_dead_letters(1).await;
    hooks.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(hooks.received().len(), 1);
    assert!(dead[0].reason.starts_with("throttled"), "{}", dead[0].reason);
    h.stop().await;
}

#[tokio::test]
async fn a_changed_monitor_applies_to_the_next_block() {
    let hooks = HttpReceiver::start().await;
    let store = base_store(false);
    store.apply_trigger(trigger("hook", json!({"webhook": {"url": hooks.url("/hook")}, "message": {"title": "t", "body": "${transaction.hash}"}})));
    let mut m = usdt_monitor(&["hook"], json!({}));
    m.spec.match_conditions.events[0].expression = Some("value > 1800000000".into());
    store.apply_monitor(m.clone());
    let h = Harness::start(store, local());
    h.publish_block(block_18m()).await;
    hooks.wait_for(1, Duration::from_secs(20)).await;
    // a lower threshold: the next copy of the block also matches the 466.05 USDT transfer
    m.spec.match_conditions.events[0].expression = Some("value > 400000000".into());
    h.store.apply_monitor(m);
    let applied = std::time::Instant::now();
    let mut rx = h.store.subscribe();
    while !rx.borrow_and_update().indexes["ethereum-mainnet"].monitors()[0].match_conditions.events[0]
        .expression
        .as_deref()
        .unwrap()
        .contains("400000000")
    {
        tokio::time::timeout(Duration::from_secs(2), rx.changed()).await.expect("a new snapshot").unwrap();
    }
    assert!(applied.elapsed() < Duration::from_secs(1));
    h.publish_block(block_18m()).await;
    let got = hooks.wait_for(2, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bodies: Vec<String> =
        hooks.received().iter().map(|r| r.json()["body"].as_str().unwrap().to_string()).collect();
    // already delivered matches are not repeated; the newly matching one is delivered
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    assert!(
        bodies.contains(&"0x07299f40780ea95a029aa3f2d368f78274fcfc128f3664972f7414704f642803".to_string())
    );
    let _ = got;
    h.stop().await;
}

#[tokio::test]
async fn a_produce_failure_mid_block_leaves_exactly_one_record_per_match() {
    let hooks = HttpReceiver::start().await;
    let store = base_store(false);
    store.apply_trigger(trigger("hook", json!({"webhook": {"url": hooks.url("/hook")}, "message": {"title": "t", "body": "${transaction.hash}"}})));
    // every USDT transfer: one match per transaction with a USDT Transfer log
    let mut m = usdt_monitor(&["hook"], json!({}));
    m.spec.match_conditions.events[0].expression = None;
    store.apply_monitor(m);
    let block = block_18m();
    let Block::Evm(evm) = &block else { unreachable!() };
    // keccak256("Transfer(address,address,uint256)")
    let transfer_topic = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";
    let expected: std::collections::BTreeSet<String> = evm
        .transactions
        .iter()
        .filter(|tx| {
            tx.logs().iter().any(|l| {
                format!("{:#x}", l.address) == USDT
                    && l.topics.first().is_some_and(|t| format!("{t:#x}") == transfer_topic)
            })
        })
        .map(|tx| format!("{:#x}", tx.hash))
        .collect();
    assert!(expected.len() >= 5, "the block has {} USDT transfers", expected.len());
    let h = Harness::start_on(store, local(), Arc::new(NoStatus), |bus| {
        Arc::new(FailsOnce { bus: bus.clone(), nth: 3, sent: Default::default() })
    });
    h.publish_block(block).await;
    hooks.wait_for(expected.len(), Duration::from_secs(20)).await;
    let records: Vec<String> = h
        .bus
        .records(MATCHES_TOPIC)
        .iter()
        .map(|(_, v)| MatchRecord::decode(v).unwrap().matched.transaction_hash())
        .collect();
    let distinct: std::collections::BTreeSet<String> = records.iter().cloned().collect();
    assert_eq!(distinct, expected, "one record for each transaction with a USDT transfer");
    assert_eq!(records.len(), expected.len(), "no record twice: {} records", records.len());
    assert_eq!(h.metric("chainwatch_worker_match_resends_total"), 1.0);
    assert!(h.dead_letters().is_empty());
    h.stop().await;
}

/// A reorg that replaces block 18,000,000 retracts what was delivered for it — once per trigger,
/// in each channel's shape, under the original Idempotency-Key — and withholds what was not yet
/// delivered (a receiver that was down: its retry, when due, sends nothing); the replaced block's
/// matches read again after the reorg notify nothing.
#[tokio::test]
async fn a_reorg_retracts_what_was_delivered_for_a_replaced_block_and_withholds_the_rest() {
    let hooks = HttpReceiver::start().await;
    let down = HttpReceiver::start().await;
    down.answer_always(503);
    let smtp = SmtpReceiver::start().await;
    let store = base_store(false);
    store.apply_secret(secret("hooks", &[("slack", &hooks.url("/slack"))]));
    store.apply_secret(secret("signing", &[("secret", "s3cret")]));
    let message = json!({"title": "${monitor.name}: ${events.0.args.value}", "body": "Transfer of ${events.0.args.value} in ${transaction.hash}"});
    store.apply_trigger(trigger(
        "slack",
        json!({"slack": {"webhookUrlSecretRef": {"name": "hooks", "key": "slack"}}, "message": message}),
    ));
    store.apply_trigger(trigger("webhook", json!({"webhook": {"url": hooks.url("/hook"), "secretRef": {"name": "signing", "key": "secret"}}, "message": message})));
    store.apply_trigger(trigger("raw", json!({"webhook": {"url": hooks.url("/raw"), "payloadMode": "Raw"}})));
    store.apply_trigger(trigger("email", json!({"email": {"host": "127.0.0.1", "port": smtp.addr.port(), "tls": "None", "sender": "alerts@acme.example", "recipients": ["ops@acme.example"]}, "message": message})));
    // down for now; its retry comes due 3 s later
    store.apply_trigger(trigger(
        "down",
        json!({"webhook": {"url": down.url("/down")}, "message": message,
        "retryPolicy": {"maxRetries": 3, "initialBackoff": "3s", "maxBackoff": "3s", "jitter": "None"}}),
    ));
    store.apply_monitor(usdt_monitor(&["slack", "webhook", "raw", "email", "down"], json!({})));
    let status = Arc::new(Reported::default());
    let h = Harness::start_with(store, local(), status.clone());
    let block = block_18m();
    let id = block.id();
    h.publish_block(block.clone()).await;
    let originals = hooks.wait_for(6, Duration::from_secs(20)).await;
    smtp.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(originals.len(), 6, "3 HTTP triggers × 2 matches");
    let pending = "chainwatch_worker_notifications_pending_retry";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while h.metric(pending) < 2.0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.metric(pending), 2.0, "the receiver that is down holds both notifications for a retry");

    let reorg = BlockTopicRecord::Reorg(chainwatch_platform::codec::ReorgRecord {
        network: "ethereum-mainnet".into(),
        replaced: vec![id.clone()],
        replacement: vec![chainwatch_core::block::BlockId { hash: format!("0x{:064x}", 1), ..id.clone() }],
        detected_at_ms: now_ms(),
    });
    h.bus.send(&blocks_topic("ethereum-mainnet"), "18000000", reorg.encode()).await.unwrap();
    let retractions = "chainwatch_worker_retractions_total";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while h.metric(retractions) < 10.0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sample = |outcome: &str| h.metric(&format!("{retractions}{{outcome=\"{outcome}\"}}"));
    assert_eq!((sample("sent"), sample("withheld"), sample("dead_lettered")), (8.0, 2.0, 0.0));
    down.answer_always(200);
    // the replaced block read again (a replay): nothing more
    h.publish_block(block).await;
    // the retries come due (3 s) and send nothing
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while h.metric(pending) > 0.0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.metric(pending), 0.0, "the retries came due");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        (down.received().len(), down.attempts()),
        (0, 2),
        "withheld: never delivered, not tried again"
    );

    let got = hooks.received();
    assert_eq!(got.len(), 12, "each of the 6 HTTP notifications retracted once");
    let by_path = |p: &str| got.iter().filter(|r| r.path == p).cloned().collect::<Vec<_>>();
    // webhooks: the same payload with status retracted, under the original key, still signed
    for path in ["/hook", "/raw"] {
        let all = by_path(path);
        let (retracted, first): (Vec<_>, Vec<_>) =
            all.iter().partition(|r| r.header("Chainwatch-Status") == Some("retracted"));
        assert_eq!((first.len(), retracted.len()), (2, 2), "{path}");
        for r in &retracted {
            let body = r.json();
            assert_eq!(body["status"], "retracted", "{path}");
            let key = r.header("Idempotency-Key").unwrap();
            let original = first.iter().find(|o| o.header("Idempotency-Key") == Some(key)).expect("same key");
            let mut expected = original.json();
            expected["status"] = json!("retracted");
            assert_eq!(body, expected, "{path}: the original payload, marked");
            if path == "/hook" {
                let ts: u64 = r.header("X-Timestamp").unwrap().parse().unwrap();
                assert_eq!(
                    r.header("X-Signature").unwrap(),
                    chainwatch_worker::notify::payload::signature("s3cret", &body, ts)
                );
            }
        }
    }
    // chat: a short retraction naming the block and the transaction
    let slack: Vec<String> = by_path("/slack")
        .iter()
        .map(|r| r.json()["blocks"][0]["text"]["text"].as_str().unwrap().to_string())
        .collect();
    let retracted: Vec<&String> =
        slack.iter().filter(|t| t.starts_with("*Retracted: Large USDT transfer: ")).collect();
    assert_eq!(retracted.len(), 2, "{slack:?}");
    assert!(
        retracted.iter().any(|t| t.contains("block 18000000")
            && t.contains("0xc1e64199d60a6420e360ba326f4026eb61a085481baaec99f2f49224f1b1e96a")),
        "{retracted:?}"
    );
    let mails = smtp.mails();
    assert_eq!(mails.len(), 4);
    assert_eq!(
        mails.iter().filter(|m| m.data.contains("Subject: Retracted: Large USDT transfer")).count(),
        2
    );
    let reported = status.0.lock().unwrap().clone();
    let counted =
        reported.iter().filter(|(name, what, _)| name == "usdt-large" && what == "Retracted").count();
    assert_eq!(counted, 2, "the Monitor counts each retracted match once: {reported:?}");
    h.stop().await;
}
