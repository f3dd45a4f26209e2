//! The WAL source stage of outboxd: it streams the outbox table's inserts (or transactional logical messages)
//! from a Postgres logical replication slot (plugin pgoutput, protocol version 1) and hands them on as whole
//! committed transactions, in commit order, through a bounded channel.
//!
//! ```text
//!  Postgres walsender ──CopyData──▶ pgwire-replication ──▶ pgoutput::decode ──▶ Assembler ──TxEvent──▶ mpsc
//!        ▲                                                    (pure)        (pure: mapping,      (bounded)
//!        │                                                                   skip, positions)       │
//!        └──── standby status (confirmed LSN) ◀── Positions ◀── SourceHandle::confirm(end_lsn) ◀────┘ sink
//! ```
//!
//! Guarantees:
//! - Order: `Begin`, the transaction's `Event`s, `Commit`, transaction after transaction in commit order; a
//!   `Begin` is sent only before a transaction's first outbox event, so transactions without outbox events
//!   (or at or below `skip_through`, the sink's checkpoint) are never emitted.
//! - Memory: events stream as they are decoded; a transaction of any size is never held whole, and a slow sink
//!   slows the reading down (the channel is bounded) while status updates still reach Postgres.
//! - Nothing is confirmed to Postgres that the sink has not confirmed, except positions that hold no outbox
//!   data of their own (transactions without outbox events, keepalives outside transactions), and those only
//!   once everything before them is confirmed; so an idle outbox on a busy database does not retain WAL.
//! - No outbox row is dropped: a row that cannot be mapped becomes an event with `defect` set (for the
//!   dead-letter topic). Updates, deletes and truncates of the outbox are ignored and counted.
//! - A malformed stream or a configuration that does not match the database is a fatal [`WalError`]; a lost
//!   connection is retriable ([`WalError::is_retriable`]). Nothing panics on bad input.
//!
//! The rows already in the table when the slot is created are not in its stream: the slot is created with an
//! exported snapshot, read back as a `SlotOrigin` (which transactions the stream does not carry), and
//! [`BackfillReader`] reads exactly those rows in chunks, in a stable order, from a resume key. [`Retention`]
//! deletes old rows only once the slot's confirmed position says they are in Kafka.
//!
//! Both connections speak TLS as libpq's `sslmode` in `pg_url` says (see [`SslMode`], [`TlsSettings`]).
//! [`admin`] holds what the `outboxd check` and `outboxd slot ...` commands need: preflight checks, slot
//! status, creation and dropping.
//!
//! Limits: names of the table, slot and publication are plain (unquoted) identifiers; no client certificates.

pub mod admin;
mod assembler;
mod backfill;
mod config;
mod connect;
mod conninfo;
mod error;
pub mod mapping;
pub mod message;
pub mod pgoutput;
mod progress;
mod reader;
mod retention;
mod setup;
mod source;
mod tls;

pub use assembler::{Assembler, AssemblerConfig, Input};
pub use backfill::{BackfillChunk, BackfillConfig, BackfillReader};
pub use config::{OutboxMode, SlotBusy, SourceConfig};
pub use error::{ConnectFailure, WalError};
pub use mapping::{ColumnMapping, Field, Preset, ResolvedMapping};
pub use progress::{Positions, Progress, Stats};
pub use retention::{Retention, RetentionBasis, RetentionConfig};
pub use setup::slot_confirmed_flush_lsn;
pub use source::{install_crypto_provider, SlotPrepared, Source, SourceHandle};
pub use tls::{SslMode, TlsSettings};
