//! The stage's decisions, in their documented order, with no service running.

use crate::fixtures::{sample_event, TIME};
use crate::test_encoder::FakeEncoder;
use crate::{EventRejection, Prepared, ReplayPlan, Stage};
use outboxd_core::OutboxEvent;
use outboxd_kafka::dead_letter::REPLAYED_FROM;
use outboxd_kafka::{DeadLetter, DlqReason, HeaderList, ReadyRecord, SinkConfig};

fn stage(max_message_bytes: usize) -> Stage<FakeEncoder> {
    let config = SinkConfig {
        dlq_topic: "outbox.dlq".into(),
        max_message_bytes,
        ..SinkConfig::default()
    };
    Stage::new(&config, FakeEncoder::default()).unwrap()
}

fn event() -> OutboxEvent {
    OutboxEvent {
        headers: Some(r#"{"tenant":"acme"}"#.into()),
        traceparent: None,
        tracestate: None,
        ..sample_event()
    }
}

/// An event whose payload its schema rejects (`schema_mismatch`).
fn mismatched() -> OutboxEvent {
    OutboxEvent {
        payload: Some(br#"{"bad":1}"#.to_vec()),
        ..event()
    }
}

fn header<'a>(list: &'a HeaderList, name: &str) -> Option<&'a str> {
    list.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| std::str::from_utf8(v).unwrap())
}

async fn prepare(stage: &Stage<FakeEncoder>, event: &OutboxEvent) -> Prepared {
    stage.prepare(event, TIME).await.unwrap()
}

async fn ready(stage: &Stage<FakeEncoder>, event: &OutboxEvent) -> ReadyRecord {
    match prepare(stage, event).await {
        Prepared::Ready(r) => r,
        other => panic!("expected a record, got {other:?}"),
    }
}

