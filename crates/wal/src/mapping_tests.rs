use super::*;
use ColumnValue::{Binary, Null, Text, UnchangedToast};

const UUID: u32 = 2950;
const TEXT: u32 = 25;
const VARCHAR: u32 = 1043;
const JSONB: u32 = 3802;
const TIMESTAMPTZ: u32 = 1184;
const INT4: u32 = 23;

fn outboxd_columns() -> Vec<(&'static str, u32)> {
    vec![
        ("id", UUID),
        ("aggregate_type", TEXT),
        ("aggregate_id", TEXT),
        ("event_type", TEXT),
        ("payload", JSONB),
        ("headers", JSONB),
        ("traceparent", TEXT),
        ("tracestate", TEXT),
        ("schema_version", INT4),
        ("created_at", TIMESTAMPTZ),
    ]
}

fn debezium_columns(payload_type: u32) -> Vec<(&'static str, u32)> {
    vec![
        ("id", UUID),
        ("aggregatetype", VARCHAR),
        ("aggregateid", VARCHAR),
        ("type", VARCHAR),
        ("payload", payload_type),
        ("tracingspancontext", VARCHAR),
    ]
}

fn row<'a>(values: &[ColumnValue<'a>]) -> TupleData<'a> {
    TupleData {
        columns: values.to_vec(),
    }
}

