//! Avro binary writers and the leaf conversions (numbers, strings, bytes, enums, fixed, decimals, uuids,
//! dates and times), each the converter's rule (`convert/scalar.rs`, `convert/mod.rs`) applied to an
//! [`Atom`] and written straight to the output.

use super::json::Atom;
use super::plan::{Node, UuidForm};
use super::Outcome;
use crate::config::UnknownFields;
use crate::convert::decimal::parse_decimal;
use crate::convert::scalar;
use crate::convert::time::{self, Zone};
use crate::convert::{describe_schema, ConvertError, Converter};
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use std::borrow::Cow;

/// Significant digits a JSON number read as a 64-bit float is known to carry exactly.
const EXACT_FLOAT_DIGITS: usize = 15;

/// Avro `long` (and `int`): zig-zag, then base-128 varint.
pub(crate) fn zigzag(out: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// An Avro length or count.
pub(crate) fn write_len(out: &mut Vec<u8>, n: usize) {
    zigzag(out, n as i64);
}

/// Avro `string` / `bytes`: length, then the bytes.
pub(crate) fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Sets the one-byte count placeholder at `pos` to `count` (a non-negative Avro long), making room if the
/// count needs more bytes. A count of 0 leaves the single `0` an empty array or map is.
pub(crate) fn patch_count(out: &mut Vec<u8>, pos: usize, count: usize) {
    if count < 64 {
        out[pos] = (count << 1) as u8;
        return;
    }
    let mut varint = Vec::with_capacity(10);
    write_len(&mut varint, count);
    out[pos] = varint[0];
    out.splice(pos + 1..pos + 1, varint[1..].iter().copied());
}

/// `expected <what>, got <json>`.
pub(crate) fn expected(what: &str, got: Atom<'_>) -> ConvertError {
    ConvertError::expected(what, &got.to_json())
}

/// The number of bytes of a string of code points 0-255, `None` if it has another.
fn latin1_len(s: &str) -> Option<usize> {
    if s.is_ascii() {
        return Some(s.len());
    }
    let mut n = 0;
    for c in s.chars() {
        if u32::from(c) > 0xff {
            return None;
        }
        n += 1;
    }
    Some(n)
}

/// Writes a string already checked by [`latin1_len`] as its code points.
fn write_latin1(out: &mut Vec<u8>, s: &str) {
    if s.is_ascii() {
        out.extend_from_slice(s.as_bytes());
    } else {
        out.extend(s.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(0)));
    }
}

/// A JSON integer that fits in 32 bits.
fn int(atom: Atom<'_>) -> Option<i32> {
    atom.as_i64().and_then(|i| i32::try_from(i).ok())
}

/// Any JSON number, or the strings `NaN`, `Infinity`, `-Infinity`.
fn float(atom: Atom<'_>) -> Option<f64> {
    match atom {
        Atom::Str("NaN") => Some(f64::NAN),
        Atom::Str("Infinity") => Some(f64::INFINITY),
        Atom::Str("-Infinity") => Some(f64::NEG_INFINITY),
        other => other.as_f64(),
    }
}

