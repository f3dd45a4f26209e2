//! The contract stage of outboxd: turns an outbox event's JSON payload into Avro, validated against a schema
//! that the Confluent-compatible schema registry has accepted, and frames it in the Confluent wire format.
//!
//! ```text
//!  start:  schema_dir/*.avsc ──parse──▶ LoadedSchema ──gate (level, compatibility, register)──▶ id
//!          "latest" sources ──GET /subjects/{s}/versions/latest──────────────────────────────▶ id
//!  load:   LoadedSchema ──compile──▶ Plan (refs resolved, field lookup, union branches, defaults as bytes)
//!  event:  payload JSON ──one pass (serde_json streaming + Plan)──▶ [0][id BE][datum]
//! ```
//!
//! The event path builds no value tree ([`onepass`]); the tree path it must match byte for byte and
//! rejection for rejection (JSON tree ──[`convert`]──▶ Avro `Value` ──apache_avro──▶ datum) is kept as the
//! reference ([`frame::encode_payload_tree`]) and for [`explain`].
//!
//! Guarantees:
//! - Nothing is encoded under a schema that has not passed the gate: at [`Encoder::connect`] for subjects
//!   named without the topic, at the first use of a (topic, event type) pair otherwise, always before any
//!   byte of that pair is returned.
//! - The steady state makes no registry call: ids and parsed schemas are cached per event type (and topic).
//!   A new schema version means a new file and a restart, which gates and caches it with its new id; there
//!   is no per-subject id cache that could hand out a stale id.
//! - Errors say what to do: [`EncodeError::Retriable`] (registry away: pause, lose nothing),
//!   [`EncodeError::Rejected`] (this event to the dead-letter topic, with a stable [`Rejection::reason`]),
//!   [`EncodeError::Fatal`] / non-retriable [`AvroError`] (fix the configuration or the schema).
//! - Conversion is pure and exact: no rounding of decimals, no silent narrowing, no panics on any input.

pub mod config;
pub mod convert;
mod encoder;
pub mod error;
pub mod explain;
pub mod frame;
pub mod gate;
pub mod onepass;
pub mod registry;
pub mod schemas;

pub use config::{AvroConfig, CompatibilityLevel, KeyFormat, SchemaSource, SubjectStrategy, UnknownFields};
pub use encoder::{check_schemas, check_schemas_for_topics, EncodedPayload, Encoder};
pub use error::{reason, AvroError, EncodeError, Rejection};
pub use gate::{GateReport, Outcome, SubjectReport};
pub use schemas::LoadedSchema;
