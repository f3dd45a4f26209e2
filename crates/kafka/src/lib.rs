//! The transactional Kafka sink of outboxd: it takes ready records (built by `outboxd-record`), whole Postgres
//! transaction by whole Postgres transaction, and commits them to Kafka together with a checkpoint record
//! naming the last end LSN they contain, so that a `read_committed` consumer sees each event exactly once. It
//! knows nothing about outbox rows: what a record holds was decided before it.
//!
//! ```text
//!  pipeline ──begin(TxBegin)──▶ Sink ── begin_transaction (when none is open)
//!           ──produce(&ReadyRecord)──▶ its topic   ─▶ Written::Queued, or Written::Refused { unknown_topic |
//!                                                     too_large } (the caller dead-letters the event)
//!           ──dead_letter(&ReadyRecord, reason)──▶ dead-letter topic
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
//! Replaying dead letters (`outboxd dlq replay`): [`Replayer`] reads the dead-letter topic with a
//! `read_committed` consumer from its group's committed offsets to the end as of the start, and writes what
//! the caller decided for each [`DeadLetter`] (a replayed record, or the dead letter appended again with
//! `dlq_replays` incremented) in Kafka transactions that also commit the group's offsets: each dead letter is
//! handled exactly once.

mod batch;
mod checkpoint;
mod config;
pub mod dead_letter;
mod dlq_reader;
mod error;
pub mod headers;
mod producer;
mod record;
mod replayer;
mod sink;
pub mod stable_end;
mod stats;
pub mod topic_name;
mod topics;

pub use checkpoint::Checkpoint;
pub use config::{BatchConfig, EventNameRule, RouteMode, RoutingConfig, SinkConfig, TopicsConfig};
pub use dead_letter::DeadLetter;
pub use dlq_reader::DlqReader;
pub use error::SinkError;
pub use headers::{
    parse_rfc3339_micros, rfc3339_header, rfc3339_micros, HeaderList, HeaderName, HeaderValue, RFC3339_LEN,
};
pub use producer::producer_record;
pub use record::{record_size, DlqReason, ReadyRecord, TopicName, Written};
pub use replayer::{ReplayIdentity, Replayer};
pub use sink::{Committed, Sink, SinkIdentity};
pub use stats::{SinkStats, StatsSnapshot};
