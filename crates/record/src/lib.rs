//! The one path from an outbox event to a Kafka record. [`Stage::prepare`] decides, in one documented order
//! (see [`stage`]), whether an event becomes a ready record for its topic or a rejection for the dead-letter
//! topic, and builds every byte the producer takes: topic, key, value (Confluent-framed Avro), headers. It
//! does no I/O of its own beyond the encoder's registry lookups (cached after the first use): the sink only
//! writes what it is given.
//!
//! ```text
//!  OutboxEvent + commit time ──▶ Stage::prepare ─┬─ Prepared::Ready(ReadyRecord) ──▶ Sink::produce
//!      (route, checks, Avro value and key,       │        └─ Written::Refused (unknown topic, too large) ─┐
//!       headers, size)                           └─ Prepared::Rejected(EventRejection) ───────────────────┤
//!                                                       Stage::dead_letter ──▶ ReadyRecord ──▶ Sink::dead_letter
//!  DeadLetter (read back) ──▶ Stage::prepare_replay ──▶ Replay(ReadyRecord) | StillFailing | Keep
//! ```
//!
//! Guarantees: every event ends up with exactly one decision (a record or a rejection); the pipeline and
//! `outboxd dlq replay` use this same code, so a replayed record carries exactly the headers the pipeline
//! would have written (plus `dlq_replayed_from`). Errors ([`RecordError`]) mean "no decision yet" (registry
//! away: retry the same event) or "halt" (broken contract), never a lost event.
//!
//! Record headers: `id`, `event_type`, `aggregate_type`, `schema_id`, `schema_version`, `outbox_lsn` (Postgres
//! text form, `16/B374D848`), `commit_time` (the Postgres commit time, RFC 3339 UTC with microseconds,
//! `2024-05-01T12:34:56.123456Z`), `traceparent` / `tracestate` (W3C, only when the row carries a valid one),
//! then the row's user headers (JSON object; non-string values as JSON text; reserved names ignored).
//! Dead letters carry `dlq_reason` ([`DlqReason::code`]), `dlq_detail`, `dlq_intended_topic`, the identity
//! headers and the row's user headers (or, when that column is not a JSON object, `dlq_original_headers` with
//! its text), with the original payload bytes as value: everything a replay needs.

mod encode;
mod error;
#[cfg(test)]
mod fixtures;
pub mod headers;
pub mod replay;
pub mod route;
pub mod stage;
#[cfg(test)]
mod stage_tests;
#[cfg(any(test, feature = "test-encoder"))]
pub mod test_encoder;

pub use encode::PayloadEncoder;
pub use error::RecordError;
pub use outboxd_kafka::DlqReason;
pub use replay::{triage, Replayable, Triage};
pub use route::{RouteRejection, Router};
pub use stage::{EventRejection, Prepared, ReplayPlan, Stage};
