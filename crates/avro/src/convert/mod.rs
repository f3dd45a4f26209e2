//! JSON payload to Avro [`Value`], walking the JSON and the schema together (pure). The reference for the
//! one-pass hot path ([`crate::onepass`]), which applies these same rules without building either tree.
//!
//! Rules, per schema type: records from objects (absent fields take their schema default, else fail;
//! undeclared fields fail or are dropped per [`UnknownFields`]); arrays, maps; enums from a symbol; `bytes`
//! and `fixed` from strings whose characters are code points 0-255 (Avro's JSON encoding); unions from a
//! plain value (the first branch that fits, `null` for the null branch) or Avro-JSON's `{"<type>": value}`;
//! logical types from their text forms (see [`time`], [`decimal`]) or their raw numbers; any JSON number
//! for `float`/`double`, integers in range for `int`/`long`.

pub(crate) mod decimal;
mod path;
pub(crate) mod scalar;
pub(crate) mod time;

pub use path::ConvertError;
pub(crate) use scalar::{describe_schema, json_kind, kind_fits, type_key};

use crate::config::UnknownFields;
use apache_avro::schema::{Names, NamespaceRef, RecordSchema, ResolvedSchema, UnionSchema, UuidSchema};
use apache_avro::types::Value;
use apache_avro::Schema;
use scalar::{
    decimal_value, duration, enum_value, fixed, float, int, latin1, number_text, time_of_day, timestamp,
};
use serde_json::Value as Json;
use std::collections::HashMap;
use time::Zone;

/// The named types (records, enums, fixed) of `schema`, owned, to resolve references while converting.
pub fn named_types(schema: &Schema) -> Result<Names, apache_avro::Error> {
    let resolved = ResolvedSchema::new(schema)?;
    Ok(resolved
        .get_names()
        .iter()
        .map(|(n, s)| (n.clone(), (*s).clone()))
        .collect())
}

/// A JSON-to-Avro walk: the named types of the schema (to resolve references) and the unknown-field policy.
#[derive(Debug, Clone, Copy)]
pub struct Converter<'a> {
    names: &'a Names,
    unknown_fields: UnknownFields,
}

impl<'a> Converter<'a> {
    /// A converter resolving named-type references through `names` (see [`named_types`]).
    pub fn new(names: &'a Names, unknown_fields: UnknownFields) -> Self {
        Converter {
            names,
            unknown_fields,
        }
    }

    /// Converts `json` to a value of `schema`.
    pub fn convert(&self, json: &Json, schema: &Schema) -> Result<Value, ConvertError> {
        self.value(json, schema, schema.namespace())
    }

