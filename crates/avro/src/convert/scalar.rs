//! Leaf conversions (numbers, bytes, enums, fixed, decimals, times) and schema descriptions for messages.

use super::path::ConvertError;
use super::{decimal, time};
use crate::onepass::Kind;
use apache_avro::schema::{DecimalSchema, EnumSchema, FixedSchema, InnerDecimalSchema, UuidSchema};
use apache_avro::types::Value;
use apache_avro::{Days, Decimal, Duration, Millis, Months, Schema};
use serde_json::Value as Json;
use time::Zone;

const NANOS_PER_DAY: i128 = 86_400 * 1_000_000_000;

/// A JSON integer that fits in 32 bits.
pub(super) fn int(json: &Json) -> Option<i32> {
    json.as_i64().and_then(|i| i32::try_from(i).ok())
}

/// Any JSON number, or the strings `NaN`, `Infinity`, `-Infinity`.
pub(super) fn float(json: &Json) -> Option<f64> {
    match json {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// A string whose characters are code points 0-255, as bytes (Avro's JSON encoding of bytes and fixed).
pub(super) fn latin1(json: &Json) -> Option<Vec<u8>> {
    json.as_str()?
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect()
}

/// Significant digits a JSON number read as a 64-bit float is known to carry exactly.
const EXACT_FLOAT_DIGITS: usize = 15;

/// A decimal given as a string or a JSON number, as text; `None` for other JSON. A fractional or huge JSON
/// number is read as a 64-bit float, exact to 15 significant digits only: longer ones must come as strings,
/// or they could be silently rounded.
pub(super) fn number_text(json: &Json) -> Option<Result<String, ConvertError>> {
    match json {
        Json::String(s) => Some(Ok(s.clone())),
        Json::Number(n) if n.is_f64() => {
            let text = n.to_string();
            let mantissa = text.split(['e', 'E']).next().unwrap_or_default();
            let digits = mantissa
                .bytes()
                .filter(u8::is_ascii_digit)
                .skip_while(|&b| b == b'0')
                .count();
            Some(if digits > EXACT_FLOAT_DIGITS {
                Err(ConvertError::new(format!(
                    "the JSON number {text} has more than {EXACT_FLOAT_DIGITS} significant digits and may have been \
                     rounded: give decimals this long as strings"
                )))
            } else {
                Ok(text)
            })
        }
        Json::Number(n) => Some(Ok(n.to_string())),
        _ => None,
    }
}

pub(super) fn enum_value(json: &Json, e: &EnumSchema) -> Result<Value, ConvertError> {
    let symbol = json
        .as_str()
        .ok_or_else(|| ConvertError::expected(format!("enum {}", e.name), json))?;
    match e.symbols.iter().position(|s| s == symbol) {
        Some(i) => Ok(Value::Enum(i as u32, symbol.to_string())),
        None => Err(ConvertError::expected(
            format!("a symbol of enum {} ({})", e.name, e.symbols.join(", ")),
            json,
        )),
    }
}

pub(super) fn fixed(json: &Json, f: &FixedSchema) -> Result<Value, ConvertError> {
    let what = || {
        format!(
            "fixed {} ({} bytes as a string of code points 0-255)",
            f.name, f.size
        )
    };
    let bytes = latin1(json).ok_or_else(|| ConvertError::expected(what(), json))?;
    if bytes.len() != f.size {
        return Err(ConvertError::new(format!(
            "expected {}, got {} bytes",
            what(),
            bytes.len()
        )));
    }
    Ok(Value::Fixed(f.size, bytes))
}

pub(super) fn decimal_value(json: &Json, d: &DecimalSchema) -> Result<Value, ConvertError> {
    let text =
        number_text(json).ok_or_else(|| ConvertError::expected(describe_schema_decimal(d), json))??;
    let bytes = decimal::parse_decimal(&text, d.precision, d.scale).map_err(ConvertError::new)?;
    if let InnerDecimalSchema::Fixed(f) = &d.inner {
        if bytes.len() > f.size {
            return Err(ConvertError::new(format!(
                "{text:?} does not fit in fixed {} ({} bytes)",
                f.name, f.size
            )));
        }
    }
    Ok(Value::Decimal(Decimal::from(bytes.to_vec())))
}

/// A time of day in `per_unit`-nanosecond units, from `HH:MM:SS[.f]` or a raw count; `None` for other JSON.
pub(super) fn time_of_day(json: &Json, per_unit: i128) -> Option<Result<i64, ConvertError>> {
    Some(match json {
        Json::String(s) => time_of_day_text(s, per_unit),
        Json::Number(_) => time_of_day_count(json.as_i64()?, per_unit),
        _ => return None,
    })
}

/// `HH:MM:SS[.f]` in `per_unit`-nanosecond units (shared with the one-pass writer).
pub(crate) fn time_of_day_text(s: &str, per_unit: i128) -> Result<i64, ConvertError> {
    time::parse_time(s)
        .map(|n| (i128::from(n) / per_unit) as i64)
        .map_err(ConvertError::new)
}

/// A raw time-of-day count, checked to lie within one day (shared with the one-pass writer).
pub(crate) fn time_of_day_count(v: i64, per_unit: i128) -> Result<i64, ConvertError> {
    if (0..(NANOS_PER_DAY / per_unit) as i64).contains(&v) {
        Ok(v)
    } else {
        Err(ConvertError::new(format!(
            "{v} is not a time of day (0 to one day, exclusive)"
        )))
    }
}

/// A timestamp in `per_unit`-nanosecond units, from ISO-8601 text or a raw count.
pub(super) fn timestamp(json: &Json, zone: Zone, per_unit: i128) -> Result<i64, ConvertError> {
    match json {
        Json::String(s) => timestamp_text(s, zone, per_unit),
        _ => json
            .as_i64()
            .ok_or_else(|| ConvertError::expected(timestamp_wanted(zone), json)),
    }
}

/// ISO-8601 text in `per_unit`-nanosecond units (shared with the one-pass writer).
pub(crate) fn timestamp_text(s: &str, zone: Zone, per_unit: i128) -> Result<i64, ConvertError> {
    time::parse_timestamp(s, zone)
        .and_then(|n| time::nanos_to_unit(n, per_unit))
        .map_err(ConvertError::new)
}

/// What a timestamp of this zone rule accepts, for the error message.
pub(crate) fn timestamp_wanted(zone: Zone) -> &'static str {
    match zone {
        Zone::Required => "an ISO-8601 timestamp with offset, or an integer",
        Zone::Forbidden => "an ISO-8601 local date-time, or an integer",
    }
}

/// `{"months": m, "days": d, "millis": ms}` to an Avro duration.
pub(super) fn duration(json: &Json) -> Result<Value, ConvertError> {
    let expected = || ConvertError::expected("duration {\"months\", \"days\", \"millis\"}", json);
    let obj = json.as_object().ok_or_else(expected)?;
    let part = |k: &str| -> Result<u32, ConvertError> {
        match obj.get(k) {
            None => Ok(0),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| ConvertError::expected("an unsigned 32-bit integer", v).in_key(k)),
        }
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "months" | "days" | "millis"))
    {
        return Err(ConvertError::new("unknown field of a duration (months, days, millis)").in_key(k));
    }
    Ok(Value::Duration(Duration::new(
        Months::new(part("months")?),
        Days::new(part("days")?),
        Millis::new(part("millis")?),
    )))
}

