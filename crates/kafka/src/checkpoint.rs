//! The checkpoint record (JSON, key = pipeline id, in a compacted topic) and reading the latest one back with
//! a `read_committed` consumer.
//!
//! Reading waits until the last stable offset of every partition has reached the high watermark seen at the
//! start: another pipeline's open transaction on a shared checkpoint topic would otherwise hide a checkpoint
//! of ours committed after it. Call it only after `init_transactions`, so that no zombie of ours can commit
//! after the read.

use crate::producer::QuietContext;
use crate::stable_end;
use crate::SinkError;
use outboxd_core::{BackfillProgress, Lsn, SlotOrigin};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One checkpoint: the last Postgres transaction carried by a committed Kafka transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The pipeline it belongs to (also the record key).
    pub pipeline_id: String,
    /// Commit LSN of the last Postgres transaction in the Kafka transaction.
    #[serde(with = "outboxd_core::lsn_text")]
    pub commit_lsn: Lsn,
    /// End LSN of that transaction: everything at or below it is in Kafka. This is `C`.
    #[serde(with = "outboxd_core::lsn_text")]
    pub end_lsn: Lsn,
    /// Records (events and dead letters) in that Kafka transaction.
    pub events: u64,
    /// Postgres transactions in that Kafka transaction.
    pub txns: u64,
    /// When it was written (RFC 3339, UTC).
    pub time: String,
    /// Where the slot's stream begins, when outboxd created the slot (carried in every checkpoint since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<SlotOrigin>,
    /// How far the backfill of the rows that predate the slot has come, when one was configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<BackfillProgress>,
}

