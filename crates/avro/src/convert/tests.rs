//! Every Avro type and logical type, and every error path with its message.

use super::*;
use apache_avro::{Decimal, Schema};
use serde_json::json;

fn convert_with(schema: &str, json: Json, unknown: UnknownFields) -> Result<Value, String> {
    let schema = Schema::parse_str(schema).unwrap();
    let names = named_types(&schema).unwrap();
    Converter::new(&names, unknown)
        .convert(&json, &schema)
        .map_err(|e| e.to_string())
}

fn convert(schema: &str, json: Json) -> Result<Value, String> {
    convert_with(schema, json, UnknownFields::Reject)
}

/// Converts a single-field record `{"v": <type>}` and returns the field's value.
fn field(ty: &str, json: Json) -> Result<Value, String> {
    let schema =
        format!(r#"{{"type":"record","name":"R","namespace":"t","fields":[{{"name":"v","type":{ty}}}]}}"#);
    match convert(&schema, json!({ "v": json }))? {
        Value::Record(mut fields) => Ok(fields.remove(0).1),
        other => panic!("not a record: {other:?}"),
    }
}

#[test]
fn primitives() {
    assert_eq!(field(r#""null""#, json!(null)), Ok(Value::Null));
    assert_eq!(field(r#""boolean""#, json!(true)), Ok(Value::Boolean(true)));
    assert_eq!(field(r#""int""#, json!(-7)), Ok(Value::Int(-7)));
    assert_eq!(field(r#""long""#, json!(1_i64 << 40)), Ok(Value::Long(1 << 40)));
    assert_eq!(field(r#""float""#, json!(1.5)), Ok(Value::Float(1.5)));
    assert_eq!(field(r#""double""#, json!(2.25)), Ok(Value::Double(2.25)));
    assert_eq!(field(r#""string""#, json!("hé")), Ok(Value::String("hé".into())));
    assert_eq!(
        field(r#""bytes""#, json!("a\u{00ff}")),
        Ok(Value::Bytes(vec![b'a', 0xff]))
    );
}

#[test]
fn numeric_widening_is_lossless_only() {
    assert_eq!(field(r#""long""#, json!(3)), Ok(Value::Long(3)));
    assert_eq!(field(r#""float""#, json!(3)), Ok(Value::Float(3.0)));
    assert_eq!(field(r#""double""#, json!(3)), Ok(Value::Double(3.0)));
    assert!(matches!(field(r#""double""#, json!("NaN")), Ok(Value::Double(d)) if d.is_nan()));
    assert_eq!(
        field(r#""double""#, json!("-Infinity")),
        Ok(Value::Double(f64::NEG_INFINITY))
    );
    assert_eq!(
        field(r#""int""#, json!(3_000_000_000_i64)),
        Err("$.v: expected int, got 3000000000".into())
    );
    assert_eq!(
        field(r#""int""#, json!(3.5)),
        Err("$.v: expected int, got 3.5".into())
    );
    assert_eq!(
        field(r#""long""#, json!(u64::MAX)),
        Err(format!("$.v: expected long, got {}", u64::MAX))
    );
    assert_eq!(
        field(r#""float""#, json!(1e300)),
        Err("$.v: expected float, got 1e+300 (out of float range)".into())
    );
}

#[test]
fn primitive_errors_name_path_and_expectation() {
    assert_eq!(
        field(r#""boolean""#, json!("yes")),
        Err(r#"$.v: expected boolean, got "yes""#.into())
    );
    assert_eq!(
        field(r#""string""#, json!(5)),
        Err("$.v: expected string, got 5".into())
    );
    assert_eq!(
        field(r#""string""#, json!(null)),
        Err("$.v: expected string, got null".into())
    );
    assert_eq!(
        field(r#""null""#, json!(0)),
        Err("$.v: expected null, got 0".into())
    );
    assert_eq!(
        field(r#""bytes""#, json!("€")),
        Err(r#"$.v: expected bytes, got "€""#.into())
    );
    assert_eq!(
        field(r#""bytes""#, json!([1])),
        Err("$.v: expected bytes, got an array".into())
    );
}

const ORDER: &str = r#"{
  "type": "record", "name": "Order", "namespace": "com.example",
  "fields": [
    {"name": "id", "type": "string"},
    {"name": "items", "type": {"type": "array", "items": {
        "type": "record", "name": "Item", "fields": [
          {"name": "sku", "type": "string"},
          {"name": "qty", "type": "int"}]}}},
    {"name": "billing", "type": {"type": "record", "name": "Address", "fields": [
        {"name": "city", "type": "string"}]}},
    {"name": "shipping", "type": ["null", "Address"], "default": null},
    {"name": "tags", "type": {"type": "map", "values": "long"}, "default": {}},
    {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}, "default": "NEW"},
    {"name": "note", "type": ["null", "string"], "default": null}
  ]}"#;

#[test]
fn records_nested_arrays_maps_enums_defaults() {
    let v = convert(
        ORDER,
        json!({"id": "o1", "items": [{"sku": "a", "qty": 2}], "billing": {"city": "Oslo"},
               "shipping": {"city": "Bergen"}, "tags": {"x": 1}, "status": "PAID"}),
    )
    .unwrap();
    let city = |c: &str| Value::Record(vec![("city".into(), Value::String(c.into()))]);
    let expected = Value::Record(vec![
        ("id".into(), Value::String("o1".into())),
        (
            "items".into(),
            Value::Array(vec![Value::Record(vec![
                ("sku".into(), Value::String("a".into())),
                ("qty".into(), Value::Int(2)),
            ])]),
        ),
        ("billing".into(), city("Oslo")),
        ("shipping".into(), Value::Union(1, Box::new(city("Bergen")))),
        (
            "tags".into(),
            Value::Map([("x".to_string(), Value::Long(1))].into()),
        ),
        ("status".into(), Value::Enum(1, "PAID".into())),
        ("note".into(), Value::Union(0, Box::new(Value::Null))),
    ]);
    assert_eq!(v, expected);
    // Defaults fill absent fields.
    let v = convert(
        ORDER,
        json!({"id": "o1", "items": [], "billing": {"city": "Oslo"}}),
    )
    .unwrap();
    let Value::Record(fields) = v else { panic!() };
    assert_eq!(fields[3].1, Value::Union(0, Box::new(Value::Null)));
    assert_eq!(fields[4].1, Value::Map(Default::default()));
    assert_eq!(fields[5].1, Value::Enum(0, "NEW".into()));
}

#[test]
fn record_errors() {
    let base = || json!({"id": "o1", "items": [], "billing": {"city": "Oslo"}});
    let mut bad_qty = base();
    bad_qty["items"] = json!([{"sku": "a", "qty": 1}, {"sku": "b", "qty": 1}, {"sku": "c", "qty": "three"}]);
    assert_eq!(
        convert(ORDER, bad_qty),
        Err(r#"$.items[2].qty: expected int, got "three""#.into())
    );
    let mut missing = base();
    missing["billing"] = json!({});
    assert_eq!(
        convert(ORDER, missing),
        Err("$.billing.city: missing required field of record com.example.Address (the schema gives no default)"
            .into())
    );
    let mut unknown = base();
    unknown["colour"] = json!("red");
    let err = convert(ORDER, unknown.clone()).unwrap_err();
    assert!(
        err.starts_with("$.colour: unknown field: record com.example.Order has no such field"),
        "{err}"
    );
    assert!(convert_with(ORDER, unknown, UnknownFields::Ignore).is_ok());
    let mut bad_enum = base();
    bad_enum["status"] = json!("LOST");
    assert_eq!(
        convert(ORDER, bad_enum),
        Err(r#"$.status: expected a symbol of enum com.example.Status (NEW, PAID), got "LOST""#.into())
    );
    let mut bad_map = base();
    bad_map["tags"] = json!({"a key": "x"});
    assert_eq!(
        convert(ORDER, bad_map),
        Err(r#"$.tags["a key"]: expected long, got "x""#.into())
    );
    assert_eq!(
        convert(ORDER, json!([1])),
        Err("$: expected record com.example.Order, got an array".into())
    );
    let mut bad_nested = base();
    bad_nested["shipping"] = json!({"city": 5});
    assert_eq!(
        convert(ORDER, bad_nested),
        Err("$.shipping.city: expected string, got 5".into())
    );
}

#[test]
fn unions_plain_and_tagged() {
    let u = r#"["null", "int", "string", {"type": "record", "name": "P", "fields": [{"name": "x", "type": "int"}]}]"#;
    assert_eq!(field(u, json!(null)), Ok(Value::Union(0, Box::new(Value::Null))));
    assert_eq!(field(u, json!(4)), Ok(Value::Union(1, Box::new(Value::Int(4)))));
    assert_eq!(
        field(u, json!("s")),
        Ok(Value::Union(2, Box::new(Value::String("s".into()))))
    );
    let p = Value::Record(vec![("x".into(), Value::Int(1))]);
    assert_eq!(
        field(u, json!({"x": 1})),
        Ok(Value::Union(3, Box::new(p.clone())))
    );
    // Avro-JSON tagged form, by type name, short or full name.
    assert_eq!(
        field(u, json!({"int": 4})),
        Ok(Value::Union(1, Box::new(Value::Int(4))))
    );
    assert_eq!(
        field(u, json!({"string": "s"})),
        Ok(Value::Union(2, Box::new(Value::String("s".into()))))
    );
    assert_eq!(
        field(u, json!({"t.P": {"x": 1}})),
        Ok(Value::Union(3, Box::new(p.clone())))
    );
    assert_eq!(field(u, json!({"P": {"x": 1}})), Ok(Value::Union(3, Box::new(p))));
    assert_eq!(
        field(u, json!({"int": "4"})),
        Err(r#"$.v.int: expected int, got "4""#.into())
    );
    // A single plausible branch reports its own error; otherwise the union is named.
    assert_eq!(
        field(u, json!({"x": "1"})),
        Err(r#"$.v.x: expected int, got "1""#.into())
    );
    assert_eq!(
        field(u, json!(true)),
        Err("$.v: expected one of [null, int, string, record t.P], got true".into())
    );
    assert_eq!(
        field(r#"["int", "long"]"#, json!(1_i64 << 40)),
        Ok(Value::Union(1, Box::new(Value::Long(1 << 40))))
    );
    assert_eq!(
        field(r#"["int", "string"]"#, json!(null)),
        Err("$.v: expected one of [int, string], got null".into())
    );
    // Logical branches answer to their underlying type name.
    let ts = r#"["null", {"type": "long", "logicalType": "timestamp-millis"}]"#;
    assert_eq!(
        field(ts, json!({"long": 5})),
        Ok(Value::Union(1, Box::new(Value::TimestampMillis(5))))
    );
}

#[test]
fn fixed_and_enum() {
    let f = r#"{"type": "fixed", "name": "F2", "size": 2}"#;
    assert_eq!(
        field(f, json!("\u{0001}\u{00ff}")),
        Ok(Value::Fixed(2, vec![1, 0xff]))
    );
    assert_eq!(
        field(f, json!("abc")),
        Err("$.v: expected fixed t.F2 (2 bytes as a string of code points 0-255), got 3 bytes".into())
    );
    let e = r#"{"type": "enum", "name": "E", "symbols": ["A"]}"#;
    assert_eq!(field(e, json!(1)), Err("$.v: expected enum t.E, got 1".into()));
}

#[test]
fn decimals_from_strings_and_numbers() {
    let bytes_dec = r#"{"type": "bytes", "logicalType": "decimal", "precision": 8, "scale": 2}"#;
    assert_eq!(
        field(bytes_dec, json!("12.34")),
        Ok(Value::Decimal(Decimal::from(vec![0x04, 0xd2])))
    );
    assert_eq!(
        field(bytes_dec, json!(12.34)),
        Ok(Value::Decimal(Decimal::from(vec![0x04, 0xd2])))
    );
    assert_eq!(
        field(bytes_dec, json!(-1)),
        Ok(Value::Decimal(Decimal::from(vec![0xff, 0x9c])))
    );
    assert_eq!(
        field(bytes_dec, json!("1.234")),
        Err(r#"$.v: "1.234" has more than 2 fraction digits (the schema's scale)"#.into())
    );
    assert_eq!(
        field(bytes_dec, json!(true)),
        Err("$.v: expected decimal(8, 2) as a string or number, got true".into())
    );
    // Long fractional JSON numbers were read as floats: refused rather than silently rounded.
    let wide = r#"{"type": "bytes", "logicalType": "decimal", "precision": 30, "scale": 2}"#;
    let err = field(wide, serde_json::from_str("12345678901234567.89").unwrap()).unwrap_err();
    assert!(
        err.contains("more than 15 significant digits") && err.contains("as strings"),
        "{err}"
    );
    assert!(field(wide, json!("12345678901234567.89")).is_ok());
    assert!(
        field(wide, json!(123_456_789_012_345_678_u64)).is_ok(),
        "integers are exact"
    );
    assert!(
        field(wide, json!(0.000_000_000_000_001)).is_err(),
        "scale 2 cannot hold it"
    );
    let fixed_dec =
        r#"{"type": "fixed", "name": "D", "size": 2, "logicalType": "decimal", "precision": 4, "scale": 1}"#;
    assert_eq!(
        field(fixed_dec, json!("-0.5")),
        Ok(Value::Decimal(Decimal::from(vec![0xfb])))
    );
    assert_eq!(
        field(fixed_dec, json!("12345")),
        Err(r#"$.v: "12345" has more than 4 digits (the schema's precision)"#.into())
    );
    let big = r#"{"type": "bytes", "logicalType": "big-decimal"}"#;
    assert_eq!(
        field(big, json!("1.50")),
        Ok(Value::BigDecimal("1.50".parse().unwrap()))
    );
    assert_eq!(
        field(big, json!("x")),
        Err(r#"$.v: expected a decimal number, got "x""#.into())
    );
}

#[test]
fn uuid_date_time() {
    let uuid = r#"{"type": "string", "logicalType": "uuid"}"#;
    let text = "67e55044-10b1-426f-9247-bb680e5fe0c8";
    assert_eq!(field(uuid, json!(text)), Ok(Value::Uuid(text.parse().unwrap())));
    assert_eq!(
        field(uuid, json!("nope")),
        Err(r#"$.v: expected uuid, got "nope""#.into())
    );
    let date = r#"{"type": "int", "logicalType": "date"}"#;
    assert_eq!(field(date, json!("2024-02-29")), Ok(Value::Date(19_782)));
    assert_eq!(field(date, json!(3)), Ok(Value::Date(3)));
    assert_eq!(
        field(date, json!("2024-02-30")),
        Err(r#"$.v: "2024-02-30" is not a valid calendar date"#.into())
    );
    let tm = r#"{"type": "int", "logicalType": "time-millis"}"#;
    assert_eq!(field(tm, json!("01:00:00.250")), Ok(Value::TimeMillis(3_600_250)));
    assert_eq!(field(tm, json!(5)), Ok(Value::TimeMillis(5)));
    assert_eq!(
        field(tm, json!(86_400_000)),
        Err("$.v: 86400000 is not a time of day (0 to one day, exclusive)".into())
    );
    let tu = r#"{"type": "long", "logicalType": "time-micros"}"#;
    assert_eq!(
        field(tu, json!("00:00:01.000002")),
        Ok(Value::TimeMicros(1_000_002))
    );
    assert!(field(tu, json!(true))
        .unwrap_err()
        .starts_with("$.v: expected time-micros"));
}

#[test]
fn timestamps() {
    let ty = |l: &str| format!(r#"{{"type": "long", "logicalType": "{l}"}}"#);
    let iso = json!("2024-05-01T12:00:00.123456Z");
    assert_eq!(
        field(&ty("timestamp-millis"), iso.clone()),
        Ok(Value::TimestampMillis(1_714_564_800_123))
    );
    assert_eq!(
        field(&ty("timestamp-micros"), iso.clone()),
        Ok(Value::TimestampMicros(1_714_564_800_123_456))
    );
    assert_eq!(
        field(&ty("timestamp-nanos"), iso.clone()),
        Ok(Value::TimestampNanos(1_714_564_800_123_456_000))
    );
    assert_eq!(
        field(&ty("timestamp-millis"), json!(42)),
        Ok(Value::TimestampMillis(42))
    );
    let local = json!("2024-05-01T12:00:00.5");
    assert_eq!(
        field(&ty("local-timestamp-millis"), local.clone()),
        Ok(Value::LocalTimestampMillis(1_714_564_800_500))
    );
    assert_eq!(
        field(&ty("local-timestamp-micros"), local.clone()),
        Ok(Value::LocalTimestampMicros(1_714_564_800_500_000))
    );
    assert_eq!(
        field(&ty("local-timestamp-nanos"), local.clone()),
        Ok(Value::LocalTimestampNanos(1_714_564_800_500_000_000))
    );
    let err = field(&ty("timestamp-millis"), local).unwrap_err();
    assert!(
        err.starts_with(r#"$.v: "2024-05-01T12:00:00.5" has no zone offset"#),
        "{err}"
    );
    assert!(field(&ty("local-timestamp-millis"), iso)
        .unwrap_err()
        .contains("has a zone offset"));
    assert_eq!(
        field(&ty("timestamp-micros"), json!(1.5)),
        Err("$.v: expected an ISO-8601 timestamp with offset, or an integer, got 1.5".into())
    );
}

#[test]
fn duration() {
    let d = r#"{"type": "fixed", "name": "Dur", "size": 12, "logicalType": "duration"}"#;
    let v = field(d, json!({"months": 1, "days": 2, "millis": 3})).unwrap();
    let Value::Duration(d2) = v else { panic!("{v:?}") };
    assert_eq!(
        (
            u32::from(d2.months()),
            u32::from(d2.days()),
            u32::from(d2.millis())
        ),
        (1, 2, 3)
    );
    assert_eq!(
        field(d, json!({"weeks": 1})),
        Err("$.v.weeks: unknown field of a duration (months, days, millis)".into())
    );
    assert_eq!(
        field(d, json!({"days": -1})),
        Err("$.v.days: expected an unsigned 32-bit integer, got -1".into())
    );
}

#[test]
fn references_to_named_types_resolve() {
    let schema = r#"{"type": "record", "name": "Node", "namespace": "n", "fields": [
        {"name": "v", "type": "int"},
        {"name": "next", "type": ["null", "Node"], "default": null}]}"#;
    let v = convert(schema, json!({"v": 1, "next": {"v": 2}})).unwrap();
    let inner = Value::Record(vec![
        ("v".into(), Value::Int(2)),
        ("next".into(), Value::Union(0, Box::new(Value::Null))),
    ]);
    assert_eq!(
        v,
        Value::Record(vec![
            ("v".into(), Value::Int(1)),
            ("next".into(), Value::Union(1, Box::new(inner)))
        ])
    );
    assert_eq!(
        convert(schema, json!({"v": 1, "next": {"v": "x"}})),
        Err(r#"$.next.v: expected int, got "x""#.into())
    );
}

#[test]
fn converted_values_validate_against_their_schema() {
    let schema = Schema::parse_str(ORDER).unwrap();
    let names = named_types(&schema).unwrap();
    let json = json!({"id": "o1", "items": [{"sku": "a", "qty": 2}], "billing": {"city": "Oslo"},
                      "shipping": null, "tags": {"x": 1}, "status": "PAID", "note": "hi"});
    let v = Converter::new(&names, UnknownFields::Reject)
        .convert(&json, &schema)
        .unwrap();
    assert!(v.validate(&schema));
}

#[test]
fn demo_schemas_accept_the_demo_payloads() {
    let cases = [
        (
            include_str!("../../../../config/schemas/OrderCreated.avsc"),
            include_str!("../../tests/data/OrderCreated.json"),
        ),
        (
            include_str!("../../../../config/schemas/OrderPaid.avsc"),
            include_str!("../../tests/data/OrderPaid.json"),
        ),
    ];
    for (schema, payload) in cases {
        let schema = Schema::parse_str(schema).unwrap();
        assert!(schema
            .name()
            .unwrap()
            .fullname(None)
            .starts_with("com.example.orders."));
        let names = named_types(&schema).unwrap();
        let json: Json = serde_json::from_str(payload).unwrap();
        let v = Converter::new(&names, UnknownFields::Reject)
            .convert(&json, &schema)
            .unwrap();
        assert!(v.validate(&schema), "{v:?}");
    }
}