    fn resolve<'s>(&'s self, schema: &'s Schema, ns: NamespaceRef<'_>) -> Result<&'s Schema, ConvertError> {
        match schema {
            Schema::Ref { name } => self
                .names
                .get(name)
                .or_else(|| self.names.get(&name.fully_qualified_name(ns)))
                .ok_or_else(|| ConvertError::new(format!("schema references unknown type {name}"))),
            other => Ok(other),
        }
    }

    fn value(&self, json: &Json, schema: &Schema, ns: NamespaceRef<'_>) -> Result<Value, ConvertError> {
        let expected = || ConvertError::expected(describe_schema(schema), json);
        Ok(match schema {
            Schema::Ref { .. } => return self.value(json, self.resolve(schema, ns)?, ns),
            Schema::Null => match json {
                Json::Null => Value::Null,
                _ => return Err(expected()),
            },
            Schema::Boolean => Value::Boolean(json.as_bool().ok_or_else(expected)?),
            Schema::Int => Value::Int(int(json).ok_or_else(expected)?),
            Schema::Long => Value::Long(json.as_i64().ok_or_else(expected)?),
            Schema::Float => {
                let f = float(json).ok_or_else(expected)?;
                if f.is_finite() && (f as f32).is_infinite() {
                    return Err(ConvertError::new(format!(
                        "expected float, got {json} (out of float range)"
                    )));
                }
                Value::Float(f as f32)
            }
            Schema::Double => Value::Double(float(json).ok_or_else(expected)?),
            Schema::Bytes => Value::Bytes(latin1(json).ok_or_else(expected)?),
            Schema::String => Value::String(json.as_str().ok_or_else(expected)?.to_string()),
            Schema::Array(a) => {
                let items = json.as_array().ok_or_else(expected)?;
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    out.push(self.value(item, &a.items, ns).map_err(|e| e.at_index(i))?);
                }
                Value::Array(out)
            }
            Schema::Map(m) => {
                let obj = json.as_object().ok_or_else(expected)?;
                let mut out = HashMap::with_capacity(obj.len());
                for (k, v) in obj {
                    out.insert(k.clone(), self.value(v, &m.types, ns).map_err(|e| e.in_key(k))?);
                }
                Value::Map(out)
            }
            Schema::Union(u) => return self.union(json, u, ns),
            Schema::Record(r) => return self.record(json, r),
            Schema::Enum(e) => return enum_value(json, e),
            Schema::Fixed(f) => return fixed(json, f),
            Schema::Decimal(d) => return decimal_value(json, d),
            Schema::BigDecimal => {
                let text = number_text(json).ok_or_else(expected)??;
                let d = text
                    .parse()
                    .map_err(|_| ConvertError::expected("a decimal number", json))?;
                Value::BigDecimal(d)
            }
            Schema::Uuid(u) => {
                let text = json.as_str().ok_or_else(expected)?;
                let uuid = apache_avro::Uuid::parse_str(text).map_err(|_| expected())?;
                match u {
                    UuidSchema::String | UuidSchema::Bytes | UuidSchema::Fixed(_) => Value::Uuid(uuid),
                }
            }
            Schema::Date => Value::Date(match json {
                Json::String(s) => {
                    let days = time::parse_date(s).map_err(ConvertError::new)?;
                    i32::try_from(days).map_err(|_| ConvertError::new(format!("{s:?} is out of range")))?
                }
                _ => int(json).ok_or_else(expected)?,
            }),
            Schema::TimeMillis => {
                let ms = time_of_day(json, 1_000_000).ok_or_else(expected)??;
                Value::TimeMillis(i32::try_from(ms).map_err(|_| expected())?)
            }
            Schema::TimeMicros => Value::TimeMicros(time_of_day(json, 1_000).ok_or_else(expected)??),
            Schema::TimestampMillis => Value::TimestampMillis(timestamp(json, Zone::Required, 1_000_000)?),
            Schema::TimestampMicros => Value::TimestampMicros(timestamp(json, Zone::Required, 1_000)?),
            Schema::TimestampNanos => Value::TimestampNanos(timestamp(json, Zone::Required, 1)?),
            Schema::LocalTimestampMillis => {
                Value::LocalTimestampMillis(timestamp(json, Zone::Forbidden, 1_000_000)?)
            }
            Schema::LocalTimestampMicros => {
                Value::LocalTimestampMicros(timestamp(json, Zone::Forbidden, 1_000)?)
            }
            Schema::LocalTimestampNanos => Value::LocalTimestampNanos(timestamp(json, Zone::Forbidden, 1)?),
            Schema::Duration(_) => return duration(json),
        })
    }

    fn record(&self, json: &Json, r: &RecordSchema) -> Result<Value, ConvertError> {
        let obj = json
            .as_object()
            .ok_or_else(|| ConvertError::expected(format!("record {}", r.name), json))?;
        let ns = r.name.namespace();
        let mut fields = Vec::with_capacity(r.fields.len());
        let mut present = 0;
        for f in &r.fields {
            let v = match (obj.get(&f.name), &f.default) {
                (Some(v), _) => {
                    present += 1;
                    self.value(v, &f.schema, ns)
                }
                (None, Some(default)) => self.value(default, &f.schema, ns).map_err(|e| {
                    ConvertError::new(format!("field absent and its schema default does not fit: {e}"))
                }),
                (None, None) => Err(ConvertError::new(format!(
                    "missing required field of record {} (the schema gives no default)",
                    r.name
                ))),
            };
            fields.push((f.name.clone(), v.map_err(|e| e.in_key(&f.name))?));
        }
        if present < obj.len() && self.unknown_fields == UnknownFields::Reject {
            if let Some(k) = obj.keys().find(|k| !r.lookup.contains_key(k.as_str())) {
                return Err(ConvertError::new(format!(
                    "unknown field: record {} has no such field (set avro.unknown_fields = \"ignore\" to drop \
                     undeclared fields)",
                    r.name
                ))
                .in_key(k));
            }
        }
        Ok(Value::Record(fields))
    }

    fn union(&self, json: &Json, u: &UnionSchema, ns: NamespaceRef<'_>) -> Result<Value, ConvertError> {
        let variants = u.variants();
        let expected = || {
            let names: Vec<String> = variants.iter().map(describe_schema).collect();
            ConvertError::expected(format!("one of [{}]", names.join(", ")), json)
        };
        if json.is_null() {
            let i = variants
                .iter()
                .position(|s| matches!(s, Schema::Null))
                .ok_or_else(expected)?;
            return Ok(Value::Union(i as u32, Box::new(Value::Null)));
        }
        // Avro-JSON's tagged form: {"<branch type name>": value}.
        let mut tagged_error = None;
        if let Some((key, inner)) = json
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.iter().next())
        {
            if let Some(i) = variants.iter().position(|s| self.branch_is(s, key, ns)) {
                match self.value(inner, &variants[i], ns) {
                    Ok(v) => return Ok(Value::Union(i as u32, Box::new(v))),
                    Err(e) => tagged_error = Some(e.in_key(key)),
                }
            }
        }
        // Plain form: the first branch of a fitting kind that converts.
        let mut first_error = None;
        let mut candidates = 0;
        for (i, s) in variants.iter().enumerate() {
            let resolved = self.resolve(s, ns)?;
            if !kind_fits(resolved, json_kind(json)) {
                continue;
            }
            candidates += 1;
            match self.value(json, resolved, ns) {
                Ok(v) => return Ok(Value::Union(i as u32, Box::new(v))),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match (tagged_error, first_error) {
            (Some(e), _) => Err(e),
            (None, Some(e)) if candidates == 1 => Err(e),
            _ => Err(expected()),
        }
    }

    /// Whether a branch answers to `key` in the tagged union form: its type name (fullname or short name for
    /// named types; the underlying type's name for logical types).
    fn branch_is(&self, schema: &Schema, key: &str, ns: NamespaceRef<'_>) -> bool {
        let schema = self.resolve(schema, ns).unwrap_or(schema);
        match schema.name() {
            Some(name) => key == name.name() || key == name.fullname(ns),
            None => type_key(schema) == Some(key),
        }
    }
}

#[cfg(test)]
mod tests;