/// Whether a JSON value of `kind` can be a value of `schema` (a resolved schema): picks union branches worth
/// trying (the converter's rule, and the one-pass plan's).
pub(crate) fn kind_fits(schema: &Schema, kind: Kind) -> bool {
    match kind {
        Kind::Null => matches!(schema, Schema::Null),
        Kind::Bool => matches!(schema, Schema::Boolean),
        Kind::Array => matches!(schema, Schema::Array(_)),
        Kind::Object => matches!(schema, Schema::Record(_) | Schema::Map(_) | Schema::Duration(_)),
        Kind::Number => matches!(
            schema,
            Schema::Int
                | Schema::Long
                | Schema::Float
                | Schema::Double
                | Schema::Decimal(_)
                | Schema::BigDecimal
                | Schema::Date
                | Schema::TimeMillis
                | Schema::TimeMicros
                | Schema::TimestampMillis
                | Schema::TimestampMicros
                | Schema::TimestampNanos
                | Schema::LocalTimestampMillis
                | Schema::LocalTimestampMicros
                | Schema::LocalTimestampNanos
        ),
        Kind::String => !matches!(
            schema,
            Schema::Null
                | Schema::Boolean
                | Schema::Int
                | Schema::Long
                | Schema::Array(_)
                | Schema::Map(_)
                | Schema::Record(_)
                | Schema::Union(_)
                | Schema::Duration(_)
        ),
    }
}

