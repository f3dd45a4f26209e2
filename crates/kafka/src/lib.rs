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
//! Dead letters carry `dlq_reason` ([`DlqReason::code`]), `dlq_detail`, `dlq_intended_topic`, the identity
//! headers and the row's user headers (or, when that column is not a JSON object, `dlq_original_headers` with
//! its text), with the original payload bytes as value: everything a replay needs.
//!
//! Replaying dead letters (`outboxd dlq replay`): [`Replayer`] reads the dead-letter topic with a
//! `read_committed` consumer from its group's committed offsets to the end as of the start, and writes the
//! dead letters that now fit to their intended topics (with the pipeline's headers, built by the same code,
//! plus `dlq_replayed_from`) and the ones that still do not back to the dead-letter topic (`dlq_replays`
//! incremented), in Kafka transactions that also commit the group's offsets: each dead letter is handled
//! exactly once. [`replay`] is the pure part (rebuilding the event, triage, headers).

mod batch;
mod checkpoint;
mod config;
mod dlq_reader;
mod error;
pub mod headers;
mod producer;
mod record;
pub mod replay;
mod replayer;
pub mod route;
mod sink;
mod stats;
mod topics;

pub use checkpoint::Checkpoint;
pub use config::{BatchConfig, RouteMode, RoutingConfig, SinkConfig, TopicsConfig};
pub use dlq_reader::DlqReader;
pub use error::SinkError;
pub use headers::SchemaRef;
pub use record::{record_size, DlqReason, EncodedRecord};
pub use replay::{DeadLetter, Replayable, Triage};
pub use replayer::{ReplayIdentity, Replayed, Replayer};
pub use route::{RouteRejection, Router};
pub use sink::{Committed, Delivery, Sink, SinkIdentity};
pub use stats::{SinkStats, StatsSnapshot};
