//! Reading a topic up to its end as of now, once for every reader (the checkpoint at start-up, the dead-letter
//! replay, the tests' audits): the partitions, their ends (high watermarks taken before reading), and the
//! test that a partition is read to its end.
//!
//! The end is detected by the consumer's position reaching the end taken before reading, not by partition-EOF
//! events alone: a partition whose last offsets are control records (transaction markers) or aborted records
//! may never send one to a `read_committed` reader. The position is looked at when the consumer is idle and
//! every 1024 records (`position()` is costly: a drain of 1,000,000 records spent most of its time there).

use crate::{HeaderList, HeaderValue};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Offset;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How often (in records) the position is looked at while records keep coming.
const LOOK_EVERY: usize = 1024;

/// The partitions of `topic`; empty when it does not exist (the broker then lists it with no partitions).
pub fn partitions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// Each partition's (low, high) watermarks now. A partition whose leader is moving or not yet known (just
/// after the topic's creation or a broker's restart: `NotLeaderForPartition`, `LeaderNotAvailable`) is asked
/// again, every 100 ms, until `timeout`; any other error is returned at once.
pub fn watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> Result<BTreeMap<i32, (i64, i64)>, KafkaError> {
    let deadline = Instant::now() + timeout;
    partitions
        .iter()
        .map(|&p| loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match consumer.fetch_watermarks(topic, p, left.max(Duration::from_millis(100))) {
                Err(e) if leader_unknown(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                result => break Ok((p, result?)),
            }
        })
        .collect()
}

/// The broker's leadership for a partition is in flux: asking again shortly is expected to succeed.
fn leader_unknown(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::NotLeaderForPartition | RDKafkaErrorCode::LeaderNotAvailable)
    )
}

/// The partitions whose position has reached the end `end_of` gives for them.
pub fn reached<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    end_of: impl Fn(i32) -> Option<i64>,
) -> Result<Vec<i32>, KafkaError> {
    Ok(consumer
        .position()?
        .elements()
        .iter()
        .filter_map(|e| match (e.offset(), end_of(e.partition())) {
            (Offset::Offset(pos), Some(end)) if pos >= end => Some(e.partition()),
            _ => None,
        })
        .collect())
}

/// Polls an assigned consumer, handing every record to `visit`, until each partition of `ends` is read to
/// its end (its position at the end, or its partition-EOF). A consumer error ends the read unless
/// `keep_going` says otherwise. Returns the records read; `OperationTimedOut` at `deadline`.
pub fn read_to_ends<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    ends: &BTreeMap<i32, i64>,
    deadline: Instant,
    mut visit: impl FnMut(&BorrowedMessage<'_>),
    mut keep_going: impl FnMut(&KafkaError) -> bool,
) -> Result<usize, KafkaError> {
    let mut done: BTreeSet<i32> = ends
        .iter()
        .filter(|(_, &end)| end <= 0)
        .map(|(&p, _)| p)
        .collect();
    let mut read = 0usize;
    while done.len() < ends.len() {
        if Instant::now() >= deadline {
            return Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::OperationTimedOut,
            ));
        }
        let look = match consumer.poll(Duration::from_millis(100)) {
            None => true,
            Some(Err(KafkaError::PartitionEOF(p))) => {
                done.insert(p);
                true
            }
            Some(Err(e)) if keep_going(&e) => true,
            Some(Err(e)) => return Err(e),
            Some(Ok(m)) => {
                read += 1;
                visit(&m);
                read % LOOK_EVERY == 0
            }
        };
        if look {
            done.extend(reached(consumer, |p| ends.get(&p).copied())?);
        }
    }
    Ok(read)
}

/// A record's headers as (name, value bytes), in order; a null value as empty bytes.
pub fn headers_of(m: &BorrowedMessage<'_>) -> HeaderList {
    m.headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        h.key.to_string().into(),
                        h.value.map(HeaderValue::from_slice).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
