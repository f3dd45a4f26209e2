//! Avro binary in the Confluent wire format: magic byte 0, the schema id as 4 big-endian bytes, the datum.
//!
//! Pure. [`encode_payload`] is the whole hot path: JSON bytes -> framed Avro binary in one pass, driven by
//! the schema's compiled plan ([`crate::onepass`]), with no JSON or Avro value tree in between.
//! [`encode_payload_tree`] is the reference it must match byte for byte and rejection for rejection:
//! JSON bytes -> `serde_json::Value` -> [`Value`] ([`payload_to_value`]) -> apache_avro's writer.

use crate::config::UnknownFields;
use crate::convert::Converter;
use crate::error::{reason, Rejection};
use crate::schemas::LoadedSchema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::ResolvedSchema;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;

/// The Confluent wire-format magic byte.
pub const MAGIC: u8 = 0;

/// Length of the Confluent header (magic + schema id).
pub const HEADER_LEN: usize = 5;

/// Writes the Confluent header for `schema_id` into an empty buffer.
pub fn header(schema_id: u32, buf: &mut Vec<u8>) {
    buf.push(MAGIC);
    buf.extend_from_slice(&schema_id.to_be_bytes());
}

/// Splits a Confluent frame into schema id and datum; `None` if it is not one.
pub fn unframe(bytes: &[u8]) -> Option<(u32, &[u8])> {
    match bytes {
        [MAGIC, a, b, c, d, rest @ ..] => Some((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        _ => None,
    }
}

/// Decodes an Avro datum (no frame) written with `schema`.
pub fn decode_datum(schema: &Schema, mut datum: &[u8]) -> Result<Value, apache_avro::Error> {
    GenericDatumReader::builder(schema)
        .build()?
        .read_value(&mut datum)
}

/// Frames `value` (already known to fit `schema`) as Confluent Avro. `capacity_hint` sizes the buffer.
pub fn frame(
    schema_id: u32,
    schema: &Schema,
    value: &Value,
    capacity_hint: usize,
) -> Result<Vec<u8>, apache_avro::Error> {
    write_framed(
        schema_id,
        schema,
        ResolvedSchema::new(schema)?,
        value,
        capacity_hint,
    )
}

/// As [`frame`], for a loaded schema: skips resolving names when the schema has no reference to resolve
/// (resolving them is a walk of the whole schema with allocations, on every call).
pub fn frame_loaded(
    schema_id: u32,
    schema: &LoadedSchema,
    value: &Value,
    capacity_hint: usize,
) -> Result<Vec<u8>, apache_avro::Error> {
    let resolved = if schema.has_refs {
        ResolvedSchema::new(&schema.schema)?
    } else {
        ResolvedSchema::new_with_schemata(vec![])?
    };
    write_framed(schema_id, &schema.schema, resolved, value, capacity_hint)
}

fn write_framed(
    schema_id: u32,
    schema: &Schema,
    resolved: ResolvedSchema<'_>,
    value: &Value,
    capacity_hint: usize,
) -> Result<Vec<u8>, apache_avro::Error> {
    let mut buf = Vec::with_capacity(HEADER_LEN + capacity_hint);
    header(schema_id, &mut buf);
    // The converter builds values by walking the schema, so validation would walk it a second time.
    let writer = GenericDatumWriter::builder(schema)
        .resolved_schemata(resolved)
        .validate(false)
        .build()?;
    writer.write_value_ref(&mut buf, value)?;
    Ok(buf)
}

/// Parses JSON payload bytes into an Avro value of `schema`, or says why it cannot (a [`Rejection`]).
pub fn payload_to_value(
    schema: &LoadedSchema,
    payload: &[u8],
    unknown_fields: UnknownFields,
) -> Result<Value, Rejection> {
    let json: serde_json::Value = serde_json::from_slice(payload).map_err(|e| Rejection {
        reason: reason::INVALID_JSON,
        detail: format!("payload is not valid JSON: {e}"),
    })?;
    Converter::new(&schema.names, unknown_fields)
        .convert(&json, &schema.schema)
        .map_err(|e| Rejection {
            reason: reason::SCHEMA_MISMATCH,
            detail: format!("payload does not fit schema {}: {e}", schema.origin),
        })
}

/// The hot path: JSON payload -> Confluent-framed Avro under `schema_id`, in one pass (see
/// [`crate::onepass`]). Same bytes and same rejections as [`encode_payload_tree`].
pub fn encode_payload(
    schema: &LoadedSchema,
    schema_id: u32,
    payload: &[u8],
    unknown_fields: UnknownFields,
) -> Result<Vec<u8>, Rejection> {
    crate::onepass::encode(&schema.plan, &schema.origin, schema_id, payload, unknown_fields)
}

/// The reference path: JSON payload -> `serde_json::Value` -> Avro [`Value`] -> apache_avro's writer ->
/// Confluent frame. Kept to hold [`encode_payload`] to it in tests and to measure against.
pub fn encode_payload_tree(
    schema: &LoadedSchema,
    schema_id: u32,
    payload: &[u8],
    unknown_fields: UnknownFields,
) -> Result<Vec<u8>, Rejection> {
    let value = payload_to_value(schema, payload, unknown_fields)?;
    frame_loaded(schema_id, schema, &value, payload.len()).map_err(|e| Rejection {
        reason: reason::SCHEMA_MISMATCH,
        detail: format!("payload could not be written with schema {}: {e}", schema.origin),
    })
}

/// A Confluent-framed Avro `string` (keys with [`crate::KeyFormat::Avro`]).
pub fn frame_string(schema_id: u32, s: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER_LEN + 10 + s.len());
    header(schema_id, &mut buf);
    // Avro string: zig-zag varint length, then UTF-8 bytes.
    let mut n = ((s.len() as i64) << 1) as u64; // non-negative: zig-zag is a plain shift
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
    buf.extend_from_slice(s.as_bytes());
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"{"type":"record","name":"E","namespace":"t","fields":[
        {"name":"id","type":"long"},{"name":"name","type":"string"},
        {"name":"opt","type":["null","int"],"default":null}]}"#;

    #[test]
    fn framing_bytes() {
        let schema = LoadedSchema::parse(SCHEMA, "E.avsc").unwrap();
        let bytes = encode_payload(
            &schema,
            0x0102_0304,
            br#"{"id": 1, "name": "ab"}"#,
            UnknownFields::Reject,
        )
        .unwrap();
        // magic, id BE, long 1 (zig-zag 2), string len 2 (zig-zag 4) "ab", union branch 0 (null).
        assert_eq!(bytes, [0, 1, 2, 3, 4, 2, 4, b'a', b'b', 0]);
        let (id, datum) = unframe(&bytes).unwrap();
        assert_eq!(id, 0x0102_0304);
        let decoded = decode_datum(&schema.schema, datum).unwrap();
        let expected =
            payload_to_value(&schema, br#"{"id": 1, "name": "ab"}"#, UnknownFields::Reject).unwrap();
        assert_eq!(decoded, expected);
        assert_eq!(unframe(&[1, 0, 0, 0, 1]), None);
        assert_eq!(unframe(&[0, 0, 0]), None);
    }

    #[test]
    fn string_keys_frame_like_apache_avro() {
        for key in ["", "order-42", &"k".repeat(300)] {
            let framed = frame_string(7, key);
            let reference = frame(7, &Schema::String, &Value::String(key.to_string()), 0).unwrap();
            assert_eq!(framed, reference);
        }
    }

    #[test]
    fn rejections_carry_reason_codes() {
        let schema = LoadedSchema::parse(SCHEMA, "E.avsc").unwrap();
        let r = encode_payload(&schema, 1, b"{nope", UnknownFields::Reject).unwrap_err();
        assert_eq!(r.reason, reason::INVALID_JSON);
        assert!(
            r.detail
                .starts_with("payload is not valid JSON: key must be a string at line 1 column 2"),
            "{}",
            r.detail
        );
        let r =
            encode_payload(&schema, 1, br#"{"id": "x", "name": "a"}"#, UnknownFields::Reject).unwrap_err();
        assert_eq!(r.reason, reason::SCHEMA_MISMATCH);
        assert_eq!(
            r.detail,
            r#"payload does not fit schema E.avsc: $.id: expected long, got "x""#
        );
        let r = encode_payload(&schema, 1, &[0xff, 0xfe], UnknownFields::Reject).unwrap_err();
        assert_eq!(r.reason, reason::INVALID_JSON);
    }
}
