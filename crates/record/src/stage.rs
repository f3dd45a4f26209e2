//! [`Stage`]: what becomes of one outbox event, decided in one place and in one documented order.
//!
//! [`Stage::prepare`] takes an event and the commit time of its Postgres transaction and answers with a
//! [`Prepared::Ready`] record (topic, key, value, headers: what the producer takes) or a
//! [`Prepared::Rejected`] (reason, detail, intended topic), which [`Stage::dead_letter`] turns into the
//! dead-letter record. The checks run in this order; the first that fails decides the reason:
//!
//! 1. `decode_defect`: the WAL decoder could not map the row faithfully.
//! 2. `missing_fields`: a field every event needs (id, aggregate id, event type) is null or empty.
//! 3. `bad_event_name`: the event type breaks the configured naming rule (`kafka.routing.event_name_rule`).
//! 4. routing: `missing_fields` when the topic template needs a field (or event-type part) the event lacks,
//!    `invalid_topic` when the topic is not a legal Kafka name (the only rejections with no intended topic).
//! 5. `missing_fields`: the payload is null.
//! 6. the encoder's own reasons for the value (`invalid_json`, `schema_mismatch`, `unknown_event_type`), then
//!    for the key.
//! 7. `invalid_headers`: the row's headers column is not a JSON object.
//! 8. `too_large`: the record would exceed `kafka.max_message_bytes`.
//!
//! What only the broker side can know (the topic does not exist and creation is off; the producer refuses
//! the size) comes back from the sink as [`outboxd_kafka::Written::Refused`] and is dead-lettered the same way.
//! A registry that cannot answer is no decision: [`RecordError::RegistryUnavailable`], retry the same event.
//! [`Stage::prepare_replay`] is the same path for a dead letter read back (`outboxd dlq replay`).

use crate::encode::PayloadEncoder;
use crate::error::{decided, RecordError};
use crate::headers::{dead_letter_headers, event_headers, DeadLetterInfo, SchemaRef};
use crate::replay::{triage, Triage};
use crate::route::Router;
use outboxd_core::OutboxEvent;
use outboxd_kafka::dead_letter::REPLAYED_FROM;
use outboxd_kafka::{
    DeadLetter, DlqReason, EventNameRule, HeaderName, HeaderValue, ReadyRecord, SinkConfig, TopicName,
};

/// Why an event goes to the dead-letter topic instead of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRejection {
    /// The stable reason code.
    pub reason: DlqReason,
    /// What exactly was wrong (which field, which schema error).
    pub detail: String,
    /// The topic the event would have gone to, when it could be determined.
    pub intended_topic: Option<String>,
}

/// The stage's decision for one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// Produce this record.
    Ready(ReadyRecord),
    /// Dead-letter the event ([`Stage::dead_letter`]) for this reason.
    Rejected(EventRejection),
}

/// The stage's decision for one dead letter read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayPlan {
    /// It now fits: produce this record (the pipeline's headers plus `dlq_replayed_from`).
    Replay(ReadyRecord),
    /// It still does not fit, for this reason: append it to the dead-letter topic again with it.
    StillFailing(EventRejection),
    /// It cannot be replayed whatever the schemas say: append it again as it is.
    Keep {
        /// Why, for the report.
        why: String,
    },
}

/// The pure stage: routing, checks, encoding and headers for each event, by the rules of one configuration.
#[derive(Debug)]
pub struct Stage<E> {
    router: Router,
    name_rule: Option<EventNameRule>,
    encoder: E,
    dlq_topic: TopicName,
    max_message_bytes: usize,
}

impl<E: PayloadEncoder> Stage<E> {
    /// The stage for the sink's routing, dead-letter topic and size limit, encoding with `encoder`.
    pub fn new(kafka: &SinkConfig, encoder: E) -> Result<Stage<E>, RecordError> {
        Ok(Stage {
            router: Router::new(&kafka.routing).map_err(RecordError::Config)?,
            name_rule: kafka.routing.event_name_rule,
            encoder,
            dlq_topic: kafka.dlq_topic.as_str().into(),
            max_message_bytes: kafka.max_message_bytes,
        })
    }

    /// The encoder it runs with.
    pub fn encoder(&self) -> &E {
        &self.encoder
    }

