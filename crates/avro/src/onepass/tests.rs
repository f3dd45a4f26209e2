//! The one-pass encoder against the tree path, case by case: the JSON side (numbers, strings, escapes,
//! syntax, nesting), the converter's and the framing tests' own cases. Schema shapes are in `shapes.rs`.

use crate::config::UnknownFields;
use crate::error::{reason, Rejection};
use crate::frame::{decode_datum, encode_payload, encode_payload_tree, unframe};
use crate::schemas::LoadedSchema;
use apache_avro::types::Value;

/// Encodes `payload` both ways under both unknown-field policies, asserts they agree, returns the new
/// result under `Reject`. Maps may differ in entry order only (the tree path's order is a `HashMap`'s).
pub(super) fn agree(schema: &LoadedSchema, payload: &[u8]) -> Result<Vec<u8>, Rejection> {
    let mut first = None;
    for unknown in [UnknownFields::Reject, UnknownFields::Ignore] {
        let new = encode_payload(schema, 7, payload, unknown);
        let old = encode_payload_tree(schema, 7, payload, unknown);
        let shown = String::from_utf8_lossy(payload);
        match (&new, &old) {
            (Ok(a), Ok(b)) if a != b => {
                assert_eq!(a.len(), b.len(), "{shown}: lengths differ");
                let decode = |bytes: &[u8]| {
                    let (_, datum) = unframe(bytes).expect("framed");
                    decode_datum(&schema.schema, datum).expect("decodes")
                };
                assert!(
                    schema.text.contains("\"map\""),
                    "{shown}: bytes differ\n{a:?}\n{b:?}"
                );
                let (x, y) = (decode(a), decode(b));
                assert!(same_value(&x, &y), "{shown}: values differ\n{x:?}\n{y:?}");
            }
            (Ok(_), Ok(_)) => {}
            (Err(a), Err(b)) => assert_eq!(a, b, "{shown} ({unknown:?})"),
            _ => panic!("{shown} ({unknown:?}): one-pass {new:?}, tree {old:?}"),
        }
        first.get_or_insert(new);
    }
    first.unwrap_or_else(|| unreachable!())
}

/// Value equality with maps compared by key and floats by bits (NaN is NaN).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Double(x), Value::Double(y)) => x.to_bits() == y.to_bits(),
        (Value::Union(i, x), Value::Union(j, y)) => i == j && same_value(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y))
        }
        (Value::Record(x), Value::Record(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((k, x), (l, y))| k == l && same_value(x, y))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len() && x.iter().all(|(k, x)| y.get(k).is_some_and(|y| same_value(x, y)))
        }
        _ => a == b,
    }
}

/// [`agree`], for cases whose outcome needs no further look.
pub(super) fn check(schema: &LoadedSchema, payload: &[u8]) {
    let _ = agree(schema, payload);
}

