//! Replaying dead letters, the pure part: the outbox event a dead letter stands for, and whether it can be
//! replayed at all ([`triage`]). What the replayed record holds is decided by [`crate::Stage::prepare_replay`],
//! the pipeline's own path.

use crate::headers::RESERVED;
use outboxd_core::{Lsn, OutboxEvent};
use outboxd_kafka::dead_letter::DeadLetter;
use outboxd_kafka::{parse_rfc3339_micros, DlqReason};

/// A dead letter that can be tried again: the outbox event rebuilt from it, its Postgres commit time, and the
/// topic it was meant for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replayable {
    /// The event, as the pipeline saw it (the user headers the dead letter carries included).
    pub event: OutboxEvent,
    /// The Postgres commit time, microseconds since the Unix epoch (for the `commit_time` header).
    pub commit_time_us: i64,
    /// The topic the event was meant for (`dlq_intended_topic`).
    pub topic: String,
}

/// What can be done with a dead letter before any schema is consulted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Triage {
    /// Re-validate it against the current schema and produce it to its topic when it now fits.
    Replay(Box<Replayable>),
    /// It cannot be replayed whatever the schemas say: append it to the dead-letter topic again as it is.
    Keep {
        /// Why, for the report.
        why: String,
    },
}

/// The outbox event a dead letter stands for: identity headers, key (aggregate id), value (payload),
/// trace headers, and every other header that is neither outboxd's nor a `dlq_*` one as a user header.
fn rebuild(dl: &DeadLetter, topic: &str) -> Result<Replayable, String> {
    let text = |name: &str| dl.header(name).map(str::to_string);
    let lsn_text = dl.header("outbox_lsn").ok_or("it has no outbox_lsn header")?;
    let lsn: Lsn = lsn_text
        .parse()
        .map_err(|e| format!("its outbox_lsn header {lsn_text:?} is not an LSN: {e}"))?;
    let time = dl.header("commit_time").ok_or("it has no commit_time header")?;
    let commit_time_us = parse_rfc3339_micros(time)
        .ok_or_else(|| format!("its commit_time header {time:?} is not RFC 3339 with microseconds"))?;
    let aggregate_id = match &dl.key {
        Some(k) => Some(
            String::from_utf8(k.clone())
                .map_err(|_| "its key (the aggregate id) is not UTF-8".to_string())?,
        ),
        None => None,
    };
    let mut user = serde_json::Map::new();
    for (k, v) in &dl.headers {
        if RESERVED.contains(&&**k) || k.starts_with("dlq_") {
            continue;
        }
        let v = std::str::from_utf8(v).map_err(|_| format!("its header {k:?} is not UTF-8"))?;
        user.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    let event = OutboxEvent {
        id: text("id"),
        aggregate_type: text("aggregate_type"),
        aggregate_id,
        event_type: text("event_type"),
        payload: dl.value.clone(),
        headers: (!user.is_empty()).then(|| serde_json::Value::Object(user).to_string()),
        traceparent: text("traceparent"),
        tracestate: text("tracestate"),
        topic: Some(topic.to_string()),
        lsn,
        ..OutboxEvent::default()
    };
    Ok(Replayable {
        event,
        commit_time_us,
        topic: topic.to_string(),
    })
}

/// Decides whether a dead letter can be replayed at all. Kept (appended again as it is): no intended topic
/// (it could not be routed), a decode defect, a bad row headers column (replaying would silently drop it),
/// required fields missing, no payload (dropped as too large), or identity headers outboxd did not write.
pub fn triage(dl: &DeadLetter) -> Triage {
    let keep = |why: String| Triage::Keep { why };
    let Some(topic) = dl.intended_topic() else {
        return keep(format!(
            "no intended topic: the event could not be routed ({}: {})",
            dl.reason(),
            dl.detail()
        ));
    };
    if dl.reason() == DlqReason::DecodeDefect.code() {
        return keep(format!(
            "the row could not be decoded faithfully: {}",
            dl.detail()
        ));
    }
    if dl.reason() == DlqReason::InvalidHeaders.code() {
        return keep(format!(
            "the row's headers column was unusable and is not in the dead letter: {}",
            dl.detail()
        ));
    }
    let replayable = match rebuild(dl, topic) {
        Ok(r) => r,
        Err(e) => return keep(format!("not a dead letter outboxd can rebuild: {e}")),
    };
    let missing = replayable.event.missing_required();
    if !missing.is_empty() {
        return keep(format!("missing or empty: {}", missing.join(", ")));
    }
    if replayable.event.payload.is_none() {
        return keep(format!("the dead letter holds no payload: {}", dl.detail()));
    }
    Triage::Replay(Box::new(replayable))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::{dead_letter_headers, DeadLetterInfo};
    use outboxd_kafka::dead_letter::{
        requeued_headers, DETAIL, INTENDED_TOPIC, REASON, REPLAYED_FROM, REPLAYS,
    };
    use outboxd_kafka::HeaderList;

    use crate::fixtures::{sample_event as event, TIME};

    /// A dead letter exactly as the sink writes it.
    fn dead_letter(event: &OutboxEvent, reason: DlqReason, intended: Option<&str>) -> DeadLetter {
        let info = DeadLetterInfo {
            reason,
            detail: "$.amount: missing",
            intended_topic: intended,
        };
        DeadLetter {
            partition: 2,
            offset: 17,
            key: event.aggregate_id.as_ref().map(|k| k.as_bytes().to_vec()),
            value: event.payload.clone(),
            headers: dead_letter_headers(event, TIME, &info),
        }
    }

    fn get<'a>(list: &'a HeaderList, name: &str) -> Vec<&'a str> {
        list.iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| std::str::from_utf8(v).unwrap())
            .collect()
    }

    #[test]
    fn a_dead_letter_rebuilds_its_event() {
        let dl = dead_letter(&event(), DlqReason::Encoder("schema_mismatch"), Some("t.order"));
        let Triage::Replay(r) = triage(&dl) else {
            panic!("replayable: {:?}", triage(&dl))
        };
        assert_eq!(r.topic, "t.order");
        assert_eq!(r.commit_time_us, TIME);
        let expected = OutboxEvent {
            topic: Some("t.order".into()),
            ..event()
        };
        assert_eq!(r.event, expected);
    }

    #[test]
    fn user_headers_in_a_dead_letter_are_carried_over() {
        let mut dl = dead_letter(&event(), DlqReason::TooLarge, Some("t.order"));
        dl.headers.push(("tenant".into(), b"acme"[..].into()));
        let Triage::Replay(r) = triage(&dl) else { panic!() };
        assert_eq!(r.event.headers.as_deref(), Some(r#"{"tenant":"acme"}"#));
    }

    #[test]
    fn what_cannot_be_replayed_is_kept() {
        let unroutable = dead_letter(&event(), DlqReason::MissingFields, None);
        let defect = dead_letter(&event(), DlqReason::DecodeDefect, Some("t.order"));
        let bad_headers = dead_letter(&event(), DlqReason::InvalidHeaders, Some("t.order"));
        let no_key = dead_letter(
            &OutboxEvent {
                aggregate_id: None,
                ..event()
            },
            DlqReason::MissingFields,
            Some("t.order"),
        );
        let no_payload = DeadLetter {
            value: None,
            ..dead_letter(&event(), DlqReason::TooLarge, Some("t.order"))
        };
        let mut no_lsn = dead_letter(&event(), DlqReason::TooLarge, Some("t.order"));
        no_lsn.headers.retain(|(k, _)| k != "outbox_lsn");
        for (dl, why) in [
            (unroutable, "no intended topic"),
            (defect, "decoded"),
            (bad_headers, "headers column"),
            (no_key, "aggregate_id"),
            (no_payload, "no payload"),
            (no_lsn, "outbox_lsn"),
        ] {
            match triage(&dl) {
                Triage::Keep { why: w } => assert!(w.contains(why), "{w:?} should mention {why:?}"),
                other => panic!("{why}: expected Keep, got {other:?}"),
            }
        }
    }

    #[test]
    fn requeued_counts_replays_and_takes_the_new_reason() {
        let dl = dead_letter(&event(), DlqReason::Encoder("schema_mismatch"), Some("t.order"));
        let once = requeued_headers(&dl, Some(("invalid_json", "not JSON")));
        assert_eq!(get(&once, REASON), vec!["invalid_json"]);
        assert_eq!(get(&once, DETAIL), vec!["not JSON"]);
        assert_eq!(get(&once, REPLAYS), vec!["1"]);
        assert_eq!(get(&once, REPLAYED_FROM), vec!["2/17"]);
        assert_eq!(get(&once, INTENDED_TOPIC), vec!["t.order"]);
        assert_eq!(get(&once, "id"), vec!["e1"]);
        let again = DeadLetter {
            partition: 0,
            offset: 99,
            headers: once,
            ..dl.clone()
        };
        assert_eq!(again.replays(), 1);
        let twice = requeued_headers(&again, None);
        assert_eq!(get(&twice, REPLAYS), vec!["2"], "one header, incremented");
        assert_eq!(get(&twice, REPLAYED_FROM), vec!["0/99"]);
        assert_eq!(get(&twice, REASON), vec!["invalid_json"], "kept as it was");
        assert_eq!(twice.len(), again.headers.len(), "no header added twice");
    }
}
