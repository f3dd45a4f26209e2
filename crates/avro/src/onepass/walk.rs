//! Containers and unions, encoded as the JSON streams by.
//!
//! - Records: a field whose key comes in schema order is written in place; fields skipped over take their
//!   pre-encoded default in place (speculatively: if the key comes later after all, the record is
//!   reassembled); only keys out of schema order or repeated keys make the record be reassembled from its
//!   slots, in schema order, once it ends. A repeated key's last value wins, as in serde_json's `Value`.
//!   The reported error is the converter's: the first field in schema order that fails, then the smallest
//!   unknown key.
//! - Arrays: a one-byte count placeholder, widened at the end if needed.
//! - Maps: entries in place; if the keys did not come strictly sorted (or one failed), the entries are
//!   sorted, deduplicated (the last wins) and rewritten, so a map is written in key order.
//! - Unions: a scalar tries its kind's branches in order (no buffering: scalars are whole); an array or
//!   object with a single possible branch streams into it (after one key of look-ahead for the tagged
//!   `{"<type>": value}` form); anything else (several object branches, a key naming a branch) is read into
//!   a small tree and tried branch by branch, the converter's rule exactly.

use super::json::{capture_object, skip_rest, skip_seq, Atom, Key, Seed, Skip, U32Part};
use super::plan::{KeyClass, Node, NodeId, Plan, RecordPlan};
use super::write::{leaf, patch_count, write_bytes, write_len};
use super::{Ctx, Outcome, Slot};
use crate::config::UnknownFields;
use crate::convert::ConvertError;
use serde::de::{Error, MapAccess, SeqAccess};
use std::borrow::Cow;

impl Ctx {
    /// A scalar (or a container's kind, after its content was skipped) at `node`.
    pub(crate) fn atom(&mut self, plan: &Plan, node: NodeId, atom: Atom<'_>) -> Outcome {
        match plan.node(node) {
            Node::Union(u) => self.union_atom(plan, u, atom),
            other => leaf(&mut self.out, other, atom, self.unknown),
        }
    }

    /// An array at `node`.
    pub(crate) fn seq<'de, A: SeqAccess<'de>>(
        &mut self,
        plan: &Plan,
        node: NodeId,
        mut seq: A,
    ) -> Result<Outcome, A::Error> {
        match plan.node(node) {
            Node::Array { items, .. } => self.array(plan, *items, seq),
            Node::Union(u) => self.union_seq(plan, u, seq),
            _ => {
                skip_seq(&mut seq)?;
                Ok(self.atom(plan, node, Atom::Array))
            }
        }
    }

    /// An object at `node`, whose first key may already have been read.
    pub(crate) fn map<'de, A: MapAccess<'de>>(
        &mut self,
        plan: &Plan,
        node: NodeId,
        mut map: A,
        first: Option<Cow<'de, str>>,
    ) -> Result<Outcome, A::Error> {
        match plan.node(node) {
            Node::Record(r) => self.record(plan, r, map, first),
            Node::Map { values, .. } => self.map_values(plan, *values, map, first),
            Node::Duration => self.duration(map, first),
            Node::Union(u) if first.is_none() => self.union_map(plan, u, map),
            Node::Union(u) => {
                let json = capture_object(&mut map, first)?;
                self.union_json(plan, u, &json).map_err(A::Error::custom)
            }
            _ => {
                skip_rest(&mut map, first.is_some())?;
                Ok(self.atom(plan, node, Atom::Object))
            }
        }
    }

    fn array<'de, A: SeqAccess<'de>>(
        &mut self,
        plan: &Plan,
        items: NodeId,
        mut seq: A,
    ) -> Result<Outcome, A::Error> {
        let pos = self.out.len();
        self.out.push(0);
        let mut n = 0;
        while let Some(r) = seq.next_element_seed(Seed {
            ctx: self,
            plan,
            node: items,
        })? {
            if let Err(e) = r {
                self.out.truncate(pos);
                skip_seq(&mut seq)?;
                return Ok(Err(e.at_index(n)));
            }
            n += 1;
        }
        patch_count(&mut self.out, pos, n);
        if n > 0 {
            self.out.push(0);
        }
        Ok(Ok(()))
    }

