//! The transactional Kafka sink of outboxd: it takes already-encoded outbox events, whole Postgres transaction
//! by whole Postgres transaction, and commits them to Kafka together with a checkpoint record naming the last
//! end LSN they contain, so that a `read_committed` consumer sees each event exactly once.
//!
//! ```text
//!  pipeline ──begin(TxBegin)──▶ Sink ── begin_transaction (when none is open)
//!           ──produce(event, EncodedRecord)──▶ routed topic   (or dead-letter topic: too large, bad headers)
//!           ──dead_letter(event, reason)─────▶ dead-letter topic
//!           ──end(Commit)──▶ (batch: whole Postgres transactions, closed by max events / bytes / linger)
//!           ──commit()──▶ checkpoint record {pipeline_id, commit_lsn, end_lsn, ...} ─▶ commit_transaction
//!                    ◀── Committed { checkpoint.end_lsn }  ── only now confirm it to Postgres
//! ```
//!
//! Guarantees:
//! - One Kafka transaction holds one or more WHOLE Postgres transactions, their dead letters and exactly one
//!   checkpoint record; a Postgres transaction is never split, however large.
//! - [`Sink::start`] runs `init_transactions` (fencing any zombie with the same `transactional.id`) before it
//!   reads the checkpoint with `read_committed` to the end of the topic: the `C` it returns
//!   ([`Sink::resume_after`]) cannot be overtaken by an older instance.
//! - Errors come as one [`SinkError`] whose [`SinkError::is_restartable`] says what to do: abort and restart
//!   from the checkpoint, or halt (fenced, fatal, misconfigured) confirming nothing more.
//! - Records are queued without waiting for each delivery; `commit_transaction` flushes them. Memory is bounded
//!   by librdkafka's queue limits ([`SinkConfig::queue_max_messages`], [`SinkConfig::queue_max_kbytes`]).
//! - Keys are the aggregate id; partitioning is `murmur2_random` (the Java client's), so per-aggregate order
//!   holds across clients.
//!
//! Record headers: `id`, `event_type`, `aggregate_type`, `schema_id`, `schema_version`, `outbox_lsn` (Postgres
//! text form, `16/B374D848`), `commit_time` (the Postgres commit time, RFC 3339 UTC with microseconds,
//! `2024-05-01T12:34:56.123456Z`), `traceparent` / `tracestate` (W3C, only when the row carries a valid one),
//! then the row's user headers (JSON object; non-string values as JSON text; reserved names ignored).
//! Dead letters carry `dlq_reason` ([`DlqReason::code`]), `dlq_detail`, `dlq_intended_topic` and the identity
//! headers, with the original payload bytes as value.

mod batch;
mod checkpoint;
mod config;
mod error;
pub mod headers;
mod producer;
mod record;
pub mod route;
mod sink;
mod stats;
mod topics;

pub use checkpoint::Checkpoint;
pub use config::{BatchConfig, RouteMode, RoutingConfig, SinkConfig, TopicsConfig};
pub use error::SinkError;
pub use headers::SchemaRef;
pub use record::{record_size, DlqReason, EncodedRecord};
pub use route::{RouteRejection, Router};
pub use sink::{Committed, Delivery, Sink, SinkIdentity};
pub use stats::{SinkStats, StatsSnapshot};
