//! Replaying dead letters, the pure part: a dead-letter record read back ([`DeadLetter`]), the outbox event it
//! stands for, whether it can be replayed at all ([`triage`]), and the headers of the replayed record
//! ([`replayed_headers`]: exactly what the pipeline would have written, plus `dlq_replayed_from`) and of a dead
//! letter appended again ([`requeued_headers`]: `dlq_replays` incremented, the new reason when there is one).

use crate::headers::{self, HeaderList, SchemaRef, RESERVED};
use crate::DlqReason;
use outboxd_core::{Lsn, OutboxEvent};

/// Header naming the dead letter a record was copied from: `<partition>/<offset>` of the dead-letter topic.
pub const REPLAYED_FROM: &str = "dlq_replayed_from";
/// Header counting how many replays a dead letter went through without fitting.
pub const REPLAYS: &str = "dlq_replays";
/// Header carrying the reason code of a dead letter ([`DlqReason::code`]).
pub const REASON: &str = "dlq_reason";
/// Header carrying the human-readable detail of a dead letter.
pub const DETAIL: &str = "dlq_detail";
/// Header naming the topic a dead letter was meant for.
pub const INTENDED_TOPIC: &str = "dlq_intended_topic";

/// One record read back from the dead-letter topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its partition in the dead-letter topic.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// The key (the aggregate id, as plain bytes), if any.
    pub key: Option<Vec<u8>>,
    /// The original payload bytes, if the dead letter kept them.
    pub value: Option<Vec<u8>>,
    /// Its headers, in order.
    pub headers: HeaderList,
}

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

impl DeadLetter {
    /// The first header of that name, when it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// `<partition>/<offset>`: where it sits in the dead-letter topic.
    pub fn position(&self) -> String {
        format!("{}/{}", self.partition, self.offset)
    }

    /// Its reason code (`dlq_reason`), `unknown` when it has none.
    pub fn reason(&self) -> &str {
        self.header(REASON).unwrap_or("unknown")
    }

    /// Its detail (`dlq_detail`), empty when it has none.
    pub fn detail(&self) -> &str {
        self.header(DETAIL).unwrap_or_default()
    }

    /// The topic it was meant for, when the pipeline could route it.
    pub fn intended_topic(&self) -> Option<&str> {
        self.header(INTENDED_TOPIC).filter(|t| !t.is_empty())
    }

