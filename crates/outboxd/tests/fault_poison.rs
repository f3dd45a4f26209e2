//! Fault suite, poison rows: more than 10,000 outbox rows that cannot be published, mixed with good rows in
//! the same transactions while the pipeline streams — invalid JSON, wrong types, missing required fields,
//! deep nesting, payloads above `kafka.max_message_bytes` (10 kB here), unknown event types, null aggregate
//! ids, headers that are not a JSON object, aggregate types that make an illegal topic name. Each lands in the
//! DLQ exactly once with its reason (`dlq_reason`, checked per row), none blocks the stream, and the good rows
//! around them arrive exactly once in per-aggregate order. NUL characters and invalid UTF-8 cannot be stored
//! in the text payload column at all: Postgres refuses the INSERT (asserted); through a bytea payload column
//! they reach the outbox and go to the DLQ as `invalid_json` (second test).
//! Needs `scripts/services up`.

mod support;

use outboxd::FaultPlan;
use outboxd_testkit::kafka::Isolation;
use std::collections::BTreeMap;
use support::{assert_exactly_once, assert_per_key_order, Env, Row};

/// Poison rows per kind (9 kinds: 11,700 poison rows).
const PER_KIND: usize = 1_300;
/// Good rows (one after every second poison row or so).
const GOOD: usize = 5_000;

/// A kind of poison: how to spoil a good row, and the `dlq_reason` it must get.
struct Kind {
    name: &'static str,
    reason: &'static str,
    spoil: fn(&mut Row, usize),
}

