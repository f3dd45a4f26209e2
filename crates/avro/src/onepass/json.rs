//! The JSON side: serde_json's streaming parser drives [`DeserializeSeed`] visitors that write Avro as they
//! go. No JSON tree is built (except for the rare union values that must be tried against several branches).
//!
//! The parser is serde_json's own, called the way `serde_json::from_slice::<Value>` calls it (every value
//! through `deserialize_any`, every key through `deserialize_str`), so valid and invalid JSON, the numbers
//! it reads (`u64`, `i64` or `f64`, with serde_json's float parsing), the recursion limit and the error
//! messages are the same as on the tree path. A value that does not fit the schema does not stop the parse:
//! the visitor records the mismatch and consumes the rest of the value with [`Skip`], which still parses
//! everything (strings, escapes, numbers), so that invalid JSON anywhere in the payload wins, as it does
//! when the tree is parsed first.

use super::plan::{NodeId, Plan};
use super::{Ctx, Outcome};
use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;
use std::borrow::Cow;
use std::fmt;

/// The kind of a JSON value, as union branches are chosen by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    /// Number of kinds.
    pub(crate) const COUNT: usize = 6;
    /// Every kind, in index order.
    pub(crate) const ALL: [Kind; Kind::COUNT] = [
        Kind::Null,
        Kind::Bool,
        Kind::Number,
        Kind::String,
        Kind::Array,
        Kind::Object,
    ];
}

/// A JSON value as the leaf conversions see it: scalars whole (numbers as serde_json holds them: a
/// non-negative integer as `U64`, a negative one as `I64`, anything else as `F64`), containers by kind.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Atom<'a> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(&'a str),
    Array,
    Object,
}

impl Atom<'_> {
    pub(crate) fn kind(self) -> Kind {
        match self {
            Atom::Null => Kind::Null,
            Atom::Bool(_) => Kind::Bool,
            Atom::U64(_) | Atom::I64(_) | Atom::F64(_) => Kind::Number,
            Atom::Str(_) => Kind::String,
            Atom::Array => Kind::Array,
            Atom::Object => Kind::Object,
        }
    }

    /// `serde_json::Value::as_i64`.
    pub(crate) fn as_i64(self) -> Option<i64> {
        match self {
            Atom::U64(u) => i64::try_from(u).ok(),
            Atom::I64(i) => Some(i),
            _ => None,
        }
    }

    /// `serde_json::Value::as_f64`.
    pub(crate) fn as_f64(self) -> Option<f64> {
        match self {
            Atom::U64(u) => Some(u as f64),
            Atom::I64(i) => Some(i as f64),
            Atom::F64(f) => Some(f),
            _ => None,
        }
    }

    /// The JSON value this atom stands for (containers empty): only for messages, off the hot path.
    pub(crate) fn to_json(self) -> Json {
        match self {
            Atom::Null => Json::Null,
            Atom::Bool(b) => Json::Bool(b),
            Atom::U64(u) => Json::Number(u.into()),
            Atom::I64(i) => Json::Number(i.into()),
            Atom::F64(f) => serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number),
            Atom::Str(s) => Json::String(s.to_string()),
            Atom::Array => Json::Array(Vec::new()),
            Atom::Object => Json::Object(serde_json::Map::new()),
        }
    }
}

/// Encodes the value at hand as plan node `node`, into `ctx`'s output.
#[derive(Debug)]
pub(crate) struct Seed<'c, 'p> {
    pub(crate) ctx: &'c mut Ctx,
    pub(crate) plan: &'p Plan,
    pub(crate) node: NodeId,
}

impl<'de> DeserializeSeed<'de> for Seed<'_, '_> {
    type Value = Outcome;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Outcome, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_, '_> {
    type Value = Outcome;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: Error>(self) -> Result<Outcome, E> {
        Ok(self.ctx.atom(self.plan, self.node, Atom::Null))
    }

