//! What a handler receives: the decoded payload and the event's metadata, read from outboxd's record headers.
//!
//! The header names are outboxd's (`crates/record/src/headers.rs`, `RESERVED`); a test of this crate checks
//! that each one is still among them.

use rdkafka::message::{BorrowedMessage, Headers, Message};

/// The event id: the idempotency key (the outbox row's `id`).
pub const HEADER_ID: &str = "id";
/// The event type (`OrderCreated`), which also names its schema.
pub const HEADER_EVENT_TYPE: &str = "event_type";
/// The aggregate type (`order`), when the outbox row has one.
pub const HEADER_AGGREGATE_TYPE: &str = "aggregate_type";
/// The registry's schema id (also in the Confluent frame).
pub const HEADER_SCHEMA_ID: &str = "schema_id";
/// The registry's subject version of the writer schema.
pub const HEADER_SCHEMA_VERSION: &str = "schema_version";
/// The Postgres commit time, RFC 3339 UTC with microseconds.
pub const HEADER_COMMIT_TIME: &str = "commit_time";
/// The outbox row's LSN.
pub const HEADER_OUTBOX_LSN: &str = "outbox_lsn";
/// W3C trace context of the request that wrote the outbox row.
pub const HEADER_TRACEPARENT: &str = "traceparent";
/// W3C trace state, along with `traceparent`.
pub const HEADER_TRACESTATE: &str = "tracestate";

/// One event, decoded.
#[derive(Clone, Debug)]
pub struct Event<T> {
    /// The payload, decoded from Avro into the handler's type.
    pub payload: T,
    /// Where it came from and what outboxd said about it.
    pub meta: EventMeta,
}

/// An event's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventMeta {
    /// The event id (header `id`): unique per event, the same on every redelivery.
    pub event_id: String,
    /// Header `event_type`.
    pub event_type: Option<String>,
    /// The record key: outboxd's aggregate id.
    pub aggregate_id: Option<String>,
    /// Header `aggregate_type`.
    pub aggregate_type: Option<String>,
    /// The writer schema's id in the registry (from the Confluent frame).
    pub schema_id: u32,
    /// Header `schema_version`.
    pub schema_version: Option<i32>,
    /// Header `commit_time` (RFC 3339).
    pub commit_time: Option<String>,
    /// Header `traceparent`, when outboxd had a valid one.
    pub traceparent: Option<String>,
    /// Header `tracestate`.
    pub tracestate: Option<String>,
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset.
    pub offset: i64,
    /// Every header, in order (user headers from the outbox `headers` column included).
    pub headers: Vec<(String, Vec<u8>)>,
}

impl EventMeta {
    /// The first header with that name, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    /// The trace id and parent span id of `traceparent` (`00-<trace id>-<parent id>-<flags>`).
    pub fn trace_ids(&self) -> Option<(&str, &str)> {
        let tp = self.traceparent.as_deref()?;
        let mut parts = tp.split('-');
        let (_version, trace, parent) = (parts.next()?, parts.next()?, parts.next()?);
        (trace.len() == 32 && parent.len() == 16).then_some((trace, parent))
    }
}

pub(crate) fn header_in<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// A record as fetched, owned, before decoding.
#[derive(Clone, Debug)]
pub(crate) struct Fetched {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Fetched {
    pub fn from_message(m: &BorrowedMessage<'_>) -> Fetched {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec).unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        Fetched {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
        }
    }

    pub fn event_id(&self) -> Option<&str> {
        header_in(&self.headers, HEADER_ID).filter(|s| !s.is_empty())
    }

    pub fn meta(&self, event_id: &str, schema_id: u32) -> EventMeta {
        let h = |n: &str| header_in(&self.headers, n).map(str::to_string);
        EventMeta {
            event_id: event_id.to_string(),
            event_type: h(HEADER_EVENT_TYPE),
            aggregate_id: self
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            aggregate_type: h(HEADER_AGGREGATE_TYPE),
            schema_id,
            schema_version: h(HEADER_SCHEMA_VERSION).and_then(|v| v.parse().ok()),
            commit_time: h(HEADER_COMMIT_TIME),
            traceparent: h(HEADER_TRACEPARENT),
            tracestate: h(HEADER_TRACESTATE),
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
            headers: self.headers.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(traceparent: Option<&str>) -> EventMeta {
        let record = Fetched {
            topic: "t".into(),
            partition: 1,
            offset: 7,
            key: Some(b"agg-1".to_vec()),
            value: None,
            headers: vec![
                (HEADER_ID.into(), b"e-1".to_vec()),
                (HEADER_EVENT_TYPE.into(), b"OrderCreated".to_vec()),
                (HEADER_SCHEMA_VERSION.into(), b"3".to_vec()),
                ("tenant".into(), b"acme".to_vec()),
            ]
            .into_iter()
            .chain(traceparent.map(|t| (HEADER_TRACEPARENT.to_string(), t.as_bytes().to_vec())))
            .collect(),
        };
        assert_eq!(record.event_id(), Some("e-1"));
        record.meta("e-1", 42)
    }

    #[test]
    fn metadata_comes_from_outboxd_headers_and_the_key() {
        let m = meta(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        assert_eq!(m.aggregate_id.as_deref(), Some("agg-1"));
        assert_eq!(m.event_type.as_deref(), Some("OrderCreated"));
        assert_eq!((m.schema_id, m.schema_version), (42, Some(3)));
        assert_eq!(m.header("tenant"), Some("acme"));
        assert_eq!(
            m.trace_ids(),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"))
        );
        assert_eq!(meta(None).trace_ids(), None);
        assert_eq!(meta(Some("garbage")).trace_ids(), None);
    }
}