    /// Decides what becomes of `event`, committed at `commit_time_us` (µs since the epoch), in the order the
    /// module documentation gives. `Err` only when no decision can be made (retry or halt).
    pub async fn prepare(&self, event: &OutboxEvent, commit_time_us: i64) -> Result<Prepared, RecordError> {
        let routed = self.router.topic_for(event);
        let intended = routed.as_ref().ok();
        let reject = |reason, detail: String, topic: Option<&TopicName>| {
            Ok(Prepared::Rejected(EventRejection {
                reason,
                detail,
                intended_topic: topic.map(|t| t.to_string()),
            }))
        };
        if let Some(defect) = &event.defect {
            return reject(DlqReason::DecodeDefect, defect.clone(), intended);
        }
        let missing = event.missing_required();
        if !missing.is_empty() {
            let detail = format!("missing or empty: {}", missing.join(", "));
            return reject(DlqReason::MissingFields, detail, intended);
        }
        if let (Some(rule), Some(name)) = (self.name_rule, event.event_type.as_deref()) {
            if let Err(detail) = rule.check(name) {
                return reject(DlqReason::BadEventName, detail, intended);
            }
        }
        let topic = match routed {
            Ok(topic) => topic,
            Err(r) => return reject(r.reason, r.detail, None),
        };
        self.encode(event, commit_time_us, topic, None).await
    }

    /// Steps 5 to 8 for an event whose topic is known; `extra` is one more header at the end (a replay's
    /// `dlq_replayed_from`).
    async fn encode(
        &self,
        event: &OutboxEvent,
        commit_time_us: i64,
        topic: TopicName,
        extra: Option<(HeaderName, HeaderValue)>,
    ) -> Result<Prepared, RecordError> {
        let reject = |reason, detail: String, topic: TopicName| {
            Ok(Prepared::Rejected(EventRejection {
                reason,
                detail,
                intended_topic: Some(topic.to_string()),
            }))
        };
        let (Some(payload), Some(event_type), Some(aggregate_id)) = (
            event.payload.as_deref(),
            event.event_type.as_deref(),
            event.aggregate_id.as_deref(),
        ) else {
            return reject(DlqReason::MissingFields, "the payload is null".into(), topic);
        };
        let value = match decided(self.encoder.encode(&topic, event_type, payload).await)? {
            Ok(v) => v,
            Err(r) => return reject(DlqReason::Encoder(r.reason), r.detail, topic),
        };
        let key = match decided(self.encoder.encode_key(&topic, aggregate_id).await)? {
            Ok(k) => k,
            Err(r) => return reject(DlqReason::Encoder(r.reason), r.detail, topic),
        };
        let schema = SchemaRef {
            id: value.schema_id,
            version: value.version,
        };
        let mut headers = match event_headers(event, commit_time_us, Some(schema)) {
            Ok(h) => h,
            Err(detail) => return reject(DlqReason::InvalidHeaders, detail, topic),
        };
        headers.extend(extra);
        let record = ReadyRecord {
            topic,
            key: Some(key),
            value: Some(value.bytes),
            headers,
        };
        let size = record.size();
        if size > self.max_message_bytes {
            let detail = format!(
                "the record would take {size} bytes; kafka.max_message_bytes is {}",
                self.max_message_bytes
            );
            return reject(DlqReason::TooLarge, detail, record.topic);
        }
        Ok(Prepared::Ready(record))
    }

    /// The dead-letter record of a rejected event: the original payload as value (dropped, and said so in
    /// `dlq_detail`, when even that is too large), the aggregate id as key, `dlq_*` and identity headers.
    pub fn dead_letter(
        &self,
        event: &OutboxEvent,
        commit_time_us: i64,
        rejection: &EventRejection,
    ) -> ReadyRecord {
        let info = DeadLetterInfo {
            reason: rejection.reason,
            detail: &rejection.detail,
            intended_topic: rejection.intended_topic.as_deref(),
        };
        let mut record = ReadyRecord {
            topic: self.dlq_topic.clone(),
            key: event.aggregate_id.as_ref().map(|k| k.as_bytes().to_vec()),
            value: event.payload.clone(),
            headers: dead_letter_headers(event, commit_time_us, &info),
        };
        if record.size() > self.max_message_bytes {
            let dropped = format!(
                "{} (payload of {} bytes dropped: too large for the dead-letter topic)",
                rejection.detail,
                record.value.as_ref().map_or(0, Vec::len)
            );
            let info = DeadLetterInfo {
                detail: &dropped,
                ..info
            };
            record.headers = dead_letter_headers(event, commit_time_us, &info);
            record.value = None;
        }
        record
    }

    /// Decides what becomes of a dead letter read back: kept as it is ([`triage`]), or the event it stands
    /// for through steps 5 to 8 to the topic it was meant for, with `dlq_replayed_from` naming it.
    pub async fn prepare_replay(&self, dl: &DeadLetter) -> Result<ReplayPlan, RecordError> {
        let replayable = match triage(dl) {
            Triage::Keep { why } => return Ok(ReplayPlan::Keep { why }),
            Triage::Replay(r) => r,
        };
        let from = (REPLAYED_FROM.into(), dl.position().into_bytes().into());
        let topic = TopicName::from(replayable.topic.as_str());
        Ok(
            match self
                .encode(&replayable.event, replayable.commit_time_us, topic, Some(from))
                .await?
            {
                Prepared::Ready(record) => ReplayPlan::Replay(record),
                Prepared::Rejected(r) => ReplayPlan::StillFailing(r),
            },
        )
    }
}
