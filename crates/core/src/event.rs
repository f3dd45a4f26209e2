//! The stream the WAL stage produces: whole committed transactions, as Begin, events, Commit.

use crate::Lsn;

/// One outbox row (or transactional logical message), as decoded from the WAL. Fields are as found in the
/// row: the decoder does not judge them, so that a bad row can still be routed to the dead-letter topic with
/// everything it carried. [`OutboxEvent::missing_required`] says what a routable event lacks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboxEvent {
    /// The event id (the consumers' idempotency key), as text (usually a UUID).
    pub id: Option<String>,
    /// The aggregate type (`order`), used to route to a topic.
    pub aggregate_type: Option<String>,
    /// The aggregate id, used as the Kafka key.
    pub aggregate_id: Option<String>,
    /// The event type (`OrderCreated`), which names its schema.
    pub event_type: Option<String>,
    /// The payload bytes as stored (JSON text for json/jsonb/text columns, raw bytes for bytea).
    pub payload: Option<Vec<u8>>,
    /// User headers: a JSON object of string values, as stored.
    pub headers: Option<String>,
    /// W3C `traceparent` from the row, when the outbox carries one.
    pub traceparent: Option<String>,
    /// W3C `tracestate` from the row, when the outbox carries one.
    pub tracestate: Option<String>,
    /// An explicit destination topic from a topic column, when configured.
    pub topic: Option<String>,
    /// The row's creation time as Postgres printed it, when the outbox carries one.
    pub created_at: Option<String>,
    /// Schema version requested by the row, when the outbox carries one.
    pub schema_version: Option<String>,
    /// The WAL position of the insert (or logical message) itself.
    pub lsn: Lsn,
    /// Why the decoder could not map the row faithfully (bad envelope, undecodable column), if it could not.
    /// Such an event is never produced to its topic: it goes to the dead-letter topic with this reason.
    pub defect: Option<String>,
}

impl OutboxEvent {
    /// The names of the fields every event must have but this one lacks (empty when none is missing). The
    /// aggregate type is not one of them: it is needed only when the topic template uses it, which the
    /// router checks.
    pub fn missing_required(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.id.as_deref().is_none_or(str::is_empty) {
            missing.push("id");
        }
        if self.aggregate_id.is_none() {
            missing.push("aggregate_id");
        }
        if self.event_type.as_deref().is_none_or(str::is_empty) {
            missing.push("event_type");
        }
        missing
    }
}

/// The start of a committed transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxBegin {
    /// Postgres transaction id.
    pub xid: u32,
    /// The commit record's LSN (pgoutput's "final LSN").
    pub final_lsn: Lsn,
    /// Commit time, microseconds since the Unix epoch.
    pub commit_time_us: i64,
}

/// The end of a committed transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commit {
    /// Postgres transaction id (from the matching Begin).
    pub xid: u32,
    /// The commit record's LSN.
    pub commit_lsn: Lsn,
    /// The end of the commit record: strictly increasing from one transaction to the next. This is the
    /// position that checkpoints name and that is confirmed to Postgres.
    pub end_lsn: Lsn,
    /// Commit time, microseconds since the Unix epoch.
    pub commit_time_us: i64,
    /// Outbox events this transaction carried.
    pub events: u64,
}

/// What the WAL stage emits, in commit order. Transactions with no outbox event are still announced (Begin
/// then Commit) only when they must be, so that the sink can checkpoint past them; see the WAL crate.
#[derive(Clone, Debug, PartialEq, Eq)]
// Events are nearly the whole stream: boxing them would add an allocation per event to save bytes only on the
// rare Begin and Commit.
#[allow(clippy::large_enum_variant)]
pub enum TxEvent {
    /// A transaction starts; its events follow.
    Begin(TxBegin),
    /// One outbox event of the open transaction.
    Event(OutboxEvent),
    /// The open transaction ends.
    Commit(Commit),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_required_names_each_field() {
        let e = OutboxEvent::default();
        assert_eq!(e.missing_required(), vec!["id", "aggregate_id", "event_type"]);
        let e = OutboxEvent {
            id: Some("a".into()),
            aggregate_id: Some(String::new()),
            event_type: Some("E".into()),
            topic: Some("t".into()),
            ..Default::default()
        };
        assert!(e.missing_required().is_empty());
    }
}
