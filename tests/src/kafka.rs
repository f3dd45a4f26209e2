//! Kafka helpers for tests: fresh topics, transactional producers, and whole-topic reads at either isolation.

use outboxd_kafka::stable_end;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// Which records a reader sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Only committed transactional records (what exactly-once consumers use).
    ReadCommitted,
    /// Every record, aborted ones included.
    ReadUncommitted,
}

impl Isolation {
    fn as_str(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// One record read back from a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Partition it was read from.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Key bytes, if any.
    pub key: Option<Vec<u8>>,
    /// Value bytes, if any.
    pub value: Option<Vec<u8>>,
    /// Headers in order, values as raw bytes.
    pub headers: outboxd_kafka::HeaderList,
}

impl Record {
    /// The first header with that name, as UTF-8 text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Creates a topic, succeeding if it already exists; panics with the broker address on any other failure.
pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32, config: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap_or_else(|e| panic!("admin client for {bootstrap}: {e}"));
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in config {
        topic = topic.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics([&topic], &opts)
        .await
        .unwrap_or_else(|e| panic!("CreateTopics {name} on {bootstrap}: {e}. Is the broker up?"));
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => panic!("CreateTopics {t} on {bootstrap}: {code}"),
        }
    }
}

/// Common client settings for tests.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap).set("log_level", "3");
    c
}

/// A transactional producer with `init_transactions` already done.
pub fn transactional_producer(bootstrap: &str, transactional_id: &str) -> FutureProducer {
    let producer: FutureProducer = client_config(bootstrap)
        .set("transactional.id", transactional_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("transaction.timeout.ms", "60000")
        .create()
        .unwrap_or_else(|e| panic!("producer for {bootstrap}: {e}"));
    rdkafka::producer::Producer::init_transactions(&producer, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("init_transactions({transactional_id}) on {bootstrap}: {e}"));
    producer
}

/// How many offsets of `topic` lie between its last stable offset and its high watermark, over all
/// partitions: more than 0 exactly while a transaction that wrote to it is open (neither committed nor
/// aborted). Read with ListOffsets at both isolation levels; panics when the broker does not answer.
pub fn open_transaction_offsets(bootstrap: &str, topic: &str) -> i64 {
    let end = |isolation: Isolation| -> i64 {
        let consumer: BaseConsumer = client_config(bootstrap)
            .set("group.id", crate::unique_name("ends"))
            .set("isolation.level", isolation.as_str())
            .create()
            .unwrap_or_else(|e| panic!("consumer for {bootstrap}: {e}"));
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("metadata of {topic} on {bootstrap}: {e}"));
        metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .map(|p| {
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("watermarks of {topic}/{p} on {bootstrap}: {e}"))
                    .1
            })
            .sum()
    };
    end(Isolation::ReadUncommitted) - end(Isolation::ReadCommitted)
}

/// Reads every record of `topic` from the beginning up to its high watermark as of the call, partition by
/// partition in offset order. With `read_committed` the topic must have no open transaction (the position stops
/// at the last stable offset). Panics when the end is not reached in `timeout`.
pub fn drain(bootstrap: &str, topic: &str, isolation: Isolation, timeout: Duration) -> Vec<Record> {
    let mut records = Vec::new();
    drain_each(bootstrap, topic, isolation, timeout, |r| records.push(r));
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

/// [`drain`] without keeping the records: hands each one to `visit` as it is read (in offset order within a
/// partition, partitions interleaved) and returns how many there were. For topics too big to hold in memory.
pub fn drain_each(
    bootstrap: &str,
    topic: &str,
    isolation: Isolation,
    timeout: Duration,
    mut visit: impl FnMut(Record),
) -> usize {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", crate::unique_name("drain"))
        .set("isolation.level", isolation.as_str())
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap_or_else(|e| panic!("consumer for {bootstrap}: {e}"));
    let partitions = stable_end::partitions(&consumer, topic, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata of {topic} on {bootstrap}: {e}"));
    assert!(
        !partitions.is_empty(),
        "topic {topic} has no partitions (does it exist?)"
    );
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap_or_else(|e| panic!("assign {topic}/{p}: {e}"));
    }
    consumer
        .assign(&tpl)
        .unwrap_or_else(|e| panic!("assign {topic}: {e}"));
    let ends = stable_end::watermarks(&consumer, topic, &partitions, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("watermarks of {topic}: {e}"))
        .into_iter()
        .map(|(p, (_, high))| (p, high))
        .collect();
    let to_record = |m: &BorrowedMessage<'_>| Record {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers: stable_end::headers_of(m),
    };
    let deadline = Instant::now() + timeout;
    // Errors while reading (a broker restarting) are retried by librdkafka: say them and read on.
    let keep_going = |e: &KafkaError| {
        eprintln!("drain {topic}: {e}");
        true
    };
    stable_end::read_to_ends(&consumer, &ends, deadline, |m| visit(to_record(m)), keep_going).unwrap_or_else(
        |e| {
            panic!(
                "draining {topic} ({}): not every partition reached its end in {timeout:?}: {e}",
                isolation.as_str()
            )
        },
    )
}