async fn rejected(stage: &Stage<FakeEncoder>, event: &OutboxEvent) -> EventRejection {
    match prepare(stage, event).await {
        Prepared::Rejected(r) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn a_good_event_becomes_its_record() {
    let r = ready(&stage(1_000_000), &event()).await;
    assert_eq!(&*r.topic, "outbox.event.order");
    assert_eq!(r.key.as_deref(), Some(&b"42"[..]));
    let value = r.value.as_deref().unwrap();
    assert_eq!(&value[..5], &[0, 0, 0, 0, 1], "Confluent frame with schema id 1");
    assert_eq!(&value[5..], br#"{"orderId":"42"}"#);
    for (name, want) in [
        ("id", "e1"),
        ("event_type", "OrderCreated"),
        ("aggregate_type", "order"),
        ("schema_id", "1"),
        ("schema_version", "1"),
        ("outbox_lsn", "16/B374D848"),
        ("commit_time", "2024-05-01T12:34:56.123456Z"),
        ("tenant", "acme"),
    ] {
        assert_eq!(header(&r.headers, name), Some(want), "{name}");
    }
}

#[tokio::test]
async fn reasons_come_in_the_documented_order() {
    let s = stage(1_000_000);
    let cases: Vec<(OutboxEvent, DlqReason, Option<&str>)> = vec![
        (
            // A defect wins over everything, with the topic it would have had.
            OutboxEvent {
                defect: Some("bad envelope".into()),
                id: None,
                ..event()
            },
            DlqReason::DecodeDefect,
            Some("outbox.event.order"),
        ),
        (
            OutboxEvent {
                id: None,
                payload: Some(b"not json".to_vec()),
                ..event()
            },
            DlqReason::MissingFields,
            Some("outbox.event.order"),
        ),
        (
            // The template needs aggregate_type: no intended topic.
            OutboxEvent {
                aggregate_type: None,
                ..event()
            },
            DlqReason::MissingFields,
            None,
        ),
        (
            OutboxEvent {
                aggregate_type: Some("order item".into()),
                ..event()
            },
            DlqReason::InvalidTopic,
            None,
        ),
        (
            OutboxEvent {
                payload: None,
                ..event()
            },
            DlqReason::MissingFields,
            Some("outbox.event.order"),
        ),
        (
            // The encoder's reason comes before the headers column's.
            OutboxEvent {
                payload: Some(b"not json".to_vec()),
                headers: Some("[1]".into()),
                ..event()
            },
            DlqReason::Encoder("invalid_json"),
            Some("outbox.event.order"),
        ),
        (
            mismatched(),
            DlqReason::Encoder("schema_mismatch"),
            Some("outbox.event.order"),
        ),
        (
            OutboxEvent {
                event_type: Some("UnknownThing".into()),
                ..event()
            },
            DlqReason::Encoder("unknown_event_type"),
            Some("outbox.event.order"),
        ),
        (
            OutboxEvent {
                headers: Some("[1]".into()),
                ..event()
            },
            DlqReason::InvalidHeaders,
            Some("outbox.event.order"),
        ),
    ];
    for (e, reason, intended) in cases {
        let r = rejected(&s, &e).await;
        assert_eq!(
            (r.reason, r.intended_topic.as_deref()),
            (reason, intended),
            "{e:?}: {r:?}"
        );
        assert!(!r.detail.is_empty());
    }
}

#[tokio::test]
async fn a_record_over_the_limit_is_rejected_as_too_large() {
    let s = stage(400);
    let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(400));
    let r = rejected(
        &s,
        &OutboxEvent {
            payload: Some(big.into_bytes()),
            ..event()
        },
    )
    .await;
    assert_eq!(r.reason, DlqReason::TooLarge);
    assert!(r.detail.contains("max_message_bytes is 400"), "{}", r.detail);
    assert_eq!(
        &*ready(&s, &event()).await.topic,
        "outbox.event.order",
        "a small one fits"
    );
}

#[tokio::test]
async fn a_registry_away_is_no_decision() {
    let s = stage(1_000_000);
    s.encoder().fail_next(1);
    let err = s.prepare(&event(), TIME).await.unwrap_err();
    assert!(err.is_retriable(), "{err}");
    ready(&s, &event()).await;
}

#[tokio::test]
async fn dead_letters_keep_the_payload_unless_it_is_too_large() {
    let s = stage(600);
    let e = mismatched();
    let r = rejected(&s, &e).await;
    let dl = s.dead_letter(&e, TIME, &r);
    assert_eq!(&*dl.topic, "outbox.dlq");
    assert_eq!(dl.key.as_deref(), Some(&b"42"[..]));
    assert_eq!(dl.value, e.payload);
    assert_eq!(header(&dl.headers, "dlq_reason"), Some("schema_mismatch"));
    assert_eq!(
        header(&dl.headers, "dlq_intended_topic"),
        Some("outbox.event.order")
    );
    assert_eq!(header(&dl.headers, "tenant"), Some("acme"));
    let huge = OutboxEvent {
        payload: Some(vec![b'x'; 1000]),
        ..event()
    };
    let r = rejected(&s, &huge).await;
    let dl = s.dead_letter(&huge, TIME, &r);
    assert_eq!(dl.value, None, "the payload is dropped");
    assert!(header(&dl.headers, "dlq_detail")
        .unwrap()
        .contains("payload of 1000 bytes dropped"));
    assert!(dl.size() <= 600);
}

/// A dead letter as the sink writes it, read back at `2/17`.
fn read_back(record: ReadyRecord) -> DeadLetter {
    DeadLetter {
        partition: 2,
        offset: 17,
        key: record.key,
        value: record.value,
        headers: record.headers,
    }
}

#[tokio::test]
async fn a_replay_writes_exactly_what_the_pipeline_would_have() {
    let s = stage(1_000_000);
    let e = event();
    let rejection = EventRejection {
        reason: DlqReason::Encoder("schema_mismatch"),
        detail: "$.amount: missing".into(),
        intended_topic: Some("outbox.event.order".into()),
    };
    let dl = read_back(s.dead_letter(&e, TIME, &rejection));
    let ReplayPlan::Replay(replayed) = s.prepare_replay(&dl).await.unwrap() else {
        panic!("replayable")
    };
    let mut pipeline = ready(&s, &e).await;
    pipeline.headers.push((REPLAYED_FROM.into(), b"2/17"[..].into()));
    assert_eq!(
        replayed, pipeline,
        "the pipeline's record, plus where it came from"
    );
}

#[tokio::test]
async fn a_replay_that_still_fails_or_cannot_be_tried_says_why() {
    let s = stage(1_000_000);
    let bad = mismatched();
    let dl = read_back(s.dead_letter(&bad, TIME, &rejected(&s, &bad).await));
    match s.prepare_replay(&dl).await.unwrap() {
        ReplayPlan::StillFailing(r) => assert_eq!(r.reason, DlqReason::Encoder("schema_mismatch")),
        other => panic!("{other:?}"),
    }
    let unroutable = OutboxEvent {
        aggregate_type: None,
        ..event()
    };
    let dl = read_back(s.dead_letter(&unroutable, TIME, &rejected(&s, &unroutable).await));
    match s.prepare_replay(&dl).await.unwrap() {
        ReplayPlan::Keep { why } => assert!(why.contains("no intended topic"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_naming_rule_dead_letters_bad_names_after_the_missing_fields() {
    let mut config = SinkConfig::default();
    config.routing.event_name_rule = Some(outboxd_kafka::EventNameRule::DomainEntityAction);
    config.routing.topic_template = "outbox.{event_type.0}".into();
    let s = Stage::new(&config, FakeEncoder::default()).unwrap();
    let r = rejected(&s, &event()).await;
    assert_eq!(
        r.reason,
        DlqReason::BadEventName,
        "OrderCreated has one part: {r:?}"
    );
    assert_eq!(r.intended_topic.as_deref(), Some("outbox.OrderCreated"));
    let missing = OutboxEvent { id: None, ..event() };
    assert_eq!(rejected(&s, &missing).await.reason, DlqReason::MissingFields);
    let good = OutboxEvent {
        event_type: Some("Order.PaymentProcessed".into()),
        aggregate_type: None,
        ..event()
    };
    let record = ready(&s, &good).await;
    assert_eq!(
        &*record.topic, "outbox.Order",
        "routed by the event type's first part, no aggregate type"
    );
    assert_eq!(record.key.as_deref(), Some(&b"42"[..]));
}
