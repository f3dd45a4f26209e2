//! What the crate's unit tests share: one sample event and its trace context.

use outboxd_core::{Lsn, OutboxEvent};

/// A valid W3C `traceparent`.
pub(crate) const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// A commit time: 2024-05-01T12:34:56.123456Z.
pub(crate) const TIME: i64 = 1_714_566_896_123_456;

/// An `OrderCreated` event of order 42, with a trace context.
pub(crate) fn sample_event() -> OutboxEvent {
    OutboxEvent {
        id: Some("e1".into()),
        aggregate_type: Some("order".into()),
        aggregate_id: Some("42".into()),
        event_type: Some("OrderCreated".into()),
        payload: Some(br#"{"orderId":"42"}"#.to_vec()),
        traceparent: Some(TP.into()),
        tracestate: Some("vendor=x".into()),
        lsn: Lsn(0x16_B374_D848),
        ..OutboxEvent::default()
    }
}