    fn record<'de, A: MapAccess<'de>>(
        &mut self,
        plan: &Plan,
        r: &RecordPlan,
        mut map: A,
        mut first: Option<Cow<'de, str>>,
    ) -> Result<Outcome, A::Error> {
        let start = self.out.len();
        let base = self.slots.len();
        self.slots.resize_with(base + r.fields.len(), || Slot::Absent);
        let mut next = 0; // fields before `next` are settled in place
        let mut reassemble = false;
        let mut unknown: Option<String> = None;
        loop {
            let key = match first.take() {
                Some(k) => k,
                None => match map.next_key_seed(Key)? {
                    Some(k) => k,
                    None => break,
                },
            };
            match r.classify(&key, next) {
                KeyClass::Field(i) => {
                    let i = i as usize;
                    if i >= next {
                        for j in next..i {
                            self.speculate_default(plan, r, base, j);
                        }
                        next = i + 1;
                    } else {
                        reassemble = true;
                    }
                    let at = self.out.len();
                    let outcome = map.next_value_seed(Seed {
                        ctx: self,
                        plan,
                        node: r.fields[i].node,
                    })?;
                    self.slots[base + i] = match outcome {
                        Ok(()) => Slot::Bytes(at, self.out.len()),
                        Err(e) => {
                            self.out.truncate(at);
                            Slot::Failed(e)
                        }
                    };
                }
                KeyClass::Known => map.next_value_seed(Skip)?,
                KeyClass::Unknown => {
                    map.next_value_seed(Skip)?;
                    if self.unknown == UnknownFields::Reject && unknown.as_deref().is_none_or(|u| *key < *u) {
                        unknown = Some(key.into_owned());
                    }
                }
            }
        }
        let outcome = self.finish_record(plan, r, start, base, next, reassemble, unknown);
        self.slots.truncate(base);
        if outcome.is_err() {
            self.out.truncate(start);
        }
        Ok(outcome)
    }

