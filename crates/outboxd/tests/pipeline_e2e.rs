//! End to end through the library pipeline against real Postgres, broker and registry: rows become Avro
//! records on their routed topics, keyed by aggregate id, with every header; poison rows go to the dead-letter
//! topic and the stream goes on. Needs `scripts/services up`.

mod support;

use apache_avro::types::Value;
use outboxd::{FaultPlan, StopReason};
use outboxd_core::Lsn;
use outboxd_testkit::kafka::{Isolation, Record};
use support::{decode, Env, Row};

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn header(r: &Record, name: &str) -> Option<String> {
    r.header(name)
}

fn field<'a>(value: &'a Value, name: &str) -> &'a Value {
    match value {
        Value::Record(fields) => &fields.iter().find(|(n, _)| n == name).unwrap().1,
        other => panic!("not a record: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_become_keyed_avro_records_with_every_header() {
    let env = Env::new().await;
    let mut traced = Row::order("o-1", "a0", 10);
    traced.headers = Some(r#"{"tenant":"acme","attempt":2,"id":"spoofed"}"#.into());
    traced.traceparent = Some(TP.into());
    traced.tracestate = Some("vendor=x".into());
    let mut badly_traced = Row::order("o-2", "a1", 20);
    badly_traced.traceparent = Some("00-not-a-trace".into());
    badly_traced.tracestate = Some("vendor=y".into());
    env.insert(&[traced, badly_traced, Row::order("o-3", "a0", 30)])
        .await;
    let customer = Row {
        id: "c-1".into(),
        aggregate_type: Some("customer".into()),
        aggregate_id: Some("cust-7".into()),
        event_type: Some("CustomerCreated".into()),
        payload: Some(r#"{"name":"Ann"}"#.into()),
        ..Row::default()
    };
    env.insert(&[customer]).await;

    let running = env.spawn(FaultPlan::none());
    let orders = env.wait_for(&env.topic("order"), 3, &running).await;
    let customers = env.wait_for(&env.topic("customer"), 1, &running).await;
    let outcome = running.stop().await.unwrap();
    assert_eq!(outcome.reason, StopReason::Shutdown);
    assert_eq!(outcome.stats.events_produced, 4);
    assert_eq!(outcome.stats.dead_letters, 0);

    assert_eq!(orders.len(), 3);
    let by_id = |id: &str| {
        orders
            .iter()
            .find(|r| header(r, "id").as_deref() == Some(id))
            .unwrap()
    };
    let registry = &env.services.registry_url;
    for (id, key, amount) in [("o-1", "a0", 10), ("o-2", "a1", 20), ("o-3", "a0", 30)] {
        let r = by_id(id);
        assert_eq!(r.key.as_deref(), Some(key.as_bytes()), "keyed by aggregate id");
        let (schema_id, value) = decode(registry, r.value.as_deref().unwrap()).await;
        assert_eq!(field(&value, "orderId"), &Value::String(key.into()));
        assert_eq!(field(&value, "amount"), &Value::Int(amount));
        assert_eq!(header(r, "schema_id"), Some(schema_id.to_string()));
        assert!(header(r, "schema_version").is_some_and(|v| v.parse::<i32>().is_ok()));
        assert_eq!(header(r, "event_type").as_deref(), Some("OrderCreated"));
        assert_eq!(header(r, "aggregate_type").as_deref(), Some("order"));
        let lsn: Lsn = header(r, "outbox_lsn").unwrap().parse().unwrap();
        assert!(lsn > Lsn::ZERO);
        let time = header(r, "commit_time").unwrap();
        assert!(
            time.len() == 27 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "{time}"
        );
    }
    let traced = by_id("o-1");
    assert_eq!(header(traced, "traceparent").as_deref(), Some(TP));
    assert_eq!(header(traced, "tracestate").as_deref(), Some("vendor=x"));
    assert_eq!(header(traced, "tenant").as_deref(), Some("acme"));
    assert_eq!(
        header(traced, "attempt").as_deref(),
        Some("2"),
        "non-string values as JSON text"
    );
    assert_eq!(
        traced.headers.iter().filter(|(k, _)| k == "id").count(),
        1,
        "user headers cannot spoof id"
    );
    let untraced = by_id("o-2");
    assert_eq!(
        header(untraced, "traceparent"),
        None,
        "an invalid traceparent is dropped, never invented"
    );
    assert_eq!(header(untraced, "tracestate"), None);
    assert_eq!(header(by_id("o-3"), "traceparent"), None);

    let c = &customers[0];
    assert_eq!(c.key.as_deref(), Some(&b"cust-7"[..]));
    let (_, value) = decode(registry, c.value.as_deref().unwrap()).await;
    assert_eq!(field(&value, "name"), &Value::String("Ann".into()));

    // The shutdown confirmed the last checkpoint to Postgres.
    assert!(outcome.checkpoint > Lsn::ZERO);
    assert!(env.confirmed_flush_lsn().await >= outcome.checkpoint);
    assert!(env
        .drain(&env.config.kafka.dlq_topic, Isolation::ReadCommitted)
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_rows_are_dead_lettered_and_the_stream_goes_on() {
    let mut env = Env::new().await;
    env.config.kafka.max_message_bytes = 4096;
    let mut mismatch = Row::order("p-mismatch", "a1", 0);
    mismatch.payload = Some(r#"{"orderId":"a1","amount":"lots"}"#.into());
    let mut unknown = Row::order("p-unknown", "a2", 0);
    unknown.event_type = Some("OrderTeleported".into());
    let mut not_json = Row::order("p-not-json", "a3", 0);
    not_json.payload = Some("{oops".into());
    let mut no_aggregate = Row::order("p-no-aggregate", "a4", 0);
    no_aggregate.aggregate_id = None;
    let mut huge = Row::order("p-huge", "a5", 0);
    huge.payload = Some(format!(r#"{{"orderId":"{}","amount":1}}"#, "x".repeat(5000)));
    env.insert(&[
        Row::order("g-1", "a0", 1),
        mismatch,
        unknown,
        not_json,
        no_aggregate,
        huge,
        Row::order("g-2", "a0", 2),
    ])
    .await;
    env.insert(&[Row::order("g-3", "a0", 3)]).await;

    let running = env.spawn(FaultPlan::none());
    let dlq = env.wait_for(&env.config.kafka.dlq_topic, 5, &running).await;
    let good = env.wait_for(&env.topic("order"), 3, &running).await;
    let outcome = running.stop().await.unwrap();

    assert_eq!(
        support::ids(&good),
        vec!["g-1", "g-2", "g-3"],
        "the stream continued past every poison row"
    );
    assert_eq!(dlq.len(), 5);
    let snap = outcome.stats;
    assert_eq!((snap.events_produced, snap.dead_letters), (3, 5));
    let by_id = |id: &str| {
        dlq.iter()
            .find(|r| header(r, "id").as_deref() == Some(id))
            .unwrap()
    };
    let expect = [
        ("p-mismatch", "schema_mismatch"),
        ("p-unknown", "unknown_event_type"),
        ("p-not-json", "invalid_json"),
        ("p-no-aggregate", "missing_fields"),
        ("p-huge", "too_large"),
    ];
    let order_topic = env.topic("order");
    for (id, reason) in expect {
        let r = by_id(id);
        assert_eq!(header(r, "dlq_reason").as_deref(), Some(reason), "{id}");
        assert!(header(r, "dlq_detail").is_some_and(|d| !d.is_empty()), "{id}");
        assert_eq!(
            header(r, "dlq_intended_topic").as_deref(),
            Some(order_topic.as_str()),
            "{id}"
        );
        assert!(header(r, "outbox_lsn").is_some(), "{id}");
        assert_eq!(header(r, "aggregate_type").as_deref(), Some("order"), "{id}");
        assert_eq!(snap.dead_letters_by_reason.get(reason), Some(&1), "{reason}");
    }
    assert_eq!(
        by_id("p-mismatch").value.as_deref(),
        Some(&br#"{"orderId":"a1","amount":"lots"}"#[..])
    );
    assert_eq!(by_id("p-mismatch").key.as_deref(), Some(&b"a1"[..]));
    assert_eq!(
        by_id("p-not-json").value.as_deref(),
        Some(&b"{oops"[..]),
        "original payload bytes"
    );
    assert_eq!(
        header(by_id("p-unknown"), "event_type").as_deref(),
        Some("OrderTeleported")
    );
    assert_eq!(by_id("p-no-aggregate").key, None);
    assert!(header(by_id("p-no-aggregate"), "dlq_detail")
        .unwrap()
        .contains("aggregate_id"));
    assert!(header(by_id("p-huge"), "dlq_detail")
        .unwrap()
        .contains("max_message_bytes"));
}
