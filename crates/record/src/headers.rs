//! Pure header building: the record headers of an event and of a dead letter, and W3C trace-context checks.

use outboxd_core::OutboxEvent;
use outboxd_kafka::{rfc3339_header, DlqReason, HeaderList, HeaderValue};

/// Header names outboxd sets itself; a user header of the same name is ignored (except the trace headers,
/// taken from user headers when the row has no trace columns).
pub const RESERVED: &[&str] = &[
    "id",
    "event_type",
    "aggregate_type",
    "schema_id",
    "schema_version",
    "outbox_lsn",
    "commit_time",
    "traceparent",
    "tracestate",
];

/// The schema an encoded value was written with, for the `schema_id` and `schema_version` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchemaRef {
    /// The registry's global schema id (also in the Confluent frame).
    pub id: u32,
    /// The subject version, when known.
    pub version: Option<i32>,
}

/// True for a valid W3C `traceparent`: `vv-<32 hex>-<16 hex>-ff`, lowercase, non-zero ids, version not `ff`;
/// a future version may append `-...` after the four fields.
pub fn valid_traceparent(value: &str) -> bool {
    let b = value.as_bytes();
    if b.len() < 55 {
        return false;
    }
    let lower_hex = |s: &[u8]| s.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
    let (version, trace_id, parent_id, flags) = (&b[0..2], &b[3..35], &b[36..52], &b[53..55]);
    let dashes = b[2] == b'-' && b[35] == b'-' && b[52] == b'-';
    let fields_ok =
        dashes && lower_hex(version) && lower_hex(trace_id) && lower_hex(parent_id) && lower_hex(flags);
    let nonzero = |s: &[u8]| s.iter().any(|&c| c != b'0');
    let tail_ok = match version {
        b"00" => b.len() == 55,
        _ => b.len() == 55 || b[55] == b'-',
    };
    fields_ok && version != b"ff" && nonzero(trace_id) && nonzero(parent_id) && tail_ok
}

/// True for a plausible W3C `tracestate`: at most 512 printable ASCII characters.
pub fn valid_tracestate(value: &str) -> bool {
    !value.is_empty() && value.len() <= 512 && value.bytes().all(|c| (0x20..0x7f).contains(&c))
}

/// Parses the outbox `headers` column: a JSON object whose string values are taken as-is and other values
/// as their JSON text. JSON `null` (or no column) means no user headers.
pub fn parse_user_headers(raw: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::Null) => Ok(Vec::new()),
        Ok(serde_json::Value::Object(map)) => Ok(map
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect()),
        Ok(_) => {
            Err("the headers column is JSON but not an object: expected {\"name\": \"value\", ...}".into())
        }
        Err(e) => Err(format!("the headers column is not valid JSON: {e}")),
    }
}

fn push(list: &mut HeaderList, name: &'static str, value: impl AsRef<[u8]>) {
    list.push((name.into(), HeaderValue::from_slice(value.as_ref())));
}

fn push_opt(list: &mut HeaderList, name: &'static str, value: Option<&String>) {
    if let Some(v) = value {
        push(list, name, v);
    }
}

/// `v` in decimal, as `to_string` writes it, without the formatting machinery.
fn decimal(v: i64) -> HeaderValue {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = v.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let mut out = HeaderValue::new();
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
    out
}

/// The trace headers: from the row's columns when valid, else from the user headers when valid; never made up.
/// `tracestate` goes along only with a valid `traceparent`, as W3C requires.
fn trace_headers<'a>(
    event: &'a OutboxEvent,
    user: &'a [(String, String)],
) -> Option<(&'a str, Option<&'a str>)> {
    let from_user = |name: &str| user.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let (parent, state) = match event.traceparent.as_deref() {
        Some(p) => (p, event.tracestate.as_deref()),
        None => (from_user("traceparent")?, from_user("tracestate")),
    };
    valid_traceparent(parent).then_some((parent, state.filter(|s| valid_tracestate(s))))
}

/// Headers common to event and dead-letter records.
fn identity_headers(list: &mut HeaderList, event: &OutboxEvent, commit_time_us: i64) {
    push_opt(list, "id", event.id.as_ref());
    push_opt(list, "event_type", event.event_type.as_ref());
    push_opt(list, "aggregate_type", event.aggregate_type.as_ref());
    push(list, "outbox_lsn", event.lsn.text().as_bytes());
    list.push(("commit_time".into(), rfc3339_header(commit_time_us)));
}