/// A decimal given as a string or a JSON number, as text (the converter's `number_text`).
fn number_text(atom: Atom<'_>) -> Option<Result<Cow<'_, str>, ConvertError>> {
    Some(Ok(match atom {
        Atom::Str(s) => Cow::Borrowed(s),
        Atom::U64(u) => Cow::Owned(u.to_string()),
        Atom::I64(i) => Cow::Owned(i.to_string()),
        Atom::F64(_) => {
            let text = atom.to_json().to_string();
            let mantissa = text.split(['e', 'E']).next().unwrap_or_default();
            let digits = mantissa
                .bytes()
                .filter(u8::is_ascii_digit)
                .skip_while(|&b| b == b'0')
                .count();
            if digits > EXACT_FLOAT_DIGITS {
                return Some(Err(ConvertError::new(format!(
                    "the JSON number {text} has more than {EXACT_FLOAT_DIGITS} significant digits and may have been \
                     rounded: give decimals this long as strings"
                ))));
            }
            Cow::Owned(text)
        }
        _ => return None,
    }))
}

/// A time of day in `per_unit`-nanosecond units, from `HH:MM:SS[.f]` or a raw count; `None` for other JSON.
fn time_of_day(atom: Atom<'_>, per_unit: i128) -> Option<Result<i64, ConvertError>> {
    Some(match atom {
        Atom::Str(s) => scalar::time_of_day_text(s, per_unit),
        Atom::U64(_) | Atom::I64(_) | Atom::F64(_) => scalar::time_of_day_count(atom.as_i64()?, per_unit),
        _ => return None,
    })
}

/// A timestamp in `per_unit`-nanosecond units, from ISO-8601 text or a raw count.
fn timestamp(atom: Atom<'_>, zone: Zone, per_unit: i128) -> Result<i64, ConvertError> {
    match atom {
        Atom::Str(s) => scalar::timestamp_text(s, zone, per_unit),
        _ => atom
            .as_i64()
            .ok_or_else(|| expected(scalar::timestamp_wanted(zone), atom)),
    }
}

/// Converts and writes a leaf value. Containers, unions and unresolved references are the walker's.
pub(crate) fn leaf(out: &mut Vec<u8>, node: &Node, atom: Atom<'_>, unknown: UnknownFields) -> Outcome {
    let fail = |schema: Schema| expected(&describe_schema(&schema), atom);
    match node {
        Node::Null => match atom {
            Atom::Null => {}
            _ => return Err(fail(Schema::Null)),
        },
        Node::Boolean => match atom {
            Atom::Bool(b) => out.push(u8::from(b)),
            _ => return Err(fail(Schema::Boolean)),
        },
        Node::Int => zigzag(out, i64::from(int(atom).ok_or_else(|| fail(Schema::Int))?)),
        Node::Long => zigzag(out, atom.as_i64().ok_or_else(|| fail(Schema::Long))?),
        Node::Float => {
            let f = float(atom).ok_or_else(|| fail(Schema::Float))?;
            if f.is_finite() && (f as f32).is_infinite() {
                return Err(ConvertError::new(format!(
                    "expected float, got {} (out of float range)",
                    atom.to_json()
                )));
            }
            out.extend_from_slice(&(f as f32).to_le_bytes());
        }
        Node::Double => {
            out.extend_from_slice(&float(atom).ok_or_else(|| fail(Schema::Double))?.to_le_bytes())
        }
        Node::Bytes => match atom {
            Atom::Str(s) => {
                let n = latin1_len(s).ok_or_else(|| fail(Schema::Bytes))?;
                write_len(out, n);
                write_latin1(out, s);
            }
            _ => return Err(fail(Schema::Bytes)),
        },
        Node::String => match atom {
            Atom::Str(s) => write_bytes(out, s.as_bytes()),
            _ => return Err(fail(Schema::String)),
        },
        Node::Enum {
            describe,
            symbols,
            mismatch,
        } => {
            let Atom::Str(s) = atom else {
                return Err(expected(describe, atom));
            };
            let i = symbols
                .iter()
                .position(|x| &**x == s)
                .ok_or_else(|| expected(mismatch, atom))?;
            zigzag(out, i as i64);
        }
        Node::Fixed { size, what } => {
            let n = match atom {
                Atom::Str(s) => latin1_len(s),
                _ => None,
            };
            let (Some(n), Atom::Str(s)) = (n, atom) else {
                return Err(expected(what, atom));
            };
            if n != *size {
                return Err(ConvertError::new(format!("expected {what}, got {n} bytes")));
            }
            write_latin1(out, s);
        }
        Node::Decimal {
            precision,
            scale,
            fixed,
            describe,
        } => {
            let text = number_text(atom).ok_or_else(|| expected(describe, atom))??;
            let bytes = parse_decimal(&text, *precision, *scale).map_err(ConvertError::new)?;
            match fixed {
                None => write_bytes(out, &bytes),
                Some((size, name)) => {
                    if bytes.len() > *size {
                        return Err(ConvertError::new(format!(
                            "{text:?} does not fit in fixed {name} ({size} bytes)"
                        )));
                    }
                    let sign = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
                        0xff
                    } else {
                        0
                    };
                    out.extend(std::iter::repeat_n(sign, size - bytes.len()));
                    out.extend_from_slice(&bytes);
                }
            }
        }
        Node::BigDecimal => big_decimal(out, atom, unknown)?,
        Node::Uuid(form) => {
            let text = match atom {
                Atom::Str(s) => s,
                _ => return Err(fail(Schema::Uuid(apache_avro::schema::UuidSchema::String))),
            };
            let uuid = apache_avro::Uuid::parse_str(text)
                .map_err(|_| fail(Schema::Uuid(apache_avro::schema::UuidSchema::String)))?;
            match form {
                UuidForm::String => {
                    let mut buf = [0u8; 36];
                    write_bytes(out, uuid.hyphenated().encode_lower(&mut buf).as_bytes());
                }
                UuidForm::Bytes => write_bytes(out, uuid.as_bytes()),
                UuidForm::Fixed => out.extend_from_slice(uuid.as_bytes()),
            }
        }
        Node::Date => {
            let days = match atom {
                Atom::Str(s) => {
                    let days = time::parse_date(s).map_err(ConvertError::new)?;
                    i32::try_from(days).map_err(|_| ConvertError::new(format!("{s:?} is out of range")))?
                }
                _ => int(atom).ok_or_else(|| fail(Schema::Date))?,
            };
            zigzag(out, i64::from(days));
        }
        Node::TimeMillis => {
            let ms = time_of_day(atom, 1_000_000).ok_or_else(|| fail(Schema::TimeMillis))??;
            let ms = i32::try_from(ms).map_err(|_| fail(Schema::TimeMillis))?;
            zigzag(out, i64::from(ms));
        }
        Node::TimeMicros => zigzag(
            out,
            time_of_day(atom, 1_000).ok_or_else(|| fail(Schema::TimeMicros))??,
        ),
        Node::Timestamp { zone, per_unit } => zigzag(out, timestamp(atom, *zone, *per_unit)?),
        Node::Array { describe, .. } | Node::Map { describe, .. } => return Err(expected(describe, atom)),
        Node::Record(r) => return Err(expected(&r.describe, atom)),
        Node::Union(u) => return Err(expected(&u.expected, atom)),
        Node::Duration => return Err(expected(DURATION, atom)),
        Node::Unresolved(message) => return Err(ConvertError::new(&**message)),
    }
    Ok(())
}

/// What a duration is, for messages.
pub(crate) const DURATION: &str = "duration {\"months\", \"days\", \"millis\"}";

/// `big-decimal`, a rare logical type: through the converter and apache_avro's writer, which own its
/// parsing and its encoding.
fn big_decimal(out: &mut Vec<u8>, atom: Atom<'_>, unknown: UnknownFields) -> Outcome {
    let names = Default::default();
    let value = Converter::new(&names, unknown).convert(&atom.to_json(), &Schema::BigDecimal)?;
    GenericDatumWriter::builder(&Schema::BigDecimal)
        .build()
        .and_then(|w| w.write_value_ref(out, &value))
        .map(|_| ())
        .map_err(|e| ConvertError::new(e.to_string()))
}
