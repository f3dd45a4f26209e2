//! Types shared by outboxd's stages, so that each stage depends on this crate and not on another stage.
//!
//! ```text
//!  outboxd-wal ──TxEvent──▶ pipeline ──OutboxEvent──▶ outboxd-avro ──bytes──▶ outboxd-kafka
//!        ▲                                                                         │
//!        └──────────────────── Lsn (confirmed end LSN) ◀───────────────────────────┘
//! ```
//!
//! Guarantees: [`Lsn`] is a plain, totally ordered WAL position; [`LsnTracker`] only ever moves forward, so a
//! late or repeated report can never rewind what has been confirmed to Postgres; [`redact`] is the one
//! place secrets are hidden before anything is printed; [`SlotOrigin`] and [`PgSnapshot`] say which
//! transactions a slot's stream does not carry (the rows a backfill relays). Nothing here does I/O.

mod event;
mod lsn;
mod origin;
pub mod redact;

pub use event::{Commit, OutboxEvent, TxBegin, TxEvent};
pub use lsn::{text as lsn_text, Lsn, LsnParseError, LsnText, LsnTracker};
pub use origin::{format_runs, BackfillProgress, PgSnapshot, SlotOrigin, SnapshotParseError};
