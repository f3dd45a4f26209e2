//! The logical-message outbox: `pg_logical_emit_message(true, prefix, envelope)` where the envelope is
//!
//! ```json
//! {"id": "...", "aggregate_type": "order", "aggregate_id": "42", "event_type": "OrderCreated",
//!  "payload": {...}, "headers": {"k": "v"}, "traceparent": "00-...", "tracestate": "...",
//!  "topic": "...", "schema_version": 2, "created_at": "..."}
//! ```
//!
//! `payload` and `headers` are kept as the exact JSON text written. An envelope that is not a JSON object, or
//! whose fields have the wrong JSON types, becomes an event with `defect` set and the raw content as its
//! payload (for the dead-letter topic); missing fields are left empty for the pipeline to judge.

use outboxd_core::{Lsn, OutboxEvent};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// Builds the event for one transactional logical message. Never fails.
pub fn event_from_message(content: &[u8], lsn: Lsn) -> OutboxEvent {
    match parse(content, lsn) {
        Ok(event) => event,
        Err(defect) => OutboxEvent {
            payload: Some(content.to_vec()),
            lsn,
            defect: Some(defect),
            ..Default::default()
        },
    }
}

fn parse(content: &[u8], lsn: Lsn) -> Result<OutboxEvent, String> {
    let text =
        std::str::from_utf8(content).map_err(|_| "logical message content is not UTF-8".to_string())?;
    let fields: BTreeMap<String, &RawValue> = serde_json::from_str(text)
        .map_err(|e| format!("logical message content is not a JSON object envelope: {e}"))?;
    let get = |name: &str| fields.get(name).copied().filter(|raw| raw.get() != "null");
    let string = |name: &'static str| -> Result<Option<String>, String> {
        get(name)
            .map(|raw| {
                serde_json::from_str::<String>(raw.get())
                    .map_err(|_| format!("envelope field {name} must be a string"))
            })
            .transpose()
    };
    // Ids and versions are often numbers: accept a JSON number as its text.
    let string_or_number = |name: &'static str| -> Result<Option<String>, String> {
        match get(name) {
            Some(raw) if raw.get().starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
                Ok(Some(raw.get().to_string()))
            }
            _ => string(name),
        }
    };
    let headers = match get("headers") {
        Some(raw) if !raw.get().starts_with('{') => {
            return Err("envelope field headers must be a JSON object".into())
        }
        other => other.map(|raw| raw.get().to_string()),
    };
    Ok(OutboxEvent {
        id: string_or_number("id")?,
        aggregate_type: string("aggregate_type")?,
        aggregate_id: string_or_number("aggregate_id")?,
        event_type: string("event_type")?,
        payload: get("payload").map(|raw| raw.get().as_bytes().to_vec()),
        headers,
        traceparent: string("traceparent")?,
        tracestate: string("tracestate")?,
        topic: string("topic")?,
        created_at: string("created_at")?,
        schema_version: string_or_number("schema_version")?,
        lsn,
        defect: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_envelope() {
        let content =
            br#"{"id": "e1", "aggregate_type": "order", "aggregate_id": 42, "event_type": "Created",
            "payload": {"b": 1, "a": [true, null]}, "headers": {"k": "v"}, "traceparent": "00-a-b-01",
            "tracestate": "x=y", "schema_version": 3, "extra": "ignored"}"#;
        let e = event_from_message(content, Lsn(9));
        assert_eq!(e.defect, None);
        assert_eq!(e.id.as_deref(), Some("e1"));
        assert_eq!(e.aggregate_type.as_deref(), Some("order"));
        assert_eq!(e.aggregate_id.as_deref(), Some("42"));
        assert_eq!(e.event_type.as_deref(), Some("Created"));
        assert_eq!(
            e.payload.as_deref(),
            Some(&br#"{"b": 1, "a": [true, null]}"#[..]),
            "payload text kept as written"
        );
        assert_eq!(e.headers.as_deref(), Some(r#"{"k": "v"}"#));
        assert_eq!(
            (e.traceparent.as_deref(), e.tracestate.as_deref()),
            (Some("00-a-b-01"), Some("x=y"))
        );
        assert_eq!(
            (e.schema_version.as_deref(), e.topic, e.lsn),
            (Some("3"), None, Lsn(9))
        );
    }

    #[test]
    fn missing_and_null_fields_are_empty_not_defects() {
        let e = event_from_message(br#"{"id": "e1", "payload": null, "headers": null}"#, Lsn(1));
        assert_eq!(e.missing_required(), vec!["aggregate_id", "event_type"]);
        assert_eq!(
            (e.defect, e.payload, e.headers, e.aggregate_id),
            (None, None, None, None)
        );
    }

    #[test]
    fn invalid_envelopes_are_defects_with_raw_content() {
        for (content, why) in [
            (&b"not json"[..], "not a JSON object envelope"),
            (b"[1, 2]", "not a JSON object envelope"),
            (b"\xff\xfe", "not UTF-8"),
            (br#"{"id": "a", "event_type": 5}"#, "event_type must be a string"),
            (br#"{"id": "a", "headers": [1]}"#, "headers must be a JSON object"),
            (br#"{"id": {"x": 1}}"#, "id must be a string"),
        ] {
            let e = event_from_message(content, Lsn(3));
            let defect = e.defect.unwrap_or_default();
            assert!(defect.contains(why), "{content:?}: {defect}");
            assert_eq!(e.payload.as_deref(), Some(content));
            assert_eq!((e.id, e.lsn), (None, Lsn(3)));
        }
    }
}
