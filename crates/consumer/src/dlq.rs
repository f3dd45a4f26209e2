//! The consumer's own dead-letter topic: an event that cannot be decoded, has no event id, or whose handler
//! kept failing is written there (original key, value and headers, plus `consumer_dlq_*` headers) and the
//! partition moves on. The offset is stored only after the broker acknowledged the dead letter.

use crate::event::Fetched;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::time::Duration;

/// Header: why the event was dead-lettered ([`DeadLetterReason::as_str`]).
pub const DLQ_REASON: &str = "consumer_dlq_reason";
/// Header: the details (the handler's error, the decoder's message).
pub const DLQ_DETAIL: &str = "consumer_dlq_detail";
/// Header: the topic the event was read from.
pub const DLQ_SOURCE_TOPIC: &str = "consumer_dlq_source_topic";
/// Header: its partition.
pub const DLQ_SOURCE_PARTITION: &str = "consumer_dlq_source_partition";
/// Header: its offset.
pub const DLQ_SOURCE_OFFSET: &str = "consumer_dlq_source_offset";
/// Header: the consumer group that gave up on it.
pub const DLQ_GROUP: &str = "consumer_dlq_group";
/// Header: how many times the handler was called (0 when it never was).
pub const DLQ_ATTEMPTS: &str = "consumer_dlq_attempts";

/// Why an event went to the consumer's dead-letter topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeadLetterReason {
    /// The handler failed `retry.max_attempts` times, or rejected the event.
    HandlerFailed,
    /// The writer schema does not fit the handler's type.
    SchemaMismatch,
    /// The frame names a schema id the registry does not have.
    UnknownSchema,
    /// The value is not Confluent-framed Avro (or no value at all).
    NotAvro,
    /// The record has no `id` header: no idempotency key.
    MissingEventId,
}

impl DeadLetterReason {
    /// The `consumer_dlq_reason` header value and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::HandlerFailed => "handler_failed",
            DeadLetterReason::SchemaMismatch => "schema_mismatch",
            DeadLetterReason::UnknownSchema => "unknown_schema",
            DeadLetterReason::NotAvro => "not_avro",
            DeadLetterReason::MissingEventId => "missing_event_id",
        }
    }
}

/// Writes dead letters: an idempotent producer, `acks=all`.
pub(crate) struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    group: String,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    pub fn new(
        bootstrap: &str,
        topic: &str,
        group: &str,
        extra: &BTreeMap<String, String>,
    ) -> Result<DeadLetters, KafkaError> {
        let mut c = ClientConfig::new();
        for (k, v) in extra {
            c.set(k, v);
        }
        let producer = c
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .create()?;
        Ok(DeadLetters {
            producer,
            topic: topic.to_string(),
            group: group.to_string(),
        })
    }

    /// Creates the dead-letter topic unless it exists (the broker's default replication factor).
    pub async fn ensure_topic(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        extra: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let mut c = ClientConfig::new();
        for (k, v) in extra {
            c.set(k, v);
        }
        let admin: AdminClient<DefaultClientContext> = c
            .set("bootstrap.servers", bootstrap)
            .create()
            .map_err(|e| format!("admin client: {e}"))?;
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics([&new], &opts)
            .await
            .map_err(|e| format!("CreateTopics {topic}: {e}"))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => {
                    return Err(format!(
                        "CreateTopics {t}: {code}. Create the topic yourself and set create_dlq_topic = false"
                    ))
                }
            }
        }
        Ok(())
    }

    /// Writes one dead letter and waits for the broker's acknowledgement.
    pub async fn send(
        &self,
        record: &Fetched,
        reason: DeadLetterReason,
        detail: &str,
        attempts: u32,
    ) -> Result<(), KafkaError> {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 7);
        for (k, v) in &record.headers {
            if !k.starts_with("consumer_dlq_") {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
        }
        let (partition, offset, attempts) = (
            record.partition.to_string(),
            record.offset.to_string(),
            attempts.to_string(),
        );
        for (k, v) in [
            (DLQ_REASON, reason.as_str()),
            (DLQ_DETAIL, detail),
            (DLQ_SOURCE_TOPIC, record.topic.as_str()),
            (DLQ_SOURCE_PARTITION, partition.as_str()),
            (DLQ_SOURCE_OFFSET, offset.as_str()),
            (DLQ_GROUP, self.group.as_str()),
            (DLQ_ATTEMPTS, attempts.as_str()),
        ] {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(headers);
        if let Some(k) = &record.key {
            r = r.key(k.as_slice());
        }
        if let Some(v) = &record.value {
            r = r.payload(v.as_slice());
        }
        self.producer
            .send(r, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}
