//! What the `outboxd check` and `outboxd slot create|drop|status` commands do on the Postgres side, each on a
//! short-lived connection of its own (bounded by `connect_timeout_ms`):
//!
//! ```text
//!  SourceConfig ──▶ preflight()    ──▶ Vec<Check>   read only: every check names what is wrong and the fix
//!               ──▶ slot_status()  ──▶ SlotStatus   pg_replication_slots ⋈ pg_stat_replication, server LSN
//!               ──▶ create_slot()  ──▶ SlotCreated  the source's own set-up: checks, publication, slot
//!               ──▶ drop_slot()    ──▶ SlotDropped  never a slot in use, never another database's
//! ```
//!
//! Nothing here takes a slot from the process that holds it.

mod checks;
mod preflight;
mod publication;
mod slot;

pub use preflight::{preflight, preflight_passed, Check, CheckStatus};
pub use slot::{create_slot, drop_slot, slot_status, SlotCreated, SlotDetails, SlotDropped, SlotStatus};

/// What dropping the slot costs, for the CLI's confirmation prompt and the docs (one text for both).
pub const DROP_SLOT_WARNING: &str = "Dropping the replication slot discards its position. Outbox rows \
    committed but not yet relayed to Kafka will never be sent, and the checkpoint in Kafka cannot restore a \
    dropped slot: a new slot starts at the current end of the WAL. Postgres also stops retaining WAL for it.";
