//! What the sink is handed (a ready record: topic, key, value, headers), what it can answer (written, or
//! refused for a reason only the broker side can know), the dead-letter reasons, and the record size bound.

use crate::headers::HeaderList;

/// Why an event went to the dead-letter topic: the `dlq_reason` header carries [`DlqReason::code`], a
/// stable, machine-readable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DlqReason {
    /// The WAL decoder could not map the row faithfully (the event carries a defect): `decode_defect`.
    DecodeDefect,
    /// A field a routable event needs is null or empty: `missing_fields`.
    MissingFields,
    /// The routed topic name is not a legal Kafka topic name: `invalid_topic`.
    InvalidTopic,
    /// The routed topic does not exist and topic creation is disabled: `unknown_topic`.
    UnknownTopic,
    /// The event type breaks the configured naming rule: `bad_event_name`.
    BadEventName,
    /// The headers column is not a JSON object: `invalid_headers`.
    InvalidHeaders,
    /// The record would exceed `max_message_bytes`: `too_large`.
    TooLarge,
    /// The encoder refused the payload; the code is the encoder's own (e.g. the payload does not fit the
    /// schema, no schema for the event type, not JSON).
    Encoder(&'static str),
}

impl DlqReason {
    /// The stable code written to the `dlq_reason` header and used as the metrics label.
    pub fn code(&self) -> &'static str {
        match self {
            DlqReason::DecodeDefect => "decode_defect",
            DlqReason::MissingFields => "missing_fields",
            DlqReason::InvalidTopic => "invalid_topic",
            DlqReason::UnknownTopic => "unknown_topic",
            DlqReason::BadEventName => "bad_event_name",
            DlqReason::InvalidHeaders => "invalid_headers",
            DlqReason::TooLarge => "too_large",
            DlqReason::Encoder(code) => code,
        }
    }
}

impl std::fmt::Display for DlqReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// A topic name as records carry it: shared, since most records of a run go to the same topic.
pub type TopicName = std::sync::Arc<str>;

/// A record ready to be produced, in the form the producer takes: built by `outboxd-record` (an event's
/// record or its dead letter), written by the sink as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadyRecord {
    /// The destination topic.
    pub topic: TopicName,
    /// The key bytes; `None` for no key.
    pub key: Option<Vec<u8>>,
    /// The value bytes (Confluent wire format for an event; the original payload for a dead letter); `None`
    /// for no value (a dead letter whose payload was too large to keep).
    pub value: Option<Vec<u8>>,
    /// The headers, in order.
    pub headers: HeaderList,
}

impl ReadyRecord {
    /// The most bytes this record can take on the wire ([`record_size`]).
    pub fn size(&self) -> usize {
        record_size(self.key.as_deref(), self.value.as_deref(), &self.headers)
    }
}

/// What the sink did with a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    /// Queued in the open transaction.
    Queued,
    /// Refused for a reason only the broker side knows (its topic does not exist and creation is disabled;
    /// the producer refused its size): the caller dead-letters the event with this reason.
    Refused {
        /// [`DlqReason::UnknownTopic`] or [`DlqReason::TooLarge`].
        reason: DlqReason,
        /// What exactly was wrong.
        detail: String,
    },
}

impl Written {
    /// Refused: the topic does not exist and topic creation is disabled.
    pub(crate) fn unknown_topic(topic: &str) -> Written {
        Written::Refused {
            reason: DlqReason::UnknownTopic,
            detail: format!("topic {topic:?} does not exist and kafka.topics.create is false"),
        }
    }

    /// Refused: the producer refused the record's size.
    pub(crate) fn too_large(size: usize, max_message_bytes: usize) -> Written {
        Written::Refused {
            reason: DlqReason::TooLarge,
            detail: format!(
                "the producer refused the record of {size} bytes (kafka.max_message_bytes is {max_message_bytes})"
            ),
        }
    }
}

/// Upper bound of a record's per-record framing (v2 record varints) plus its share of a record batch header:
/// a record of this much more than its content always fits in `max_message_bytes` as a batch of its own.
const RECORD_OVERHEAD: usize = 128;
/// Upper bound of one header's framing (two varint lengths).
const HEADER_OVERHEAD: usize = 10;

/// The most bytes a record of this content can take on the wire.
pub fn record_size(key: Option<&[u8]>, value: Option<&[u8]>, headers: &HeaderList) -> usize {
    RECORD_OVERHEAD
        + key.map_or(0, <[u8]>::len)
        + value.map_or(0, <[u8]>::len)
        + headers
            .iter()
            .map(|(k, v)| HEADER_OVERHEAD + k.len() + v.len())
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        let all = [
            (DlqReason::DecodeDefect, "decode_defect"),
            (DlqReason::MissingFields, "missing_fields"),
            (DlqReason::InvalidTopic, "invalid_topic"),
            (DlqReason::UnknownTopic, "unknown_topic"),
            (DlqReason::BadEventName, "bad_event_name"),
            (DlqReason::InvalidHeaders, "invalid_headers"),
            (DlqReason::TooLarge, "too_large"),
            (DlqReason::Encoder("schema_mismatch"), "schema_mismatch"),
        ];
        for (reason, code) in all {
            assert_eq!(reason.code(), code);
            assert_eq!(reason.to_string(), code);
        }
    }

    #[test]
    fn size_counts_key_value_and_headers() {
        let headers = vec![("id".into(), b"abc"[..].into())];
        assert_eq!(record_size(None, None, &vec![]), RECORD_OVERHEAD);
        assert_eq!(
            record_size(Some(b"k"), Some(&[0; 100]), &headers),
            RECORD_OVERHEAD + 1 + 100 + 10 + 2 + 3
        );
    }
}