impl Checkpoint {
    /// The record value.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a record value; the error says what is wrong.
    pub fn from_json(bytes: &[u8]) -> Result<Checkpoint, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// Where to read from and for whom.
#[derive(Debug)]
pub(crate) struct ReadRequest {
    /// Client settings (bootstrap servers, passthrough TLS/SASL).
    pub client: ClientConfig,
    /// The checkpoint topic.
    pub topic: String,
    /// Whose checkpoint.
    pub pipeline_id: String,
    /// How long to wait for the broker and for other producers' open transactions.
    pub timeout: Duration,
}

fn consumer(client: &ClientConfig, isolation: &str) -> Result<BaseConsumer<QuietContext>, KafkaError> {
    let mut c = client.clone();
    c.set("group.id", "outboxd-checkpoint-reader")
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    c.create_with_context(QuietContext)
}

/// Reads the latest checkpoint of one pipeline (blocking: run it on a blocking thread). Broker trouble is
/// [`SinkError::Unavailable`] (restart and try again); a bad record halts.
pub(crate) fn read_latest(req: &ReadRequest) -> Result<Option<Checkpoint>, SinkError> {
    let unavailable = |source| SinkError::Unavailable {
        op: "reading the checkpoint",
        source,
    };
    let (found, partitions) = read_raw(req).map_err(unavailable)?;
    if partitions == 0 {
        return Err(SinkError::Config(format!(
            "checkpoint topic {:?} does not exist: create it (cleanup.policy=compact) or enable kafka.topics.create",
            req.topic
        )));
    }
    let bad = |detail: String| SinkError::Checkpoint {
        pipeline_id: req.pipeline_id.clone(),
        topic: req.topic.clone(),
        detail,
    };
    // A key lives in one partition, unless the partition count changed: then the newest checkpoint wins.
    let mut latest: Option<Checkpoint> = None;
    for (p, offset, value) in found {
        let Some(value) = value else {
            continue; // deleted by a tombstone
        };
        let c = Checkpoint::from_json(&value)
            .map_err(|e| bad(format!("record at partition {p} offset {offset}: {e}")))?;
        if c.pipeline_id != *req.pipeline_id {
            return Err(bad(format!(
                "record at partition {p} offset {offset} names pipeline {:?}",
                c.pipeline_id
            )));
        }
        if latest.as_ref().is_none_or(|l| c.end_lsn > l.end_lsn) {
            latest = Some(c);
        }
    }
    Ok(latest)
}

/// A record keyed by the pipeline id: partition, offset, value (`None`: a tombstone).
type Found = (i32, i64, Option<Vec<u8>>);

/// Each partition's latest record keyed by the pipeline id, and the topic's partition count.
type RawLatest = (Vec<Found>, usize);

/// How many offsets the backward search reads first, at the end of a partition; each further step back reads
/// [`GROWTH`] times more. A checkpoint is written with every Kafka transaction (about 100 a second at the
/// default linger), so the newest one is nearly always in the first window and the read at start-up costs
/// the same after a day of running as after a minute, compacted or not.
const FIRST_WINDOW: i64 = 256;
/// The growth of the window at each step back.
const GROWTH: i64 = 8;

fn read_raw(req: &ReadRequest) -> Result<RawLatest, KafkaError> {
    let deadline = Instant::now() + req.timeout;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let uncommitted = consumer(&req.client, "read_uncommitted")?;
    let committed = consumer(&req.client, "read_committed")?;
    let partitions = stable_end::partitions(&uncommitted, &req.topic, left())?;
    if partitions.is_empty() {
        return Ok((Vec::new(), 0));
    }
    // The end as any reader sees it now; then wait for the last stable offset to pass it.
    let bounds: BTreeMap<i32, (i64, i64)> =
        stable_end::watermarks(&uncommitted, &req.topic, &partitions, left())?
            .into_iter()
            .filter(|(_, (low, high))| high > low)
            .collect();
    for (&p, &(_, high)) in &bounds {
        loop {
            let (_, stable) = committed.fetch_watermarks(&req.topic, p, left())?;
            if stable >= high {
                break;
            }
            if Instant::now() >= deadline {
                return Err(KafkaError::MetadataFetch(
                    rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut found = Vec::new();
    for (&p, &bound) in &bounds {
        found.extend(latest_in_partition(req, &committed, p, bound, deadline)?);
    }
    Ok((found, partitions.len()))
}

/// The last committed record keyed by the pipeline id in partition `p` below `high`: windows read backwards
/// from the end, each [`GROWTH`] times the one before, until one holds such a record or `low` is reached.
fn latest_in_partition(
    req: &ReadRequest,
    committed: &BaseConsumer<QuietContext>,
    p: i32,
    (low, high): (i64, i64),
    deadline: Instant,
) -> Result<Option<Found>, KafkaError> {
    let key = req.pipeline_id.as_bytes();
    let (mut end, mut window) = (high, FIRST_WINDOW);
    while end > low {
        let start = (end - window).max(low);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&req.topic, p, Offset::Offset(start))?;
        committed.assign(&tpl)?;
        let mut found: Option<Found> = None;
        // Records past `end` were looked at by the window before; what counts here is below it.
        let visit = |m: &rdkafka::message::BorrowedMessage<'_>| {
            if m.offset() < end && m.key() == Some(key) {
                found = Some((p, m.offset(), m.payload().map(<[u8]>::to_vec)));
            }
        };
        stable_end::read_to_ends(committed, &BTreeMap::from([(p, end)]), deadline, visit, |_| false)?;
        if found.is_some() {
            return Ok(found);
        }
        end = start;
        window = window.saturating_mul(GROWTH);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_with_postgres_lsn_text() {
        let c = Checkpoint {
            pipeline_id: "orders".into(),
            commit_lsn: Lsn(0x16_B374_D800),
            end_lsn: Lsn(0x16_B374_D848),
            events: 12,
            txns: 3,
            time: "2024-05-01T12:34:56.123456Z".into(),
            origin: None,
            backfill: None,
        };
        let json = String::from_utf8(c.to_json()).unwrap();
        assert!(json.contains(r#""end_lsn":"16/B374D848""#), "{json}");
        assert!(json.contains(r#""pipeline_id":"orders""#), "{json}");
        assert!(!json.contains("origin") && !json.contains("backfill"), "{json}");
        assert_eq!(Checkpoint::from_json(json.as_bytes()), Ok(c.clone()));

        let with_origin = Checkpoint {
            origin: Some(SlotOrigin {
                snapshot: "740:745:740,742".into(),
                committed: "741,743-744".into(),
                lsn: Lsn(0x16_B374_D700),
                time: "2024-05-01T12:00:00Z".into(),
                rows: 150_000,
            }),
            backfill: Some(BackfillProgress {
                after: Some(vec!["2024-05-01 11:59:59+00".into(), "8f1c".into()]),
                rows: 5000,
                done: false,
            }),
            ..c
        };
        let json = String::from_utf8(with_origin.to_json()).unwrap();
        assert!(json.contains(r#""lsn":"16/B374D700""#), "{json}");
        assert_eq!(Checkpoint::from_json(json.as_bytes()), Ok(with_origin));
    }

    #[test]
    fn bad_records_are_errors() {
        assert!(Checkpoint::from_json(b"{}").is_err());
        let bad_lsn =
            br#"{"pipeline_id":"p","commit_lsn":"x","end_lsn":"0/1","events":0,"txns":0,"time":""}"#;
        assert!(Checkpoint::from_json(bad_lsn)
            .unwrap_err()
            .contains("invalid LSN"));
    }
}
