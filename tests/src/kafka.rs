//! Kafka helpers for tests: fresh topics, transactional producers, and whole-topic reads at either isolation.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
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
    pub headers: Vec<(String, Vec<u8>)>,
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
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata of {topic} on {bootstrap}: {e}"));
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
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
    let mut ends = std::collections::BTreeMap::new();
    for p in &partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, *p, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"));
        ends.insert(*p, high);
    }
    let deadline = Instant::now() + timeout;
    // A partition is read to its end when the consumer's position reaches the high watermark taken before
    // reading, or at its partition-EOF event. The position is looked at when the consumer is idle and every
    // 1024 records (not per record: `position()` is costly, and a drain of 1,000,000 records spent most of its
    // time there); it also covers a partition whose last offsets are control records (commit markers).
    let mut at_end: std::collections::BTreeSet<i32> = ends
        .iter()
        .filter(|(_, high)| **high <= 0)
        .map(|(p, _)| *p)
        .collect();
    let mut read = 0usize;
    while at_end.len() < partitions.len() {
        assert!(
            Instant::now() < deadline,
            "draining {topic} ({}): only {} of {} partitions reached their end in {timeout:?} ({read} records read)",
            isolation.as_str(),
            at_end.len(),
            partitions.len(),
        );
        let polled = consumer.poll(Duration::from_millis(200));
        let look = match &polled {
            Some(Ok(_)) => read % 1024 == 1023,
            _ => true,
        };
        match polled {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => eprintln!("drain {topic}: {e}"),
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec).unwrap_or_default()))
                            .collect()
                    })
                    .unwrap_or_default();
                read += 1;
                visit(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
        }
        if !look {
            continue;
        }
        if let Ok(positions) = consumer.position() {
            for e in positions.elements() {
                if let (Offset::Offset(pos), Some(high)) = (e.offset(), ends.get(&e.partition())) {
                    if pos >= *high {
                        at_end.insert(e.partition());
                    }
                }
            }
        }
    }
    read
}
