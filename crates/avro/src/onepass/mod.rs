//! The hot path: JSON payload bytes to framed Avro binary in one pass, driven by a compiled [`Plan`].
//!
//! No `serde_json::Value` and no `apache_avro::types::Value` is built: serde_json's streaming parser feeds
//! visitors (`json.rs`) that walk the plan ([`plan`]) and write Avro as they go (`walk.rs`, `union.rs`,
//! `write.rs`). Scratch space (record slots, map entries, a reassembly buffer) lives in a per-thread
//! context and is reused; the returned buffer is the caller's.
//!
//! The contract is the tree path's ([`crate::frame::payload_to_value`] then apache_avro's writer), exactly:
//! the same bytes for every accepted payload (maps, whose order apache_avro leaves to a `HashMap`, are
//! written in key order), the same rejection reason and the same message for every rejected one. The
//! differential tests (`tests.rs`, `fuzz.rs`) hold the two paths to it.

mod json;
pub mod plan;
mod union;
mod walk;
mod write;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod shapes;
#[cfg(test)]
mod tests;

pub(crate) use json::Kind;
pub use plan::Plan;

use crate::config::UnknownFields;
use crate::convert::ConvertError;
use crate::error::{reason, Rejection};
use crate::frame::{header, HEADER_LEN};
use json::Seed;
use plan::{default_mismatch, mode_index, FieldPlan};
use serde::de::DeserializeSeed;
use std::cell::RefCell;

/// What encoding one value came to: written, or why it does not fit (JSON syntax errors travel apart, as
/// serde_json errors).
pub(crate) type Outcome = Result<(), ConvertError>;

/// A record field while its record is being read.
#[derive(Debug)]
pub(crate) enum Slot {
    /// No key for it yet.
    Absent,
    /// Its bytes, at this range of the output.
    Bytes(usize, usize),
    /// Its value did not fit.
    Failed(ConvertError),
}

/// A map entry while its map is being read.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Where the entry (key, then value) starts in the output.
    pub(crate) at: usize,
    /// The key's UTF-8 bytes in the output.
    pub(crate) key: (usize, usize),
    /// Where the entry ends.
    pub(crate) end: usize,
    /// Its value did not fit.
    pub(crate) failed: Option<ConvertError>,
}

/// The encoder's state for one payload, and scratch space reused between payloads.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) out: Vec<u8>,
    pub(crate) unknown: UnknownFields,
    pub(crate) slots: Vec<Slot>,
    pub(crate) entries: Vec<Entry>,
    pub(crate) tmp: Vec<u8>,
    pub(crate) order: Vec<usize>,
    /// Defaults being encoded (by field address), to stop a default that needs itself.
    computing: Vec<usize>,
}

/// Scratch buffers larger than this are dropped after use rather than kept by the thread.
const KEEP_SCRATCH: usize = 1 << 20;

thread_local! {
    static CTX: RefCell<Ctx> = RefCell::new(Ctx::new(UnknownFields::Reject));
}

impl Ctx {
    pub(crate) fn new(unknown: UnknownFields) -> Ctx {
        Ctx {
            out: Vec::new(),
            unknown,
            slots: Vec::new(),
            entries: Vec::new(),
            tmp: Vec::new(),
            order: Vec::new(),
            computing: Vec::new(),
        }
    }

    /// Runs `f` with this thread's context (or a fresh one, if it is in use), reset for `unknown`.
    fn with<R>(unknown: UnknownFields, f: impl FnOnce(&mut Ctx) -> R) -> R {
        CTX.with(|cell| match cell.try_borrow_mut() {
            Ok(mut ctx) => {
                ctx.unknown = unknown;
                ctx.slots.clear();
                ctx.entries.clear();
                let r = f(&mut ctx);
                if ctx.tmp.capacity() > KEEP_SCRATCH {
                    ctx.tmp = Vec::new();
                }
                if ctx.entries.capacity() > KEEP_SCRATCH / 64 {
                    ctx.entries = Vec::new();
                    ctx.order = Vec::new();
                }
                r
            }
            Err(_) => f(&mut Ctx::new(unknown)),
        })
    }

    /// The Avro bytes of `field`'s default under this context's unknown-field policy, or the message of
    /// the field being absent (no default, or one that does not fit). Encoded once, then read.
    pub(crate) fn default_of<'p>(
        &mut self,
        plan: &'p Plan,
        field: &'p FieldPlan,
    ) -> Result<&'p [u8], String> {
        let cell = &field.defaults[mode_index(self.unknown)];
        if let Some(r) = cell.get() {
            return r.as_deref().map_err(Clone::clone);
        }
        let Some(json) = &field.default_json else {
            return Err(field.missing.to_string());
        };
        let id = field as *const FieldPlan as usize;
        if self.computing.contains(&id) {
            // The converter would recurse until the stack overflows.
            return Err(default_mismatch(&ConvertError::new(
                "the default needs the default of the same field (a recursive schema default)",
            )));
        }
        let mut sub = Ctx::new(self.unknown);
        sub.computing = std::mem::take(&mut self.computing);
        sub.computing.push(id);
        let outcome = Seed {
            ctx: &mut sub,
            plan,
            node: field.node,
        }
        .deserialize(json);
        self.computing = std::mem::take(&mut sub.computing);
        self.computing.pop();
        let encoded = match outcome {
            Ok(Ok(())) => Ok(sub.out.into_boxed_slice()),
            Ok(Err(e)) => Err(default_mismatch(&e)),
            Err(e) => Err(default_mismatch(&ConvertError::new(e.to_string()))),
        };
        cell.get_or_init(|| encoded).as_deref().map_err(Clone::clone)
    }
}

/// Parses one JSON value from `de` into `ctx.out` by the plan, then checks that nothing follows it.
fn parse<'de, R: serde_json::de::Read<'de>>(
    ctx: &mut Ctx,
    plan: &Plan,
    mut de: serde_json::Deserializer<R>,
) -> Result<Outcome, serde_json::Error> {
    Seed {
        ctx,
        plan,
        node: plan.root,
    }
    .deserialize(&mut de)
    .and_then(|outcome| de.end().map(|()| outcome))
}

/// JSON payload -> Confluent-framed Avro under `schema_id`, in one pass over the payload. `origin` names
/// the schema in messages. Same output and same rejections as the tree path (see the module docs).
pub fn encode(
    plan: &Plan,
    origin: &str,
    schema_id: u32,
    payload: &[u8],
    unknown_fields: UnknownFields,
) -> Result<Vec<u8>, Rejection> {
    Ctx::with(unknown_fields, |ctx| {
        ctx.out = Vec::with_capacity(HEADER_LEN + payload.len() + 16);
        header(schema_id, &mut ctx.out);
        // One UTF-8 check of the whole payload lets serde_json skip its check of every string; a payload that
        // is not UTF-8 is parsed as bytes, for serde_json's own error at the same place.
        let outcome = match std::str::from_utf8(payload) {
            Ok(text) => parse(ctx, plan, serde_json::Deserializer::from_str(text)),
            Err(_) => parse(ctx, plan, serde_json::Deserializer::from_slice(payload)),
        };
        let out = std::mem::take(&mut ctx.out);
        match outcome {
            Ok(Ok(())) => Ok(out),
            Ok(Err(e)) => Err(Rejection {
                reason: reason::SCHEMA_MISMATCH,
                detail: format!("payload does not fit schema {origin}: {e}"),
            }),
            Err(e) => Err(Rejection {
                reason: reason::INVALID_JSON,
                detail: format!("payload is not valid JSON: {e}"),
            }),
        }
    })
}