pub(super) fn schema(text: &str) -> LoadedSchema {
    LoadedSchema::parse(text, "T.avsc").unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A record `{"v": <ty>}`.
pub(super) fn field_schema(ty: &str) -> LoadedSchema {
    schema(&format!(
        r#"{{"type":"record","name":"R","namespace":"t","fields":[{{"name":"v","type":{ty}}}]}}"#
    ))
}

/// Checks `{"v": <value>}` for each value under a `{"v": <ty>}` record.
pub(super) fn values(ty: &str, values: &[&str]) {
    let s = field_schema(ty);
    for v in values {
        check(&s, format!(r#"{{"v": {v}}}"#).as_bytes());
    }
}

pub(super) fn detail(r: Result<Vec<u8>, Rejection>) -> String {
    let r = r.expect_err("rejected");
    format!("{}: {}", r.reason, r.detail)
}

const NUMBERS: &[&str] = &[
    "0",
    "-7",
    "3000000000",
    "3.5",
    "1e3",
    "1E3",
    "1e-3",
    "-0",
    "-0.0",
    "0.0",
    "2147483647",
    "2147483648",
    "-2147483648",
    "-2147483649",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "1e300",
    "-1e300",
    "3.4e38",
    "3.5e38",
    "1e-50",
    "1e400",
    "01",
    "1.",
    ".5",
    "-",
    "+1",
    "12345678901234567.89",
    "0.1",
    "\"NaN\"",
    "\"Infinity\"",
    "\"-Infinity\"",
    "\"1\"",
    "null",
    "true",
    "[]",
    "{}",
    "[1]",
    "{\"a\":1}",
];

#[test]
fn numbers_of_every_form_and_range() {
    for ty in [
        r#""int""#,
        r#""long""#,
        r#""float""#,
        r#""double""#,
        r#""string""#,
        r#""boolean""#,
        r#""null""#,
    ] {
        values(ty, NUMBERS);
    }
    let s = field_schema(r#""long""#);
    assert!(detail(agree(&s, br#"{"v": 1e400}"#))
        .starts_with("invalid_json: payload is not valid JSON: number out of range"));
    assert_eq!(
        detail(agree(&s, br#"{"v": -0}"#)),
        "schema_mismatch: payload does not fit schema T.avsc: $.v: expected long, got -0.0"
    );
}

#[test]
fn strings_escapes_and_bytes() {
    let texts: &[&str] = &[
        r#""""#,
        r#""hé""#,
        r#""h\u00e9""#,
        r#""\ud83d\ude00""#,
        r#""\ud83d""#,
        r#""\udc00x""#,
        r#""\u0000""#,
        r#""a\u00ff""#,
        r#""€""#,
        r#""\u0100""#,
        r#""\n\t\"\\\/""#,
        r#""\x""#,
        "\"a\u{1}b\"",
        "\"tab\there\"",
        r#""\uD83D\uDE00""#,
        r#""\u12""#,
        &format!("\"{}\"", "x".repeat(100)),
    ];
    for ty in [
        r#""string""#,
        r#""bytes""#,
        r#"{"type":"fixed","name":"F2","size":2}"#,
        r#"{"type":"fixed","name":"F1","size":1}"#,
    ] {
        values(ty, texts);
    }
    let s = field_schema(r#""string""#);
    assert!(detail(agree(&s, br#"{"v": "\ud83d"}"#)).starts_with("invalid_json:"));
    assert_eq!(agree(&s, br#"{"v": "\u00e9"}"#).unwrap()[5..], [4, 0xc3, 0xa9]);
    check(&s, b"{\"v\": \"\xff\"}");
    check(&s, b"{\"v\": \"\xc3\xa9\"}");
    // Escapes in keys.
    check(&s, br#"{"\u0076": "x"}"#);
    check(&s, br#"{"\u0076": "x", "v": "y"}"#);
}

#[test]
fn json_syntax_whitespace_and_trailing_input() {
    let s = field_schema(r#"["null", "int"]"#);
    for p in [
        "",
        " ",
        "{",
        "}",
        "{\"v\"",
        "{\"v\":",
        "{\"v\":1",
        "{\"v\":1,}",
        "{\"v\":1}}",
        "{\"v\":1} x",
        "{}{}",
        " \n\t{ \r\n\"v\" \t:\n 1 \n} \n",
        "\u{feff}{\"v\":1}",
        "{\"v\":1}\u{0}",
        "{'v':1}",
        "{\"v\":nul}",
        "{\"v\":[1,]}",
        "{\"v\":tru}",
        "[",
        "[]",
        "null",
        "1",
        "\"x\"",
        "{\"v\":1,\"v\":null}",
        "{\"v\":\"x\" x}",
        "{\"v\":\"x\", \"w\": [1,}",
    ] {
        check(&s, p.as_bytes());
    }
    // A mismatch early, invalid JSON later: invalid JSON wins.
    let r = agree(&s, br#"{"v": "x", "w": [1,}"#);
    assert!(detail(r).starts_with("invalid_json:"));
    assert!(detail(agree(&s, b"")).contains("EOF while parsing a value at line 1 column 0"));
}

#[test]
fn deep_nesting_hits_the_same_recursion_limit() {
    let s = field_schema(r#""string""#);
    let ignored = schema(
        r#"{"type":"record","name":"R","fields":[{"name":"v","type":["null",{"type":"array","items":{"type":"array","items":"int"}}]}]}"#,
    );
    for depth in [1, 2, 100, 126, 127, 128, 129, 200] {
        let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        check(&s, format!(r#"{{"v": "x", "w": {nested}}}"#).as_bytes());
        check(&s, format!(r#"{{"v": {nested}}}"#).as_bytes());
        check(&ignored, format!(r#"{{"v": {nested}}}"#).as_bytes());
        let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        check(&s, format!(r#"{{"v": "x", "w": {objects}}}"#).as_bytes());
    }
}

#[test]
fn the_converter_and_frame_test_cases() {
    let order = schema(
        include_str!("../convert/tests.rs")
            .split("const ORDER: &str = r#\"")
            .nth(1)
            .and_then(|s| s.split("\"#;").next())
            .unwrap_or_default(),
    );
    for p in [
        r#"{"id": "o1", "items": [{"sku": "a", "qty": 2}], "billing": {"city": "Oslo"}, "shipping": {"city": "Bergen"}, "tags": {"x": 1}, "status": "PAID"}"#,
        r#"{"id": "o1", "items": [], "billing": {"city": "Oslo"}}"#,
        r#"{"id": "o1", "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 1}, {"sku": "c", "qty": "three"}], "billing": {"city": "Oslo"}}"#,
        r#"{"id": "o1", "items": [], "billing": {}}"#,
        r#"{"id": "o1", "items": [], "billing": {"city": "Oslo"}, "colour": "red"}"#,
        r#"{"id": "o1", "items": [], "billing": {"city": "Oslo"}, "status": "LOST"}"#,
        r#"{"id": "o1", "items": [], "billing": {"city": "Oslo"}, "tags": {"a key": "x"}}"#,
        r#"[1]"#,
        r#"{"id": "o1", "items": [], "billing": {"city": "Oslo"}, "shipping": {"city": 5}}"#,
        r#"{"id": "o1", "items": [{"sku": "a", "qty": 2}], "billing": {"city": "Oslo"}, "shipping": null, "tags": {"x": 1}, "status": "PAID", "note": "hi"}"#,
    ] {
        check(&order, p.as_bytes());
    }
    let node = schema(
        r#"{"type": "record", "name": "Node", "namespace": "n", "fields": [
        {"name": "v", "type": "int"}, {"name": "next", "type": ["null", "Node"], "default": null}]}"#,
    );
    check(&node, br#"{"v": 1, "next": {"v": 2}}"#);
    check(&node, br#"{"v": 1, "next": {"v": "x"}}"#);
    let frame = schema(
        r#"{"type":"record","name":"E","namespace":"t","fields":[{"name":"id","type":"long"},
        {"name":"name","type":"string"},{"name":"opt","type":["null","int"],"default":null}]}"#,
    );
    assert_eq!(
        agree(&frame, br#"{"id": 1, "name": "ab"}"#),
        Ok(vec![0, 0, 0, 0, 7, 2, 4, b'a', b'b', 0])
    );
    for p in [&b"{nope"[..], br#"{"id": "x", "name": "a"}"#, &[0xff, 0xfe]] {
        check(&frame, p);
    }
}

#[test]
fn the_demo_payloads_and_non_record_roots() {
    let s = schema(include_str!("../../../../config/schemas/OrderCreated.avsc"));
    let bytes = agree(&s, include_bytes!("../../tests/data/OrderCreated.json")).unwrap();
    assert_eq!(bytes[..5], [0, 0, 0, 0, 7]);
    let s = schema(include_str!("../../../../config/schemas/OrderPaid.avsc"));
    agree(&s, include_bytes!("../../tests/data/OrderPaid.json")).unwrap();
    for (root, payloads) in [
        (r#""string""#, &["\"k\"", "1", "null"][..]),
        (r#"["null","int"]"#, &["null", "1", "\"x\""][..]),
        (r#"{"type":"array","items":"int"}"#, &["[1,2]", "[]", "{}"][..]),
    ] {
        let s = schema(root);
        for p in payloads {
            check(&s, p.as_bytes());
        }
    }
    assert_eq!(
        detail(agree(&schema(r#""string""#), b"1")),
        format!(
            "{}: payload does not fit schema T.avsc: $: expected string, got 1",
            reason::SCHEMA_MISMATCH
        )
    );
}