/// The headers of an event record. Fails (the event goes to the dead-letter topic as `invalid_headers`) when
/// the row's headers column is not a JSON object.
pub fn event_headers(
    event: &OutboxEvent,
    commit_time_us: i64,
    schema: Option<SchemaRef>,
) -> Result<HeaderList, String> {
    let user = parse_user_headers(event.headers.as_deref())?;
    let mut list = HeaderList::with_capacity(9 + user.len());
    identity_headers(&mut list, event, commit_time_us);
    if let Some(schema) = schema {
        list.push(("schema_id".into(), decimal(i64::from(schema.id))));
        if let Some(v) = schema.version {
            list.push(("schema_version".into(), decimal(i64::from(v))));
        }
    }
    if let Some((parent, state)) = trace_headers(event, &user) {
        push(&mut list, "traceparent", parent);
        if let Some(state) = state {
            push(&mut list, "tracestate", state);
        }
    }
    for (k, v) in user {
        if !RESERVED.contains(&k.as_str()) {
            list.push((k.into(), v.into_bytes().into()));
        }
    }
    Ok(list)
}

/// What a dead letter says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterInfo<'a> {
    /// Why the event was rejected.
    pub reason: DlqReason,
    /// The details (which field, which schema error).
    pub detail: &'a str,
    /// The topic the event would have gone to, when it could be determined.
    pub intended_topic: Option<&'a str>,
}