    /// Writes field `j`'s default in place, if it has one (a later key for it reassembles the record).
    fn speculate_default(&mut self, plan: &Plan, r: &RecordPlan, base: usize, j: usize) {
        if r.fields[j].default_json.is_none() {
            return;
        }
        if let Ok(bytes) = self.default_of(plan, &r.fields[j]) {
            let at = self.out.len();
            self.out.extend_from_slice(bytes);
            self.slots[base + j] = Slot::Bytes(at, self.out.len());
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_record(
        &mut self,
        plan: &Plan,
        r: &RecordPlan,
        start: usize,
        base: usize,
        next: usize,
        mut reassemble: bool,
        unknown: Option<String>,
    ) -> Outcome {
        for (j, field) in r.fields.iter().enumerate() {
            // Matched in place: settled slots (the common case) are not moved out and back.
            match self.slots[base + j] {
                Slot::Bytes(..) => {}
                Slot::Failed(_) => {
                    if let Slot::Failed(e) = std::mem::replace(&mut self.slots[base + j], Slot::Absent) {
                        return Err(e.in_key(&field.name));
                    }
                }
                Slot::Absent => {
                    let bytes = self
                        .default_of(plan, field)
                        .map_err(|message| ConvertError::new(message).in_key(&field.name))?;
                    reassemble |= j < next;
                    let at = self.out.len();
                    self.out.extend_from_slice(bytes);
                    self.slots[base + j] = Slot::Bytes(at, self.out.len());
                }
            }
        }
        if let Some(key) = unknown {
            return Err(ConvertError::new(format!(
                "unknown field: record {} has no such field (set avro.unknown_fields = \"ignore\" to drop \
                 undeclared fields)",
                r.name
            ))
            .in_key(&key));
        }
        if reassemble {
            self.tmp.clear();
            self.tmp.extend_from_slice(&self.out[start..]);
            self.out.truncate(start);
            for slot in &self.slots[base..base + r.fields.len()] {
                if let Slot::Bytes(a, b) = *slot {
                    self.out.extend_from_slice(&self.tmp[a - start..b - start]);
                }
            }
        }
        Ok(())
    }

    fn map_values<'de, A: MapAccess<'de>>(
        &mut self,
        plan: &Plan,
        values: NodeId,
        mut map: A,
        mut first: Option<Cow<'de, str>>,
    ) -> Result<Outcome, A::Error> {
        let pos = self.out.len();
        self.out.push(0);
        let base = self.entries.len();
        let mut in_order = true;
        loop {
            let key = match first.take() {
                Some(k) => k,
                None => match map.next_key_seed(Key)? {
                    Some(k) => k,
                    None => break,
                },
            };
            let at = self.out.len();
            write_bytes(&mut self.out, key.as_bytes());
            let key_range = (self.out.len() - key.len(), self.out.len());
            if in_order {
                if let Some(prev) = self.entries[base..].last() {
                    in_order = self.out[prev.key.0..prev.key.1] < *key.as_bytes();
                }
            }
            let outcome = map.next_value_seed(Seed {
                ctx: self,
                plan,
                node: values,
            })?;
            let failed = outcome.err();
            if failed.is_some() {
                self.out.truncate(key_range.1);
                in_order = false;
            }
            self.entries.push(super::Entry {
                at,
                key: key_range,
                end: self.out.len(),
                failed,
            });
        }
        let outcome = self.finish_map(pos, base, in_order);
        self.entries.truncate(base);
        if outcome.is_err() {
            self.out.truncate(pos);
        }
        Ok(outcome)
    }

    fn finish_map(&mut self, pos: usize, base: usize, in_order: bool) -> Outcome {
        let n = self.entries.len() - base;
        if in_order {
            patch_count(&mut self.out, pos, n);
            if n > 0 {
                self.out.push(0);
            }
            return Ok(());
        }
        // Sort by key (stable: equal keys keep their order), keep the last of each key.
        let mut order: Vec<usize> = std::mem::take(&mut self.order);
        order.clear();
        order.extend(base..self.entries.len());
        let (out, entries) = (&self.out, &self.entries);
        let key = |i: usize| &out[entries[i].key.0..entries[i].key.1];
        order.sort_by(|&a, &b| key(a).cmp(key(b)));
        let mut kept = 0;
        for k in 0..order.len() {
            if k + 1 < order.len() && key(order[k]) == key(order[k + 1]) {
                continue;
            }
            order[kept] = order[k];
            kept += 1;
        }
        order.truncate(kept);
        if let Some(&i) = order.iter().find(|&&i| entries[i].failed.is_some()) {
            let name = String::from_utf8_lossy(key(i)).into_owned();
            let e = self.entries[i].failed.take();
            self.order = order;
            return Err(e.map_or_else(|| ConvertError::new("map entry failed"), |e| e.in_key(&name)));
        }
        self.tmp.clear();
        self.tmp.extend_from_slice(&self.out[pos..]);
        self.out.truncate(pos);
        write_len(&mut self.out, order.len());
        for &i in &order {
            let e = &self.entries[i];
            self.out.extend_from_slice(&self.tmp[e.at - pos..e.end - pos]);
        }
        self.out.push(0);
        self.order = order;
        Ok(())
    }

    /// `{"months": m, "days": d, "millis": ms}`: unknown keys first (the smallest), then the parts in order.
    fn duration<'de, A: MapAccess<'de>>(
        &mut self,
        mut map: A,
        mut first: Option<Cow<'de, str>>,
    ) -> Result<Outcome, A::Error> {
        const PARTS: [&str; 3] = ["months", "days", "millis"];
        let mut parts: [Result<u32, ConvertError>; 3] = [Ok(0), Ok(0), Ok(0)];
        let mut unknown: Option<String> = None;
        loop {
            let key = match first.take() {
                Some(k) => k,
                None => match map.next_key_seed(Key)? {
                    Some(k) => k,
                    None => break,
                },
            };
            match PARTS.iter().position(|p| *p == key) {
                Some(i) => {
                    parts[i] = map.next_value_seed(U32Part)?.map_err(|got| {
                        ConvertError::expected("an unsigned 32-bit integer", &got).in_key(&key)
                    });
                }
                None => {
                    map.next_value_seed(Skip)?;
                    if unknown.as_deref().is_none_or(|u| *key < *u) {
                        unknown = Some(key.into_owned());
                    }
                }
            }
        }
        if let Some(k) = unknown {
            return Ok(Err(ConvertError::new(
                "unknown field of a duration (months, days, millis)",
            )
            .in_key(&k)));
        }
        let [months, days, millis] = parts;
        let (months, days, millis) = match (months, days, millis) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Ok(Err(e)),
        };
        for v in [months, days, millis] {
            self.out.extend_from_slice(&v.to_le_bytes());
        }
        Ok(Ok(()))
    }
}