#[test]
fn outboxd_preset_maps_every_column() {
    let m = ColumnMapping::default()
        .resolve("public.outbox", &outboxd_columns())
        .unwrap();
    let r = row(&[
        Text(b"0b1e6c1c-2b2f-4a57-9b0e-6f1f2f3f4f5f"),
        Text(b"order"),
        Text(b"42"),
        Text(b"OrderCreated"),
        Text(br#"{"total": 3}"#),
        Text(br#"{"tenant": "a"}"#),
        Text(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        Null,
        Text(b"2"),
        Text(b"2024-05-01 10:00:00.123+00"),
    ]);
    let e = m.map_row(&r, Lsn(77));
    assert_eq!(e.id.as_deref(), Some("0b1e6c1c-2b2f-4a57-9b0e-6f1f2f3f4f5f"));
    assert_eq!(e.aggregate_type.as_deref(), Some("order"));
    assert_eq!(e.aggregate_id.as_deref(), Some("42"));
    assert_eq!(e.event_type.as_deref(), Some("OrderCreated"));
    assert_eq!(e.payload.as_deref(), Some(&br#"{"total": 3}"#[..]));
    assert_eq!(e.headers.as_deref(), Some(r#"{"tenant": "a"}"#));
    assert_eq!(
        e.traceparent.as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!((e.tracestate, e.topic), (None, None));
    assert_eq!(e.schema_version.as_deref(), Some("2"));
    assert_eq!(e.created_at.as_deref(), Some("2024-05-01 10:00:00.123+00"));
    assert_eq!((e.lsn, e.defect), (Lsn(77), None));
}

#[test]
fn missing_required_column_names_column_and_table() {
    let mut cols = outboxd_columns();
    cols.retain(|(n, _)| *n != "event_type");
    let err = ColumnMapping::default().resolve("app.outbox", &cols).unwrap_err();
    assert!(
        matches!(&err, WalError::MissingColumn { table, column, field: "event_type" }
            if table == "app.outbox" && column == "event_type"),
        "{err:?}"
    );
    // Optional preset columns may be absent; an explicitly mapped one may not.
    let minimal: Vec<_> = outboxd_columns().into_iter().take(5).collect();
    assert!(ColumnMapping::default().resolve("t", &minimal).is_ok());
    let explicit = ColumnMapping {
        topic: Some("destination".into()),
        ..Default::default()
    };
    let err = explicit.resolve("t", &minimal).unwrap_err();
    assert!(
        matches!(err, WalError::MissingColumn { field: "topic", .. }),
        "{err:?}"
    );
}

#[test]
fn overrides_rename_columns() {
    let mapping = ColumnMapping {
        payload: Some("body".into()),
        topic: Some("dest".into()),
        ..Default::default()
    };
    let cols = [
        ("id", UUID),
        ("aggregate_type", TEXT),
        ("aggregate_id", TEXT),
        ("event_type", TEXT),
        ("body", TEXT),
        ("dest", TEXT),
    ];
    let m = mapping.resolve("t", &cols).unwrap();
    let e = m.map_row(
        &row(&[
            Text(b"1"),
            Text(b"a"),
            Text(b"b"),
            Text(b"E"),
            Text(b"hi"),
            Text(b"topic.x"),
        ]),
        Lsn(1),
    );
    assert_eq!(
        (e.payload.as_deref(), e.topic.as_deref()),
        (Some(&b"hi"[..]), Some("topic.x"))
    );
    assert!(ColumnMapping {
        id: Some(String::new()),
        ..Default::default()
    }
    .check_names()
    .is_err());
}

#[test]
fn debezium_preset_with_bytea_payload_and_span_context() {
    let mapping = ColumnMapping {
        preset: Preset::Debezium,
        ..Default::default()
    };
    let m = mapping
        .resolve("public.outboxevent", &debezium_columns(BYTEA_OID))
        .unwrap();
    let span = b"#Thu Jan 01 00:00:00 UTC 2024\ntraceparent=00-aa-bb-01\ntracestate=k=v\n";
    let r = row(&[
        Text(b"id1"),
        Text(b"customer"),
        Text(b"7"),
        Text(b"Created"),
        Text(br"\x7b7d00ff"),
        Text(span),
    ]);
    let e = m.map_row(&r, Lsn(5));
    assert_eq!(e.aggregate_type.as_deref(), Some("customer"));
    assert_eq!(e.event_type.as_deref(), Some("Created"));
    assert_eq!(e.payload.as_deref(), Some(&[0x7b, 0x7d, 0x00, 0xff][..]));
    assert_eq!(e.traceparent.as_deref(), Some("00-aa-bb-01"));
    assert_eq!(e.tracestate.as_deref(), Some("k=v"));
    assert_eq!(e.defect, None);
    // A bare traceparent is taken as is, and yields no tracestate; the column is optional.
    let e = m.map_row(
        &row(&[
            Text(b"i"),
            Text(b"c"),
            Text(b"7"),
            Text(b"T"),
            Null,
            Text(b"00-aa-bb-01"),
        ]),
        Lsn(6),
    );
    assert_eq!(
        (e.traceparent.as_deref(), e.tracestate, e.payload),
        (Some("00-aa-bb-01"), None, None)
    );
    let without_tracing: Vec<_> = debezium_columns(JSONB).into_iter().take(5).collect();
    assert!(mapping.resolve("t", &without_tracing).is_ok());
    let err = mapping
        .resolve("public.outboxevent", &outboxd_columns())
        .unwrap_err();
    assert!(
        matches!(err, WalError::MissingColumn { ref column, .. } if column == "aggregateid"),
        "{err:?}"
    );
}

/// The table of the article that defines the pattern: no aggregate type, a status column.
fn article_columns() -> Vec<(&'static str, u32)> {
    vec![
        ("id", UUID),
        ("aggregate_id", TEXT),
        ("event_type", TEXT),
        ("payload", JSONB),
        ("status", TEXT),
        ("created_at", TIMESTAMPTZ),
    ]
}

#[test]
fn a_table_without_an_aggregate_type_maps_unless_the_routing_needs_it() {
    let mut mapping = ColumnMapping::default();
    let resolved = mapping
        .resolve("public.outbox_events", &article_columns())
        .unwrap();
    let e = resolved.map_row(
        &row(&[
            Text(b"0b0e4f9c-8f7e-4c2a-9a55-3f1f6b0b6a11"),
            Text(b"order-42"),
            Text(b"Order.PaymentProcessed"),
            Text(br#"{"amount":5}"#),
            Text(b"PENDING"),
            Text(b"2026-12-02 10:00:00+00"),
        ]),
        Lsn(9),
    );
    assert_eq!(
        (
            e.aggregate_type.as_deref(),
            e.aggregate_id.as_deref(),
            e.event_type.as_deref()
        ),
        (None, Some("order-42"), Some("Order.PaymentProcessed"))
    );
    assert!(e.missing_required().is_empty() && e.defect.is_none(), "{e:?}");
    mapping.needed.push(Field::AggregateType);
    let err = mapping
        .resolve("public.outbox_events", &article_columns())
        .unwrap_err();
    assert!(
        matches!(
            err,
            WalError::MissingColumn {
                field: "aggregate_type",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("{event_type.0}"),
        "the fix is named: {err}"
    );
}

#[test]
fn unmappable_values_become_defects_not_drops() {
    let m = ColumnMapping {
        preset: Preset::Debezium,
        ..Default::default()
    }
    .resolve("t", &debezium_columns(BYTEA_OID))
    .unwrap();
    let e = m.map_row(
        &row(&[
            Text(b"i"),
            Text(&[0xff, 0xfe]),
            Text(b"7"),
            Text(b"T"),
            Text(b"\\xzz"),
            Null,
        ]),
        Lsn(9),
    );
    let defect = e.defect.expect("a defect");
    assert!(
        defect.contains("aggregate_type: value is not valid UTF-8"),
        "{defect}"
    );
    assert!(
        defect.contains("payload: bytea value is not valid hex"),
        "{defect}"
    );
    assert_eq!(
        e.payload.as_deref(),
        Some(&b"\\xzz"[..]),
        "the raw text is kept for the DLQ"
    );
    assert_eq!((e.id.as_deref(), e.aggregate_type), (Some("i"), None));

    let e = m.map_row(
        &row(&[
            Text(b"i"),
            UnchangedToast,
            Binary(b"x"),
            Text(b"T"),
            Text(b"plain"),
            Null,
        ]),
        Lsn(9),
    );
    let defect = e.defect.expect("a defect");
    assert!(
        defect.contains("unchanged TOAST") && defect.contains("binary"),
        "{defect}"
    );
    assert!(
        defect.contains("payload: bytea value is not in hex format"),
        "{defect}"
    );

    let e = m.map_row(&row(&[Text(b"i")]), Lsn(9));
    assert!(e
        .defect
        .expect("a defect")
        .contains("row has 1 columns, its relation 6"));
}

#[test]
fn bytea_and_span_context_helpers() {
    assert_eq!(decode_bytea(br"\x"), Ok(vec![]));
    assert_eq!(decode_bytea(br"\xABcd"), Ok(vec![0xab, 0xcd]));
    assert!(decode_bytea(br"\x1").is_err());
    assert_eq!(
        span_context_entry("traceparent = 00-x \n", "traceparent").as_deref(),
        Some("00-x")
    );
    assert_eq!(span_context_entry("uber-trace-id=1:2:3:1", "traceparent"), None);
}