const KINDS: [Kind; 9] = [
    Kind {
        name: "invalid JSON",
        reason: "invalid_json",
        spoil: |r, i| r.payload = Some(format!("{{\"orderId\": \"x{i}\", amount: }}")),
    },
    Kind {
        name: "wrong type",
        reason: "schema_mismatch",
        spoil: |r, _| r.payload = Some(r#"{"orderId":"x","amount":"ten"}"#.into()),
    },
    Kind {
        name: "missing required field",
        reason: "schema_mismatch",
        spoil: |r, _| r.payload = Some(r#"{"orderId":"x"}"#.into()),
    },
    Kind {
        name: "deep nesting",
        reason: "invalid_json",
        spoil: |r, _| r.payload = Some(format!("{}1{}", "[".repeat(5_000), "]".repeat(5_000))),
    },
    Kind {
        name: "larger than max_message_bytes",
        reason: "too_large",
        spoil: |r, _| r.payload = Some(format!(r#"{{"orderId":"{}","amount":1}}"#, "x".repeat(12_000))),
    },
    Kind {
        name: "unknown event type",
        reason: "unknown_event_type",
        spoil: |r, _| r.event_type = Some("NoSuchEvent".into()),
    },
    Kind {
        name: "null aggregate id",
        reason: "missing_fields",
        spoil: |r, _| r.aggregate_id = None,
    },
    Kind {
        name: "headers not an object",
        reason: "invalid_headers",
        spoil: |r, _| r.headers = Some("[1, 2]".into()),
    },
    Kind {
        name: "illegal topic name",
        reason: "invalid_topic",
        spoil: |r, _| r.aggregate_type = Some("no such/topic!".into()),
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_rows_go_to_the_dlq_with_their_reason_and_block_nothing() {
    let mut env = Env::new().await;
    env.config.kafka.max_message_bytes = 10_000;
    let topic = env.topic("order");

    // NUL and invalid UTF-8 cannot even be stored in a text column.
    for (what, sql) in [
        ("NUL", "SELECT E'a\\u0000b'::text"),
        ("invalid UTF-8", "SELECT convert_from('\\xff'::bytea, 'UTF8')"),
    ] {
        let err = env.db.client.query_one(sql, &[]).await.expect_err(what);
        let db = err.as_db_error().expect("a server error");
        eprintln!(
            "{what}: refused by Postgres: {} {}",
            db.code().code(),
            db.message()
        );
    }

    // The interleaving: poison i of kind k sits at slot i * KINDS + k; good rows are spread between.
    let total_poison = PER_KIND * KINDS.len();
    let mut rows: Vec<(Row, Option<&Kind>)> = Vec::with_capacity(total_poison + GOOD);
    let mut good = 0usize;
    for p in 0..total_poison {
        let (kind, i) = (&KINDS[p % KINDS.len()], p / KINDS.len());
        let mut row = Row::order(&format!("poison-{p:06}"), &format!("a{}", p % 7), p as i32);
        (kind.spoil)(&mut row, i);
        rows.push((row, Some(kind)));
        if p * GOOD / total_poison >= good {
            rows.push((
                Row::order(&format!("good-{good:06}"), &format!("a{}", good % 7), good as i32),
                None,
            ));
            good += 1;
        }
    }
    while good < GOOD {
        rows.push((
            Row::order(&format!("good-{good:06}"), &format!("a{}", good % 7), good as i32),
            None,
        ));
        good += 1;
    }
    let expected_good: Vec<String> = rows
        .iter()
        .filter(|r| r.1.is_none())
        .map(|r| r.0.id.clone())
        .collect();
    let expected_kind: BTreeMap<String, &Kind> = rows
        .iter()
        .filter_map(|(r, kind)| kind.map(|k| (r.id.clone(), k)))
        .collect();

    // The pipeline streams while the rows are written (transactions of 50 mixed rows).
    let running = env.spawn(FaultPlan::none());
    for chunk in rows.chunks(50) {
        let chunk: Vec<Row> = chunk.iter().map(|r| r.0.clone()).collect();
        env.insert(&chunk).await;
    }
    let dlq = env
        .wait_for(&env.config.kafka.dlq_topic.clone(), total_poison, &running)
        .await;
    let records = env.wait_for(&topic, GOOD, &running).await;
    let outcome = running.stop().await.unwrap();

    assert_exactly_once(&records, &expected_good);
    assert_per_key_order(&records, &expected_good);
    let poison_ids: Vec<String> = expected_kind.keys().cloned().collect();
    assert_exactly_once(&dlq, &poison_ids);
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for record in &dlq {
        let id = record.header("id").unwrap_or_default();
        let reason = record.header("dlq_reason").unwrap_or_default();
        let kind = expected_kind[&id];
        assert_eq!(
            reason,
            kind.reason,
            "dlq_reason of {id} ({}; detail: {:?})",
            kind.name,
            record.header("dlq_detail")
        );
        *by_reason.entry(reason).or_default() += 1;
    }
    let all = env.drain(&topic, Isolation::ReadCommitted).await;
    assert_eq!(all.len(), GOOD, "no poison row reached the event topic");
    eprintln!(
        "FIGURES fault_poison: poison_rows={total_poison} good_rows={GOOD} duplicates=0 lost=0 by_reason={by_reason:?} \
         stats={:?}",
        outcome.stats.dead_letters_by_reason
    );
}

/// A bytea payload column lets NUL bytes and invalid UTF-8 into the outbox: both are rejected as
/// `invalid_json` (JSON text is UTF-8 without raw control characters), while the escaped `\u0000` is valid
/// JSON and a legal Avro string, so that row is delivered like the good ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nul_bytes_and_invalid_utf8_in_a_bytea_payload_go_to_the_dlq() {
    let mut env = Env::new().await;
    env.db
        .client
        .batch_execute(
            "CREATE TABLE public.outbox_bin (id text PRIMARY KEY, aggregate_type text, aggregate_id text, \
             event_type text, payload bytea, headers jsonb, traceparent text, tracestate text, \
             created_at timestamptz NOT NULL DEFAULT now());",
        )
        .await
        .unwrap();
    env.use_table("public.outbox_bin").await;

    let mut good = Vec::new();
    let mut poison = BTreeMap::new();
    let running = env.spawn(FaultPlan::none());
    for i in 0..300usize {
        let aggregate = format!("a{}", i % 5);
        let (id, payload): (String, Vec<u8>) = match i % 3 {
            0 => {
                let id = format!("good-{i:04}");
                good.push(id.clone());
                let p = format!(r#"{{"orderId":"{aggregate}","amount":{i}}}"#);
                (id, p.into_bytes())
            }
            1 => {
                let id = format!("nul-{i:04}");
                poison.insert(id.clone(), "invalid_json");
                (id, b"{\"orderId\":\"a\0b\",\"amount\":1}".to_vec())
            }
            _ => {
                let id = format!("utf8-{i:04}");
                poison.insert(id.clone(), "invalid_json");
                (id, b"{\"orderId\":\"a\xffb\",\"amount\":1}".to_vec())
            }
        };
        env.db
            .client
            .execute(
                "INSERT INTO public.outbox_bin (id, aggregate_type, aggregate_id, event_type, payload) \
                 VALUES ($1, 'order', $2, 'OrderCreated', $3)",
                &[&id, &aggregate, &payload],
            )
            .await
            .unwrap();
    }
    // The escaped NUL: valid JSON, a legal Avro string.
    let escaped = r#"{"orderId":"a\u0000b","amount":7}"#.as_bytes().to_vec();
    env.db
        .client
        .execute(
            "INSERT INTO public.outbox_bin (id, aggregate_type, aggregate_id, event_type, payload) \
             VALUES ('good-escaped-nul', 'order', 'a0', 'OrderCreated', $1)",
            &[&escaped],
        )
        .await
        .unwrap();
    good.push("good-escaped-nul".into());

    let dlq = env
        .wait_for(&env.config.kafka.dlq_topic.clone(), poison.len(), &running)
        .await;
    let records = env.wait_for(&env.topic("order"), good.len(), &running).await;
    running.stop().await.unwrap();
    assert_exactly_once(&records, &good);
    assert_per_key_order(&records, &good);
    let ids: Vec<String> = poison.keys().cloned().collect();
    assert_exactly_once(&dlq, &ids);
    for record in &dlq {
        let id = record.header("id").unwrap_or_default();
        assert_eq!(
            record.header("dlq_reason").as_deref(),
            Some(poison[&id]),
            "{id}: {:?}",
            record.header("dlq_detail")
        );
    }
    eprintln!(
        "FIGURES fault_poison(bytea): nul={} invalid_utf8={} escaped_nul_delivered=1 good={}",
        poison.keys().filter(|k| k.starts_with("nul")).count(),
        poison.keys().filter(|k| k.starts_with("utf8")).count(),
        good.len()
    );
}