/// The headers of a dead-letter record: `dlq_reason`, `dlq_detail`, `dlq_intended_topic` and the event's
/// identity (`id`, `event_type`, `aggregate_type`, `outbox_lsn`, `commit_time`) and valid trace headers.
pub fn dead_letter_headers(
    event: &OutboxEvent,
    commit_time_us: i64,
    info: &DeadLetterInfo<'_>,
) -> HeaderList {
    let mut list = HeaderList::with_capacity(10);
    push(&mut list, "dlq_reason", info.reason.code());
    push(&mut list, "dlq_detail", info.detail);
    if let Some(t) = info.intended_topic {
        push(&mut list, "dlq_intended_topic", t);
    }
    identity_headers(&mut list, event, commit_time_us);
    let user = match parse_user_headers(event.headers.as_deref()) {
        Ok(user) => user,
        Err(_) => {
            // Keep the unparseable column as it was, so that nothing the row carried is lost.
            push_opt(&mut list, "dlq_original_headers", event.headers.as_ref());
            Vec::new()
        }
    };
    if let Some((parent, state)) = trace_headers(event, &user) {
        push(&mut list, "traceparent", parent);
        if let Some(state) = state {
            push(&mut list, "tracestate", state);
        }
    }
    // The row's own headers travel with the dead letter, so that a replay can restore them.
    for (k, v) in user {
        if !RESERVED.contains(&k.as_str()) && !k.starts_with("dlq_") {
            list.push((k.into(), v.into_bytes().into()));
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use outboxd_core::Lsn;

    use crate::fixtures::TP;

    fn get<'a>(list: &'a HeaderList, name: &str) -> Option<&'a str> {
        list.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| std::str::from_utf8(v).unwrap())
    }

    #[test]
    fn traceparent_validation() {
        assert!(valid_traceparent(TP));
        assert!(!valid_traceparent(&TP.to_uppercase()));
        assert!(!valid_traceparent(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert!(!valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"
        ));
        assert!(!valid_traceparent(&TP.replacen("00", "ff", 1)));
        assert!(
            !valid_traceparent(&format!("{TP}-extra")),
            "version 00 has exactly four fields"
        );
        assert!(valid_traceparent(&format!(
            "{}-extra",
            TP.replacen("00", "01", 1)
        )));
        assert!(!valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01"
        ));
        assert!(!valid_traceparent("garbage"));
        assert!(!valid_traceparent(""));
    }

    #[test]
    fn user_headers_strings_and_json_text() {
        let h = parse_user_headers(Some(r#"{"a":"x","n":1,"o":{"k":true},"z":null}"#)).unwrap();
        assert_eq!(
            h,
            vec![
                ("a".into(), "x".into()),
                ("n".into(), "1".into()),
                ("o".into(), r#"{"k":true}"#.into()),
                ("z".into(), "null".into())
            ]
        );
        assert_eq!(parse_user_headers(None).unwrap(), vec![]);
        assert_eq!(parse_user_headers(Some("null")).unwrap(), vec![]);
        assert!(parse_user_headers(Some("[1]"))
            .unwrap_err()
            .contains("not an object"));
        assert!(parse_user_headers(Some("{"))
            .unwrap_err()
            .contains("not valid JSON"));
    }

    fn sample() -> OutboxEvent {
        OutboxEvent {
            headers: Some(r#"{"tenant":"acme","id":"spoof","traceparent":"00-bad"}"#.into()),
            lsn: Lsn(0x1_0000_0010),
            ..crate::fixtures::sample_event()
        }
    }

    #[test]
    fn event_headers_carry_everything() {
        let list = event_headers(
            &sample(),
            0,
            Some(SchemaRef {
                id: 7,
                version: Some(3),
            }),
        )
        .unwrap();
        assert_eq!(get(&list, "id"), Some("e1"));
        assert_eq!(get(&list, "event_type"), Some("OrderCreated"));
        assert_eq!(get(&list, "aggregate_type"), Some("order"));
        assert_eq!(get(&list, "schema_id"), Some("7"));
        assert_eq!(get(&list, "schema_version"), Some("3"));
        assert_eq!(get(&list, "outbox_lsn"), Some("1/10"));
        assert_eq!(get(&list, "commit_time"), Some("1970-01-01T00:00:00.000000Z"));
        assert_eq!(get(&list, "traceparent"), Some(TP));
        assert_eq!(get(&list, "tracestate"), Some("vendor=x"));
        assert_eq!(get(&list, "tenant"), Some("acme"));
        assert_eq!(
            list.iter().filter(|(k, _)| k == "id").count(),
            1,
            "user headers cannot override id"
        );
        assert_eq!(list.iter().filter(|(k, _)| k == "traceparent").count(), 1);
    }

    #[test]
    fn trace_headers_are_never_invented() {
        let mut e = sample();
        e.traceparent = Some("00-bad".into());
        let list = event_headers(&e, 0, None).unwrap();
        assert_eq!(get(&list, "traceparent"), None);
        assert_eq!(
            get(&list, "tracestate"),
            None,
            "tracestate needs a valid traceparent"
        );
        assert_eq!(get(&list, "schema_id"), None);
        // No column: taken from the user headers when valid there.
        e.traceparent = None;
        e.tracestate = None;
        e.headers = Some(format!(r#"{{"traceparent":"{TP}","tracestate":"a=b"}}"#));
        let list = event_headers(&e, 0, None).unwrap();
        assert_eq!(get(&list, "traceparent"), Some(TP));
        assert_eq!(get(&list, "tracestate"), Some("a=b"));
    }

    #[test]
    fn invalid_user_headers_are_an_error() {
        let mut e = sample();
        e.headers = Some("\"text\"".into());
        assert!(event_headers(&e, 0, None).is_err());
    }

    #[test]
    fn dead_letter_headers_name_the_reason() {
        let mut e = sample();
        e.headers = Some("not json".into());
        let info = DeadLetterInfo {
            reason: DlqReason::TooLarge,
            detail: "big",
            intended_topic: Some("t"),
        };
        let list = dead_letter_headers(&e, 0, &info);
        assert_eq!(get(&list, "dlq_reason"), Some("too_large"));
        assert_eq!(get(&list, "dlq_detail"), Some("big"));
        assert_eq!(get(&list, "dlq_intended_topic"), Some("t"));
        assert_eq!(get(&list, "id"), Some("e1"));
        assert_eq!(get(&list, "outbox_lsn"), Some("1/10"));
        assert_eq!(get(&list, "traceparent"), Some(TP));
        assert_eq!(get(&list, "tenant"), None);
        assert_eq!(get(&list, "dlq_original_headers"), Some("not json"));
    }

    #[test]
    fn dead_letters_keep_the_rows_user_headers() {
        let mut e = sample();
        e.headers = Some(r#"{"tenant":"acme","dlq_reason":"spoof","id":"spoof"}"#.into());
        let info = DeadLetterInfo {
            reason: DlqReason::TooLarge,
            detail: "big",
            intended_topic: None,
        };
        let list = dead_letter_headers(&e, 0, &info);
        assert_eq!(get(&list, "tenant"), Some("acme"));
        assert_eq!(get(&list, "dlq_reason"), Some("too_large"));
        assert_eq!(get(&list, "id"), Some("e1"));
        assert_eq!(
            list.iter()
                .filter(|(k, _)| k == "id" || k == "dlq_reason")
                .count(),
            2
        );
        assert_eq!(get(&list, "dlq_original_headers"), None);
    }
}