/// The type name an unnamed branch answers to in Avro-JSON's tagged union form (`{"<type>": value}`): the
/// underlying type's name for logical types; `None` for named types (their names) and types without one.
pub(crate) fn type_key(schema: &Schema) -> Option<&'static str> {
    Some(match schema {
        Schema::Null => "null",
        Schema::Boolean => "boolean",
        Schema::Int | Schema::Date | Schema::TimeMillis => "int",
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => "long",
        Schema::Float => "float",
        Schema::Double => "double",
        Schema::Bytes | Schema::BigDecimal | Schema::Decimal(_) | Schema::Uuid(UuidSchema::Bytes) => "bytes",
        Schema::String | Schema::Uuid(_) => "string",
        Schema::Array(_) => "array",
        Schema::Map(_) => "map",
        _ => return None,
    })
}

/// The kind of a JSON value, for [`kind_fits`].
pub(crate) fn json_kind(json: &Json) -> Kind {
    match json {
        Json::Null => Kind::Null,
        Json::Bool(_) => Kind::Bool,
        Json::Number(_) => Kind::Number,
        Json::String(_) => Kind::String,
        Json::Array(_) => Kind::Array,
        Json::Object(_) => Kind::Object,
    }
}

fn describe_schema_decimal(d: &DecimalSchema) -> String {
    format!("decimal({}, {}) as a string or number", d.precision, d.scale)
}

/// A short name of a schema for messages: `int`, `record com.example.Address`, `timestamp-millis`.
pub(crate) fn describe_schema(schema: &Schema) -> String {
    match schema {
        Schema::Null => "null".into(),
        Schema::Boolean => "boolean".into(),
        Schema::Int => "int".into(),
        Schema::Long => "long".into(),
        Schema::Float => "float".into(),
        Schema::Double => "double".into(),
        Schema::Bytes => "bytes".into(),
        Schema::String => "string".into(),
        Schema::Array(a) => format!("array of {}", describe_schema(&a.items)),
        Schema::Map(m) => format!("map of {}", describe_schema(&m.types)),
        Schema::Union(u) => {
            let names: Vec<String> = u.variants().iter().map(describe_schema).collect();
            format!("union [{}]", names.join(", "))
        }
        Schema::Record(r) => format!("record {}", r.name),
        Schema::Enum(e) => format!("enum {}", e.name),
        Schema::Fixed(f) => format!("fixed {}", f.name),
        Schema::Decimal(d) => describe_schema_decimal(d),
        Schema::BigDecimal => "big-decimal".into(),
        Schema::Uuid(UuidSchema::String | UuidSchema::Bytes | UuidSchema::Fixed(_)) => "uuid".into(),
        Schema::Date => "date (YYYY-MM-DD or days since epoch)".into(),
        Schema::TimeMillis => "time-millis (HH:MM:SS.sss or millis after midnight)".into(),
        Schema::TimeMicros => "time-micros (HH:MM:SS.ssssss or micros after midnight)".into(),
        Schema::TimestampMillis => "timestamp-millis".into(),
        Schema::TimestampMicros => "timestamp-micros".into(),
        Schema::TimestampNanos => "timestamp-nanos".into(),
        Schema::LocalTimestampMillis => "local-timestamp-millis".into(),
        Schema::LocalTimestampMicros => "local-timestamp-micros".into(),
        Schema::LocalTimestampNanos => "local-timestamp-nanos".into(),
        Schema::Duration(_) => "duration".into(),
        Schema::Ref { name } => name.to_string(),
    }
}