    /// How many replays it went through already (`dlq_replays`, 0 when absent).
    pub fn replays(&self) -> u32 {
        self.header(REPLAYS).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// The outbox event this dead letter stands for: identity headers, key (aggregate id), value (payload),
    /// trace headers, and every other header that is neither outboxd's nor a `dlq_*` one as a user header.
    fn event(&self, topic: &str) -> Result<Replayable, String> {
        let text = |name: &str| self.header(name).map(str::to_string);
        let lsn_text = self.header("outbox_lsn").ok_or("it has no outbox_lsn header")?;
        let lsn: Lsn = lsn_text
            .parse()
            .map_err(|e| format!("its outbox_lsn header {lsn_text:?} is not an LSN: {e}"))?;
        let time = self.header("commit_time").ok_or("it has no commit_time header")?;
        let commit_time_us = headers::parse_rfc3339_micros(time)
            .ok_or_else(|| format!("its commit_time header {time:?} is not RFC 3339 with microseconds"))?;
        let aggregate_id = match &self.key {
            Some(k) => Some(
                String::from_utf8(k.clone())
                    .map_err(|_| "its key (the aggregate id) is not UTF-8".to_string())?,
            ),
            None => None,
        };
        let mut user = serde_json::Map::new();
        for (k, v) in &self.headers {
            if RESERVED.contains(&k.as_str()) || k.starts_with("dlq_") {
                continue;
            }
            let v = std::str::from_utf8(v).map_err(|_| format!("its header {k:?} is not UTF-8"))?;
            user.insert(k.clone(), serde_json::Value::String(v.to_string()));
        }
        let event = OutboxEvent {
            id: text("id"),
            aggregate_type: text("aggregate_type"),
            aggregate_id,
            event_type: text("event_type"),
            payload: self.value.clone(),
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
    let replayable = match dl.event(topic) {
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

/// The headers of a replayed event: exactly [`headers::event_headers`] (what the pipeline writes), plus
/// `dlq_replayed_from` naming the dead letter. Fails like `event_headers` (bad user headers).
pub fn replayed_headers(
    dl: &DeadLetter,
    replayable: &Replayable,
    schema: Option<SchemaRef>,
) -> Result<HeaderList, String> {
    let mut list = headers::event_headers(&replayable.event, replayable.commit_time_us, schema)?;
    list.push((REPLAYED_FROM.to_string(), dl.position().into_bytes()));
    Ok(list)
}

/// The headers of a dead letter appended again: its own, with `dlq_replays` incremented, `dlq_replayed_from`
/// naming the copy's origin, and `dlq_reason` / `dlq_detail` replaced when `reason` is given (it still does
/// not fit, for a new reason).
pub fn requeued_headers(dl: &DeadLetter, reason: Option<(&str, &str)>) -> HeaderList {
    let mut list = HeaderList::with_capacity(dl.headers.len() + 2);
    let (mut reason_set, mut detail_set) = (false, false);
    for (k, v) in &dl.headers {
        match (k.as_str(), reason) {
            (REPLAYS | REPLAYED_FROM, _) => continue,
            (REASON, Some((code, _))) if !reason_set => {
                reason_set = true;
                list.push((k.clone(), code.as_bytes().to_vec()));
            }
            (DETAIL, Some((_, detail))) if !detail_set => {
                detail_set = true;
                list.push((k.clone(), detail.as_bytes().to_vec()));
            }
            (REASON | DETAIL, Some(_)) => continue,
            _ => list.push((k.clone(), v.clone())),
        }
    }
    if let Some((code, detail)) = reason {
        if !reason_set {
            list.push((REASON.to_string(), code.as_bytes().to_vec()));
        }
        if !detail_set {
            list.push((DETAIL.to_string(), detail.as_bytes().to_vec()));
        }
    }
    list.push((REPLAYS.to_string(), (dl.replays() + 1).to_string().into_bytes()));
    list.push((REPLAYED_FROM.to_string(), dl.position().into_bytes()));
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::{dead_letter_headers, DeadLetterInfo};

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const TIME: i64 = 1_714_566_896_123_456;

    fn event() -> OutboxEvent {
        OutboxEvent {
            id: Some("e1".into()),
            aggregate_type: Some("order".into()),
            aggregate_id: Some("42".into()),
            event_type: Some("OrderCreated".into()),
            payload: Some(br#"{"orderId":"42"}"#.to_vec()),
            traceparent: Some(TP.into()),
            tracestate: Some("vendor=x".into()),
            lsn: Lsn(0x16_B374_D848),
            ..OutboxEvent::default()
        }
    }

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
    fn a_schema_mismatch_rebuilds_the_event_and_its_headers() {
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
        let schema = Some(SchemaRef {
            id: 9,
            version: Some(2),
        });
        let list = replayed_headers(&dl, &r, schema).unwrap();
        let mut pipeline = headers::event_headers(&event(), TIME, schema).unwrap();
        pipeline.push((REPLAYED_FROM.into(), b"2/17".to_vec()));
        assert_eq!(list, pipeline, "the pipeline's headers, plus where it came from");
    }

    #[test]
    fn user_headers_in_a_dead_letter_are_carried_over() {
        let mut dl = dead_letter(&event(), DlqReason::TooLarge, Some("t.order"));
        dl.headers.push(("tenant".into(), b"acme".to_vec()));
        let Triage::Replay(r) = triage(&dl) else { panic!() };
        let list = replayed_headers(&dl, &r, None).unwrap();
        assert_eq!(get(&list, "tenant"), vec!["acme"]);
        assert!(
            get(&list, REASON).is_empty(),
            "no dlq_* header on a replayed event"
        );
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
