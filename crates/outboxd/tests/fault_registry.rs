//! Fault suite, schema registry down: the pipeline runs against a private registry, which is killed while
//! writers keep inserting. Events of a type whose schema is cached keep their ids; events of a type not seen
//! yet on their topic (subject strategy `topic_record_name`) need the registry: the stream pauses on them (nothing dead-lettered, nothing produced, the slot's lag
//! grows) and resumes by itself once the registry is back (empty: it is in-memory; the schemas are registered
//! again). A read_committed audit ends the test. Needs `scripts/services up`.

mod support;

use outboxd::FaultPlan;
use outboxd_avro::SubjectStrategy;
use outboxd_core::Lsn;
use outboxd_testkit::kafka::Isolation;
use outboxd_testkit::registry::PrivateRegistry;
use support::fault::{audit_orders, committed_ids, Writers};
use support::{assert_exactly_once, Env, Row};

fn customer(i: usize) -> Row {
    Row {
        id: format!("cust-{i:04}"),
        aggregate_type: Some("customer".into()),
        aggregate_id: Some(format!("c{}", i % 4)),
        event_type: Some("CustomerCreated".into()),
        payload: Some(format!(r#"{{"name":"customer {i}"}}"#)),
        ..Row::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registry_outage_pauses_new_event_types_and_the_stream_resumes_by_itself() {
    let mut registry = PrivateRegistry::start().await;
    let mut env = Env::new().await;
    env.config.avro.registry_url = registry.url();
    // Subjects per (topic, record): a type is registered at its first use on a topic, so a type first seen
    // during the outage needs the registry (with the default record-name strategy every schema of the
    // schema dir is registered at start-up).
    env.config.avro.subject_strategy = SubjectStrategy::TopicRecordName;
    env.config.restart.encode_max_backoff_ms = 300;
    env.config.restart.max_restarts = Some(500);
    let writers = Writers::start(&env.db.url, "reg", 2);
    let running = env.spawn(FaultPlan::none());
    env.wait_for(&env.topic("order"), 20, &running).await;

    registry.kill().await;
    let customers: Vec<Row> = (0..20).map(customer).collect();
    env.insert(&customers[..10]).await;
    env.insert(&customers[10..]).await;
    let after_customers: Lsn = env
        .db
        .client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get::<_, String>(0)
        .parse()
        .unwrap();
    // A window of writer progress (~hundreds of ms) with the registry down.
    writers.wait_progress(150).await;
    assert!(!running.is_finished(), "the pipeline must wait, not stop");
    let dlq_topic = env.config.kafka.dlq_topic.clone();
    assert!(
        env.drain(&env.topic("customer"), Isolation::ReadCommitted)
            .await
            .is_empty(),
        "nothing of the new event type is produced while the registry is down"
    );
    assert!(
        env.drain(&dlq_topic, Isolation::ReadCommitted).await.is_empty(),
        "a registry outage is not a reason to dead-letter"
    );
    let confirmed = env.confirmed_flush_lsn().await;
    assert!(
        confirmed < after_customers,
        "the slot is held before the paused events (lag grows): confirmed {confirmed}, customers end before {after_customers}"
    );
    assert_eq!(running.stats.snapshot().dead_letters, 0);

    registry.restart().await;
    let records = env.wait_for(&env.topic("customer"), 20, &running).await;
    let customer_ids: Vec<String> = customers.iter().map(|r| r.id.clone()).collect();
    writers.wait_progress(30).await;
    writers.stop().await;
    let expected = committed_ids(&env.db.url).await;
    env.wait_for(&env.topic("order"), expected.len(), &running).await;
    running.stop().await.unwrap();

    assert_exactly_once(&records, &customer_ids);
    let customers_committed = env.drain(&env.topic("customer"), Isolation::ReadCommitted).await;
    assert_exactly_once(&customers_committed, &customer_ids);
    let audit = audit_orders(&env, &expected).await;
    eprintln!(
        "FIGURES fault_registry: registry kills=1 rows_audited={} (+{} paused new-type events) duplicates=0 \
         lost=0 dead_letters=0",
        audit.rows,
        customer_ids.len()
    );
}
