//! Outbox tables people already have: the table of the article that defines the pattern (no aggregate type,
//! `Domain.Entity.Action` event types, a `status` column) works unchanged, routed by the event type's first
//! part, encoded, keyed; a naming rule dead-letters what breaks it; and a template that needs the missing
//! column is refused at start, naming it. Real Postgres, broker and registry (`scripts/services up`).

mod support;

use apache_avro::types::Value;
use outboxd::{FaultPlan, PipelineError};
use outboxd_kafka::EventNameRule;
use support::{decode, Env};

const ARTICLE_TABLE: &str = "
CREATE TABLE public.outbox_events (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    aggregate_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload JSONB NOT NULL,
    status TEXT DEFAULT 'PENDING',
    created_at TIMESTAMPTZ DEFAULT NOW()
);";

/// The env, switched to the article's table (its own publication and slot), routed by `{event_type.0}`.
async fn article_env() -> Env {
    let mut env = Env::new().await;
    env.db.client.batch_execute(ARTICLE_TABLE).await.unwrap();
    let ns = &env.ns;
    std::fs::write(
        env.schema_dir.join("Order.PaymentProcessed.avsc"),
        format!(
            r#"{{"type":"record","name":"PaymentProcessed","namespace":"{ns}.Order","fields":[
                {{"name":"orderId","type":"string"}},{{"name":"amount","type":"int"}}]}}"#
        ),
    )
    .unwrap();
    env.use_table("public.outbox_events").await;
    env.config.kafka.routing.topic_template = format!("{}.{{event_type.0}}", env.prefix);
    env
}

async fn insert(env: &Env, aggregate_id: &str, event_type: &str, payload: &str) {
    env.db
        .client
        .execute(
            "INSERT INTO public.outbox_events (aggregate_id, event_type, payload) VALUES ($1, $2, $3::text::jsonb)",
            &[&aggregate_id, &event_type, &payload],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_articles_table_works_unchanged_routed_by_the_event_types_first_part() {
    let mut env = article_env().await;
    env.config.kafka.routing.event_name_rule = Some(EventNameRule::DomainEntityAction);
    // The third has one part only: it breaks Domain.Entity.Action and is dead-lettered with its reason.
    for (aggregate, event_type, amount) in [
        ("order-1", "Order.PaymentProcessed", 5),
        ("order-2", "Order.PaymentProcessed", 7),
        ("order-3", "PaymentProcessed", 9),
    ] {
        let payload = format!(r#"{{"orderId":"{aggregate}","amount":{amount}}}"#);
        insert(&env, aggregate, event_type, &payload).await;
    }

    let running = env.spawn(FaultPlan::none());
    let topic = env.topic("Order");
    let records = env.wait_for(&topic, 2, &running).await;
    let dead = env.wait_for(&env.config.kafka.dlq_topic, 1, &running).await;
    running.stop().await.unwrap();

    let mut keys: Vec<&[u8]> = records.iter().filter_map(|r| r.key.as_deref()).collect();
    keys.sort();
    assert_eq!(keys, [&b"order-1"[..], b"order-2"], "keyed by the aggregate id");
    for r in &records {
        let (_, value) = decode(&env.services.registry_url, r.value.as_deref().unwrap()).await;
        let Value::Record(fields) = value else {
            panic!("not a record")
        };
        assert_eq!(fields[0].0, "orderId");
        assert_eq!(r.header("event_type").as_deref(), Some("Order.PaymentProcessed"));
        assert_eq!(r.header("aggregate_type"), None, "the table has none");
        assert!(
            r.header("id").is_some_and(|id| id.len() == 36),
            "the UUID id is the event id"
        );
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header("dlq_reason").as_deref(), Some("bad_event_name"));
    assert_eq!(dead[0].key.as_deref(), Some(&b"order-3"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_template_that_needs_the_missing_aggregate_type_is_refused_at_start() {
    let mut env = article_env().await;
    env.config.kafka.routing.topic_template = format!("{}.{{aggregate_type}}", env.prefix);
    env.config.restart.max_restarts = Some(0);
    let running = env.spawn(FaultPlan::none());
    let err = running.join().await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, PipelineError::Wal(_))
            && text.contains("aggregate_type")
            && text.contains("{event_type.0}"),
        "{text}"
    );
}
