//! Kafka clients with chainwatch's settings: an idempotent producer that waits for all in-sync
//! replicas, consumers that store offsets only for processed records, size limits for blocks with
//! receipts, and topic administration.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use tokio_util::sync::CancellationToken;

use super::offsets::OffsetTracker;
use super::{BusError, Consumer, Message, Producer};

/// Largest record (bytes on the wire) producers send and topics accept: 16 MiB.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Connection settings shared by every client.
#[derive(Clone, Debug, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated.
    #[arg(long = "kafka-bootstrap", env = "KAFKA_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Extra librdkafka properties, `key=value` (repeatable), e.g. `client.rack=eu-west-1a`.
    #[arg(long = "kafka-option", env = "KAFKA_OPTIONS", value_delimiter = ',', value_parser = parse_option)]
    pub options: Vec<(String, String)>,
    /// A directory of librdkafka properties, one file each: a mounted Secret with the SASL
    /// credentials and TLS certificates (see `credentials`). Read for every new client.
    #[arg(long = "kafka-credentials-dir", env = "KAFKA_CREDENTIALS_DIR")]
    pub credentials_dir: Option<std::path::PathBuf>,
}

fn parse_option(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{s}` is not key=value"))
}

/// A comma-separated list of librdkafka properties (`key=value,key=value`), as `--kafka-option`
/// and `KAFKA_OPTIONS` take it; blank entries are skipped. The error gives the position of the
/// first entry that is not `key=value`, not its text (it may hold a value that should have been
/// a secret).
pub fn parse_options(list: &str) -> Result<Vec<(String, String)>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .enumerate()
        .map(|(i, o)| parse_option(o).map_err(|_| format!("entry {} is not key=value", i + 1)))
        .collect()
}

impl KafkaArgs {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self { bootstrap: bootstrap.into(), options: vec![], credentials_dir: None }
    }

    /// The operator's properties: `--kafka-option`s, then the credentials directory's.
    fn own(&self) -> Vec<(String, String)> {
        let mut own = self.options.clone();
        if let Some(dir) = &self.credentials_dir {
            match super::credentials::read(dir) {
                Ok(c) => own.extend(c),
                // the client then fails to authenticate, and says so where it is used
                Err(e) => tracing::error!(error = %e, "Kafka credentials"),
            }
        }
        own
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c.set("socket.keepalive.enable", "true");
        for (k, v) in self.own() {
            c.set(k, v);
        }
        c
    }

    /// Producer settings: idempotent, `acks=all`, sized for large blocks. Records are compressed
    /// by the codec, so the client does not compress again.
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.max.bytes", MAX_MESSAGE_BYTES.to_string())
            .set("compression.type", "none")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "60000")
            .set("queue.buffering.max.kbytes", "262144");
        // the caller's options win
        for (k, v) in self.own() {
            c.set(k, v);
        }
        c
    }

    /// Consumer settings: offsets stored only for processed records and auto-committed from there.
    pub fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("max.partition.fetch.bytes", MAX_MESSAGE_BYTES.to_string())
            .set("fetch.max.bytes", (MAX_MESSAGE_BYTES * 4).to_string())
            .set("receive.message.max.bytes", (MAX_MESSAGE_BYTES * 4 + 65536).to_string())
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000");
        for (k, v) in self.own() {
            c.set(k, v);
        }
        c
    }

    pub fn producer(&self) -> Result<KafkaProducer, BusError> {
        let config = self.producer_config();
        let current = config.create()?;
        Ok(KafkaProducer { config, current: Arc::new(std::sync::RwLock::new((0, current))) })
    }

    pub fn consumer(&self, group: &str, topics: &[&str]) -> Result<KafkaConsumer, BusError> {
        self.member(group, topics, None)
    }

    /// A consumer that is a static member of `group` (`group.instance.id`): restarted with the
    /// same identity (the same pod after a crash), it gets its partitions back at once instead of
    /// waiting for its old session to expire and a rebalance.
    pub fn member(
        &self,
        group: &str,
        topics: &[&str],
        instance: Option<&str>,
    ) -> Result<KafkaConsumer, BusError> {
        let mut config = self.consumer_config(group);
        if let Some(id) = instance {
            config.set("group.instance.id", id);
        }
        let consumer: StreamConsumer = config.create()?;
        consumer.subscribe(topics)?;
        Ok(KafkaConsumer { inner: Arc::new(consumer), offsets: OffsetTracker::default() })
    }

    /// A reader of every partition of `topic` from its beginning, outside any consumer group
    /// (no group join, nothing committed), with each partition's end offset when it started: the
    /// reader has caught up when it has read up to those.
    pub fn reader(
        &self,
        topic: &str,
    ) -> Result<(KafkaConsumer, std::collections::HashMap<i32, i64>), BusError> {
        let mut config = self.consumer_config(&format!("chainwatch-reader-{}", std::process::id()));
        config.set("enable.auto.commit", "false");
        let consumer: StreamConsumer = config.create()?;
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions: Vec<i32> =
            md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
        let mut list = rdkafka::TopicPartitionList::new();
        let mut ends = std::collections::HashMap::new();
        for p in partitions {
            let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
            ends.insert(p, high);
            list.add_partition_offset(topic, p, rdkafka::Offset::Beginning)?;
        }
        consumer.assign(&list)?;
        Ok((KafkaConsumer { inner: Arc::new(consumer), offsets: OffsetTracker::default() }, ends))
    }

    /// Every record `topic` holds now, read from its beginning outside any consumer group: for
    /// tools that look at a whole topic (`chainwatch redeliver`). A topic that does not exist
    /// holds none. Fails if the broker sends nothing for `idle` while records remain.
    pub async fn read_all(&self, topic: &str, idle: Duration) -> Result<Vec<Message>, BusError> {
        let (reader, ends) = self.reader(topic)?;
        let mut remaining: HashMap<i32, i64> = HashMap::new();
        for (p, high) in ends {
            let (low, _) = reader.inner.fetch_watermarks(topic, p, Duration::from_secs(10))?;
            if high > low {
                remaining.insert(p, high);
            }
        }
        let mut out = Vec::new();
        while !remaining.is_empty() {
            let msg = tokio::time::timeout(idle, reader.recv()).await.map_err(|_| {
                BusError::Other(format!("reading {topic}: nothing from the broker for {idle:?}"))
            })??;
            if remaining.get(&msg.partition).is_some_and(|high| msg.offset + 1 >= *high) {
                remaining.remove(&msg.partition);
            }
            out.push(msg);
        }
        Ok(out)
    }

    pub fn admin(&self) -> Result<KafkaAdmin, BusError> {
        Ok(KafkaAdmin { inner: Arc::new(self.base().create()?) })
    }
}

/// The idempotent producer. An idempotent producer that lost its broker can end in a fatal state
/// (`OutOfOrderSequenceNumber`, then `Fatal` for every send, forever); when that happens it is
/// replaced by a new one, and the caller's retry (the ingester resumes after its checkpoint)
/// goes through it.
#[derive(Clone)]
pub struct KafkaProducer {
    config: ClientConfig,
    /// (generation, producer): the generation tells whether a failed producer was replaced yet.
    current: Arc<std::sync::RwLock<(u64, FutureProducer)>>,
}

impl KafkaProducer {
    fn producer(&self) -> (u64, FutureProducer) {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces producer `generation` (if nobody did yet) after a fatal error.
    fn replace(&self, generation: u64, reason: &str) {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if current.0 != generation {
            return;
        }
        match self.config.create::<FutureProducer>() {
            Ok(p) => {
                tracing::warn!(%reason, "the Kafka producer failed fatally: replaced by a new one");
                *current = (generation + 1, p);
            }
            Err(e) => tracing::error!(error = %e, "creating a new Kafka producer failed"),
        }
    }

    /// A send of producer `generation` failed with `e`: replaces the producer if the error is
    /// fatal (the idempotent producer cannot go on after one).
    fn failed(&self, generation: u64, producer: &FutureProducer, e: KafkaError) -> BusError {
        let fatal = producer.client().fatal_error().map(|(_, reason)| reason).or_else(|| {
            matches!(e, KafkaError::MessageProduction(RDKafkaErrorCode::Fatal)).then(|| e.to_string())
        });
        if let Some(reason) = fatal {
            self.replace(generation, &reason);
        }
        BusError::Kafka(e)
    }

    /// Queues every record before awaiting any (so they lie next to each other in a partition,
    /// in this order), then waits until the broker acknowledged each.
    async fn send_queued<'a>(
        &self,
        generation: u64,
        producer: &FutureProducer,
        records: impl Iterator<Item = FutureRecord<'a, str, Vec<u8>>>,
    ) -> Result<(), BusError> {
        let mut queued = Vec::new();
        for record in records {
            match producer.send_result(record) {
                Ok(delivery) => queued.push(delivery),
                Err((e, _)) => return Err(self.failed(generation, producer, e)),
            }
        }
        for delivery in queued {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(self.failed(generation, producer, e)),
                Err(_) => {
                    return Err(BusError::Other("the Kafka producer went away before acknowledging".into()));
                }
            }
        }
        Ok(())
    }

    /// The broker's metadata answers (blocking: run it off the async threads).
    pub fn reachable(&self, timeout: Duration) -> Result<(), BusError> {
        let (_, p) = self.producer();
        p.client().fetch_metadata(None, timeout)?;
        Ok(())
    }
}

#[async_trait]
impl Producer for KafkaProducer {
    async fn send(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<(), BusError> {
        let (generation, producer) = self.producer();
        let record = FutureRecord::to(topic).key(key).payload(&payload);
        match producer.send(record, Duration::from_secs(30)).await {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(self.failed(generation, &producer, e)),
        }
    }

    async fn broadcast(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<(), BusError> {
        let (generation, producer) = self.producer();
        let client = producer.clone();
        let name = topic.to_string();
        let partitions = tokio::task::spawn_blocking(move || {
            let metadata = client.client().fetch_metadata(Some(&name), Duration::from_secs(10))?;
            Ok::<_, KafkaError>(metadata.topics().first().map_or(0, |t| t.partitions().len() as i32))
        })
        .await
        .map_err(|e| BusError::Other(format!("reading the partitions of {topic}: {e}")))??;
        if partitions == 0 {
            return Err(BusError::Other(format!("topic {topic} has no partitions (does it exist?)")));
        }
        let records =
            (0..partitions).map(|p| FutureRecord::to(topic).key(key).payload(&payload).partition(p));
        self.send_queued(generation, &producer, records).await
    }

    async fn send_all(&self, topic: &str, key: &str, payloads: Vec<Vec<u8>>) -> Result<(), BusError> {
        let (generation, producer) = self.producer();
        // every record is queued before any is awaited: nothing sent meanwhile lands in between
        let records = payloads.iter().map(|payload| FutureRecord::to(topic).key(key).payload(payload));
        self.send_queued(generation, &producer, records).await
    }

    async fn flush(&self, timeout: Duration) -> Result<(), BusError> {
        let (_, p) = self.producer();
        tokio::task::spawn_blocking(move || p.flush(timeout))
            .await
            .map_err(|e| BusError::Other(e.to_string()))??;
        Ok(())
    }
}

/// A consumer that stores a partition's position only past processed records.
pub struct KafkaConsumer {
    inner: Arc<StreamConsumer>,
    offsets: OffsetTracker,
}

impl KafkaConsumer {
    /// Partitions assigned to this member now.
    pub fn assigned(&self) -> Result<usize, BusError> {
        Ok(self.inner.assignment()?.count())
    }

    /// Consumer lag per partition (high watermark − position) of the assigned partitions.
    pub fn lag(&self) -> Result<i64, BusError> {
        let assignment = self.inner.assignment()?;
        let positions = self.inner.position()?;
        let mut total = 0;
        for e in assignment.elements() {
            let (_, high) = self.inner.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(5))?;
            let pos = positions
                .find_partition(e.topic(), e.partition())
                .and_then(|p| p.offset().to_raw())
                .unwrap_or(0)
                .max(0);
            total += (high - pos).max(0);
        }
        Ok(total)
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn recv(&self) -> Result<Message, BusError> {
        let m = self.inner.recv().await?;
        let msg = Message {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        };
        self.offsets.received(&msg.topic, msg.partition, msg.offset);
        Ok(msg)
    }

    fn done(&self, msg: &Message) {
        if let Some(next) = self.offsets.done(&msg.topic, msg.partition, msg.offset) {
            // librdkafka commits the stored offset + 1: store the last record before `next`
            if let Err(e) = self.inner.store_offset(&msg.topic, msg.partition, next - 1) {
                // the partition was revoked meanwhile: its new owner resumes from the committed
                // position and may redeliver (at-least-once)
                tracing::debug!(error = %e, source = %msg.source(), "offset not stored");
                self.offsets.forget(&msg.topic, msg.partition);
            }
        }
    }

    async fn commit(&self) -> Result<(), BusError> {
        let c = self.inner.clone();
        let r = tokio::task::spawn_blocking(move || c.commit_consumer_state(CommitMode::Sync))
            .await
            .map_err(|e| BusError::Other(e.to_string()))?;
        match r {
            Ok(()) => Ok(()),
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn topic_configs(spec: &TopicSpec) -> Vec<(&'static str, String)> {
    let mut c = vec![("max.message.bytes", MAX_MESSAGE_BYTES.to_string())];
    if let Some(r) = spec.retention_ms {
        c.push(("retention.ms", r.to_string()));
    }
    if spec.compact {
        c.push(("cleanup.policy", "compact,delete".to_string()));
    }
    c
}

/// Topic administration.
#[derive(Clone)]
pub struct KafkaAdmin {
    inner: Arc<AdminClient<DefaultClientContext>>,
}

/// A topic as chainwatch wants it.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// `None`: the broker's default.
    pub replication_factor: Option<i32>,
    pub retention_ms: Option<i64>,
    /// Log compaction (keep the newest record per key) instead of deletion by age only.
    pub compact: bool,
}

impl KafkaAdmin {
    /// Creates the topic, or raises its partition count (never lowers it: Kafka cannot), then sets
    /// its configuration (size limit, retention). Returns the partitions it has afterwards.
    pub async fn ensure_topic(&self, spec: &TopicSpec) -> Result<i32, BusError> {
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(15)));
        let partitions = match self.partitions(&spec.name).await? {
            None => {
                let replication =
                    spec.replication_factor.map_or(TopicReplication::Fixed(-1), TopicReplication::Fixed);
                let mut topic = NewTopic::new(&spec.name, spec.partitions, replication);
                let configs = topic_configs(spec);
                for (k, v) in &configs {
                    topic = topic.set(k, v);
                }
                for r in self.inner.create_topics([&topic], &opts).await? {
                    match r {
                        Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((name, code)) => {
                            return Err(BusError::Other(format!("creating topic {name}: {code}")));
                        }
                    }
                }
                spec.partitions
            }
            Some(n) if n < spec.partitions => {
                let parts = NewPartitions::new(&spec.name, spec.partitions as usize);
                for r in self.inner.create_partitions([&parts], &opts).await? {
                    if let Err((name, code)) = r {
                        return Err(BusError::Other(format!("adding partitions to {name}: {code}")));
                    }
                }
                spec.partitions
            }
            Some(n) => n,
        };
        // Also applied to existing topics, and because some brokers ignore configs sent with
        // CreateTopics.
        let configs = topic_configs(spec);
        let mut alter = AlterConfig::new(ResourceSpecifier::Topic(&spec.name));
        for (k, v) in &configs {
            alter = alter.set(k, v);
        }
        for r in self.inner.alter_configs([&alter], &opts).await? {
            if let Err((_, code)) = r {
                return Err(BusError::Other(format!("configuring topic {}: {code}", spec.name)));
            }
        }
        Ok(partitions)
    }

    /// Keeps `specs` on the broker until `stop`: every `every`, topics that are missing (a broker
    /// that came back without its data, a topic deleted by hand) are created again, so that
    /// publishes and reads waiting for them go on. The first check runs after `every`.
    pub async fn keep_topics(&self, specs: Vec<TopicSpec>, every: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let Ok(present) = self.topics().await else { continue }; // unreachable: the health check says so
            for spec in specs.iter().filter(|s| !present.contains_key(&s.name)) {
                match self.ensure_topic(spec).await {
                    Ok(_) => {
                        tracing::warn!(topic = %spec.name, "a topic was missing on the broker (a broker that lost its data, or a topic deleted): created it again")
                    }
                    Err(e) => {
                        tracing::warn!(topic = %spec.name, error = %e, "a topic is missing on the broker and creating it again failed")
                    }
                }
            }
        }
    }

    /// Partitions of a topic, `None` if it does not exist. (Lists all topics: asking for one by
    /// name would auto-create it on brokers that allow that.)
    pub async fn partitions(&self, topic: &str) -> Result<Option<i32>, BusError> {
        Ok(self.topics().await?.get(topic).copied().filter(|&n| n > 0))
    }

    /// Deletes a topic (missing topics are fine).
    pub async fn delete_topic(&self, topic: &str) -> Result<(), BusError> {
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(15)));
        for r in self.inner.delete_topics(&[topic], &opts).await? {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((name, code)) => return Err(BusError::Other(format!("deleting topic {name}: {code}"))),
            }
        }
        Ok(())
    }

    /// All topics (without errors) and their partition counts. The metadata request blocks, so
    /// it runs on the blocking pool.
    pub async fn topics(&self) -> Result<HashMap<String, i32>, BusError> {
        let admin = self.inner.clone();
        let md =
            tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(None, Duration::from_secs(10)))
                .await
                .map_err(|e| BusError::Other(e.to_string()))??;
        Ok(md
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_string(), t.partitions().len() as i32))
            .collect())
    }
}