    fn visit_bool<E: Error>(self, v: bool) -> Result<Outcome, E> {
        Ok(self.ctx.atom(self.plan, self.node, Atom::Bool(v)))
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<Outcome, E> {
        // serde_json's `Number::from(i64)`: a non-negative value is a `PosInt`.
        let atom = u64::try_from(v).map_or(Atom::I64(v), Atom::U64);
        Ok(self.ctx.atom(self.plan, self.node, atom))
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<Outcome, E> {
        Ok(self.ctx.atom(self.plan, self.node, Atom::U64(v)))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<Outcome, E> {
        // serde_json's `Value` holds a non-finite float as `null` (its parser never produces one).
        let atom = if v.is_finite() { Atom::F64(v) } else { Atom::Null };
        Ok(self.ctx.atom(self.plan, self.node, atom))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Outcome, E> {
        Ok(self.ctx.atom(self.plan, self.node, Atom::Str(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Outcome, A::Error> {
        self.ctx.seq(self.plan, self.node, seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Outcome, A::Error> {
        self.ctx.map(self.plan, self.node, map, None)
    }
}

/// Parses and discards one value (validating it exactly as the tree path would).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(SkipKey)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
}

/// Parses and discards an object key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SkipKey;

impl<'de> DeserializeSeed<'de> for SkipKey {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(Skip)
    }
}

/// Reads an object key, borrowed from the payload when it has no escape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cow<'de, str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: Error>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_string()))
    }

    fn visit_string<E: Error>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

/// Consumes what is left of an object whose first key (if any) was already read.
pub(crate) fn skip_rest<'de, A: MapAccess<'de>>(map: &mut A, had_key: bool) -> Result<(), A::Error> {
    if had_key {
        map.next_value_seed(Skip)?;
    }
    while map.next_key_seed(SkipKey)?.is_some() {
        map.next_value_seed(Skip)?;
    }
    Ok(())
}

/// Consumes what is left of an array.
pub(crate) fn skip_seq<'de, A: SeqAccess<'de>>(seq: &mut A) -> Result<(), A::Error> {
    while seq.next_element_seed(Skip)?.is_some() {}
    Ok(())
}

/// Reads the rest of an object (first key already read) into a tree, keys deduplicated as serde_json's
/// `Value` does (the last one wins): the rare path of unions that must try several branches.
pub(crate) fn capture_object<'de, A: MapAccess<'de>>(
    map: &mut A,
    first: Option<Cow<'de, str>>,
) -> Result<Json, A::Error> {
    let mut obj = serde_json::Map::new();
    if let Some(k) = first {
        let v: Json = map.next_value()?;
        obj.insert(k.into_owned(), v);
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            obj.insert(k, v);
        }
    }
    Ok(Json::Object(obj))
}

/// Reads the rest of an array into a tree (the rare union path).
pub(crate) fn capture_array<'de, A: SeqAccess<'de>>(seq: &mut A) -> Result<Json, A::Error> {
    let mut items = Vec::new();
    while let Some(v) = seq.next_element::<Json>()? {
        items.push(v);
    }
    Ok(Json::Array(items))
}

/// Reads a duration part: an unsigned 32-bit integer, or the JSON it was instead (for the message).
#[derive(Debug, Clone, Copy)]
pub(crate) struct U32Part;

impl<'de> DeserializeSeed<'de> for U32Part {
    type Value = Result<u32, Json>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for U32Part {
    type Value = Result<u32, Json>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
        Ok(Err(Atom::Null.to_json()))
    }

    fn visit_bool<E: Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Err(Atom::Bool(v).to_json()))
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<Self::Value, E> {
        match u64::try_from(v) {
            Ok(u) => self.visit_u64(u),
            Err(_) => Ok(Err(Atom::I64(v).to_json())),
        }
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(u32::try_from(v).map_err(|_| Atom::U64(v).to_json()))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<Self::Value, E> {
        let atom = if v.is_finite() { Atom::F64(v) } else { Atom::Null };
        Ok(Err(atom.to_json()))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Err(Atom::Str(v).to_json()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(&mut seq)?;
        Ok(Err(Atom::Array.to_json()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        skip_rest(&mut map, false)?;
        Ok(Err(Atom::Object.to_json()))
    }
}
