//! The `read_committed` consumer that decides when a run is over: it counts distinct events (keys `o-<i>`)
//! until the expected number is visible, notes when the last one arrived, and for latency runs takes
//! `now - commit_time` (the header the sink writes: the Postgres commit timestamp) of every event, or, for a
//! relay that does not carry the commit time, notes when each event became visible.

use crate::timefmt::parse_rfc3339_micros;
use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What to read.
#[derive(Clone, Debug)]
pub struct ConsumerSpec {
    /// Kafka bootstrap servers.
    pub bootstrap: String,
    /// The event topic (all partitions are read from the beginning).
    pub topic: String,
    /// Stop at this instant even when not all events arrived.
    pub deadline: Instant,
    /// Take latencies of events whose index is at least this (`None`: no latencies).
    pub latency_from: Option<u64>,
    /// Instead of `now - commit_time header`, note when each event became visible (`Consumed::visible_us`),
    /// for a relay whose records do not carry the commit time (Debezium's outbox records).
    pub record_visible: bool,
}

/// What the consumer saw.
#[derive(Clone, Debug, Default)]
pub struct Consumed {
    /// Distinct events (by key).
    pub distinct: u64,
    /// Events seen more than once (exactly-once says 0).
    pub duplicates: u64,
    /// Records whose key is not `o-<i>`.
    pub foreign: u64,
    /// Bytes of record values (Confluent-framed Avro).
    pub value_bytes: u64,
    /// When the first event arrived.
    pub first_at: Option<Instant>,
    /// When the last new event arrived, once the expected number was reached.
    pub done_at: Option<Instant>,
    /// Commit-to-visible latencies in microseconds.
    pub latencies_us: Vec<i64>,
    /// Events without a parsable `commit_time` header.
    pub missing_commit_time: u64,
    /// `(event index, microseconds since the epoch)` when each event became visible (`record_visible`).
    pub visible_us: Vec<(u64, i64)>,
}

#[derive(Debug)]
struct Shared {
    expected: AtomicU64,
    distinct: AtomicU64,
    stop: AtomicBool,
}

/// A consumer running on its own thread.
#[derive(Debug)]
pub struct ConsumerHandle {
    shared: Arc<Shared>,
    thread: JoinHandle<Result<Consumed>>,
}

/// Assigns every partition of the topic from the beginning and starts reading on a thread.
pub fn start(spec: ConsumerSpec, expected: Option<u64>) -> Result<ConsumerHandle> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &spec.bootstrap)
        .set("group.id", format!("{}-reader", spec.topic))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .set("max.partition.fetch.bytes", "8388608")
        .set("log_level", "3")
        .create()
        .context("creating the read_committed consumer")?;
    // Just after the topic's creation (or the broker's start) its metadata may list no partitions yet: ask
    // again until it does, for at most 10 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut tpl = TopicPartitionList::new();
    while tpl.count() == 0 {
        let metadata = consumer
            .fetch_metadata(Some(&spec.topic), Duration::from_secs(10))
            .with_context(|| format!("metadata of {}", spec.topic))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                tpl.add_partition_offset(&spec.topic, p.id(), Offset::Beginning)?;
            }
        }
        if tpl.count() == 0 {
            if std::time::Instant::now() >= deadline {
                bail!("topic {} has no partitions after 10 s", spec.topic);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    consumer.assign(&tpl)?;
    let shared = Arc::new(Shared {
        expected: AtomicU64::new(expected.unwrap_or(u64::MAX)),
        distinct: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let s = shared.clone();
    let thread = std::thread::Builder::new()
        .name("bench-consumer".into())
        .spawn(move || read(&consumer, &spec, &s))?;
    Ok(ConsumerHandle { shared, thread })
}

impl ConsumerHandle {
    /// Distinct events seen so far.
    pub fn distinct(&self) -> u64 {
        self.shared.distinct.load(Ordering::Relaxed)
    }

    /// Sets how many distinct events end the run.
    pub fn expect(&self, n: u64) {
        self.shared.expected.store(n, Ordering::Relaxed);
    }

    /// Waits until the expected number arrived or the deadline passed.
    pub fn join(self) -> Result<Consumed> {
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the consumer thread panicked"))?
    }

    /// Stops reading now (on an error elsewhere) and returns what was seen.
    pub fn stop(self) -> Result<Consumed> {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.join()
    }
}

/// A set of event indexes that grows as needed.
#[derive(Debug, Default)]
struct Seen(Vec<u64>);

impl Seen {
    /// Marks `i`; true when it was not marked before.
    fn insert(&mut self, i: u64) -> bool {
        let (word, bit) = ((i / 64) as usize, 1u64 << (i % 64));
        if word >= self.0.len() {
            self.0.resize(word + 1 + word / 2, 0);
        }
        let new = self.0[word] & bit == 0;
        self.0[word] |= bit;
        new
    }
}

fn event_index(key: Option<&[u8]>) -> Option<u64> {
    std::str::from_utf8(key?).ok()?.strip_prefix("o-")?.parse().ok()
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn read(consumer: &BaseConsumer, spec: &ConsumerSpec, shared: &Shared) -> Result<Consumed> {
    let mut out = Consumed::default();
    let mut seen = Seen::default();
    let mut last_new = None;
    loop {
        if out.distinct >= shared.expected.load(Ordering::Relaxed) {
            out.done_at = last_new;
            return Ok(out);
        }
        if shared.stop.load(Ordering::Relaxed) || Instant::now() > spec.deadline {
            return Ok(out);
        }
        let Some(polled) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let m = match polled {
            Ok(m) => m,
            Err(e) => {
                eprintln!("bench consumer: {e}");
                continue;
            }
        };
        let arrived = Instant::now();
        out.first_at.get_or_insert(arrived);
        out.value_bytes += m.payload_len() as u64;
        let Some(i) = event_index(m.key()) else {
            out.foreign += 1;
            continue;
        };
        if !seen.insert(i) {
            out.duplicates += 1;
            continue;
        }
        out.distinct += 1;
        shared.distinct.store(out.distinct, Ordering::Relaxed);
        last_new = Some(arrived);
        if spec.latency_from.is_some_and(|from| i >= from) {
            if spec.record_visible {
                out.visible_us.push((i, now_us()));
                continue;
            }
            let commit = m.headers().and_then(|hs| {
                hs.iter()
                    .find(|h| h.key == "commit_time")
                    .and_then(|h| parse_rfc3339_micros(std::str::from_utf8(h.value?).ok()?))
            });
            match commit {
                Some(t) => out.latencies_us.push(now_us() - t),
                None => out.missing_commit_time += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_counts_each_index_once() {
        let mut s = Seen::default();
        assert!(s.insert(0));
        assert!(s.insert(1_000_000));
        assert!(!s.insert(1_000_000));
        assert!(s.insert(63));
        assert!(!s.insert(0));
    }

    #[test]
    fn keys_name_the_index() {
        assert_eq!(event_index(Some(b"o-42")), Some(42));
        assert_eq!(event_index(Some(b"x-42")), None);
        assert_eq!(event_index(None), None);
    }
}
