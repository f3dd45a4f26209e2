//! Reading the dead-letter topic for a replay: every partition from the replay group's committed offset (its
//! low watermark when none) up to its last stable offset as of the start, with `read_committed` (aborted
//! transactions and control records are never handed out). The end is detected by the consumer's position, not
//! by partition-EOF events (some brokers send none past control records).

use crate::dead_letter::DeadLetter;
use crate::producer::{base_client_config, QuietContext};
use crate::stable_end;
use crate::{SinkConfig, SinkError};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Per partition: where reading resumes and where it stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    /// The next offset to hand out (everything below it is handled).
    next: i64,
    /// The last stable offset at the start: reading stops there.
    end: i64,
}

/// Reads the dead-letter topic up to its end as of [`DlqReader::open`].
pub struct DlqReader {
    consumer: Arc<BaseConsumer<QuietContext>>,
    topic: String,
    spans: BTreeMap<i32, Span>,
    timeout: Duration,
}

impl std::fmt::Debug for DlqReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DlqReader")
            .field("topic", &self.topic)
            .field("spans", &self.spans)
            .finish_non_exhaustive()
    }
}

fn unavailable(op: &'static str) -> impl Fn(KafkaError) -> SinkError {
    move |source| SinkError::Unavailable { op, source }
}

impl DlqReader {
    /// Assigns every partition of `config.dlq_topic` at the group's committed offset (its low watermark when
    /// none), and takes each partition's last stable offset as its end.
    pub async fn open(config: &SinkConfig, group_id: &str) -> Result<DlqReader, SinkError> {
        let mut client = base_client_config(config);
        client
            .set("group.id", group_id)
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer<QuietContext> = client
            .create_with_context(QuietContext)
            .map_err(|e| SinkError::Config(format!("cannot create the dead-letter consumer: {e}")))?;
        let consumer = Arc::new(consumer);
        let (topic, timeout) = (
            config.dlq_topic.clone(),
            Duration::from_millis(config.request_timeout_ms),
        );
        let (c, t) = (Arc::clone(&consumer), topic.clone());
        let spans = tokio::task::spawn_blocking(move || spans(&c, &t, timeout))
            .await
            .map_err(|_| SinkError::Misuse("dead-letter reader panicked"))??;
        let mut tpl = TopicPartitionList::new();
        for (&p, span) in &spans {
            tpl.add_partition_offset(&topic, p, Offset::Offset(span.next))
                .map_err(unavailable("assigning the dead-letter topic"))?;
        }
        consumer
            .assign(&tpl)
            .map_err(unavailable("assigning the dead-letter topic"))?;
        Ok(DlqReader {
            consumer,
            topic,
            spans,
            timeout,
        })
    }

    /// The consumer group's metadata, for `send_offsets_to_transaction`.
    pub(crate) fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        self.consumer.group_metadata()
    }

    /// The dead-letter topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// At most this many dead letters are left to read (fewer when aborted records lie in between).
    pub fn remaining(&self) -> u64 {
        self.spans
            .values()
            .map(|s| u64::try_from(s.end - s.next).unwrap_or(0))
            .sum()
    }

    /// True once every partition was read to its end.
    pub fn is_done(&self) -> bool {
        self.spans.values().all(|s| s.next >= s.end)
    }

    /// The next dead letters, at most `max`, in offset order per partition; empty once [`Self::is_done`].
    /// Each one handed out counts as handled for [`crate::Replayer::commit`].
    pub async fn next_chunk(&mut self, max: usize) -> Result<Vec<DeadLetter>, SinkError> {
        if self.is_done() || max == 0 {
            return Ok(Vec::new());
        }
        let consumer = Arc::clone(&self.consumer);
        let mut spans = self.spans.clone();
        let timeout = self.timeout;
        let (spans, chunk) = tokio::task::spawn_blocking(move || {
            let chunk = read_chunk(&consumer, &mut spans, max, timeout);
            (spans, chunk)
        })
        .await
        .map_err(|_| SinkError::Misuse("dead-letter reader panicked"))?;
        self.spans = spans;
        chunk.map_err(unavailable("reading the dead-letter topic"))
    }

    /// Every partition's next offset: the group's offsets to commit for what was handed out so far. All
    /// partitions are always named, so that any offset of an earlier, aborted attempt is overwritten.
    pub(crate) fn offsets(&self) -> Result<TopicPartitionList, SinkError> {
        let mut tpl = TopicPartitionList::new();
        for (&p, span) in &self.spans {
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(span.next))
                .map_err(unavailable("listing the replay offsets"))?;
        }
        Ok(tpl)
    }
}

/// Every partition's span: from the committed offset (clamped to the partition's low watermark and end) to
/// the last stable offset (a `read_committed` consumer's high watermark).
fn spans(
    consumer: &BaseConsumer<QuietContext>,
    topic: &str,
    timeout: Duration,
) -> Result<BTreeMap<i32, Span>, SinkError> {
    let partitions = stable_end::partitions(consumer, topic, timeout)
        .map_err(unavailable("reading the dead-letter topic's metadata"))?;
    if partitions.is_empty() {
        return Err(SinkError::Config(format!(
            "the dead-letter topic {topic:?} does not exist (kafka.dlq_topic): nothing to replay"
        )));
    }
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, timeout)
        .map_err(unavailable("reading the replay group's offsets"))?;
    let mut out = BTreeMap::new();
    for &p in &partitions {
        let (low, end) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(unavailable("reading the dead-letter topic's offsets"))?;
        let next = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => low,
        };
        out.insert(
            p,
            Span {
                next: next.clamp(low.min(end), end.max(low)),
                end,
            },
        );
    }
    Ok(out)
}

/// Polls until `max` dead letters are read, every partition is at its end, or the records available now are
/// exhausted; fails when nothing moves for `timeout`.
fn read_chunk(
    consumer: &BaseConsumer<QuietContext>,
    spans: &mut BTreeMap<i32, Span>,
    max: usize,
    timeout: Duration,
) -> Result<Vec<DeadLetter>, KafkaError> {
    let mut out = Vec::new();
    let mut deadline = Instant::now() + timeout;
    loop {
        // The position passes control records and aborted transactions, which are never handed out: it is
        // what says a partition is read to its end (some brokers send no partition-EOF there).
        for p in stable_end::reached(consumer, |p| spans.get(&p).map(|s| s.end))? {
            if let Some(span) = spans.get_mut(&p) {
                span.next = span.next.max(span.end);
            }
        }
        if out.len() >= max || spans.values().all(|s| s.next >= s.end) {
            return Ok(out);
        }
        match consumer.poll(Duration::from_millis(100)) {
            None if !out.is_empty() => return Ok(out),
            None if Instant::now() >= deadline => {
                return Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::OperationTimedOut,
                ))
            }
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                if let Some(span) = spans.get_mut(&p) {
                    span.next = span.end;
                }
            }
            Some(Err(e)) => tracing::debug!(error = %e, "dead-letter consumer"),
            Some(Ok(m)) => {
                let Some(span) = spans.get_mut(&m.partition()) else {
                    continue;
                };
                if m.offset() < span.next || m.offset() >= span.end {
                    continue; // already handled, or appended after the start (by us or the pipeline)
                }
                span.next = m.offset() + 1;
                deadline = Instant::now() + timeout;
                out.push(DeadLetter {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers: stable_end::headers_of(&m),
                });
            }
        }
    }
}
