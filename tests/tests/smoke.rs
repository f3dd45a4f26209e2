//! Smoke tests that prove the test harness talks to real services. Each fails loudly when a service is absent.

use outboxd_testkit::kafka::{create_topic, drain, transactional_producer, Isolation};
use outboxd_testkit::{unique_name, Services, TestDb};
use rdkafka::producer::{FutureRecord, Producer};
use std::time::Duration;

#[tokio::test]
async fn postgres_is_logical_and_creates_a_pgoutput_slot() {
    let services = Services::from_env();
    let db = TestDb::create(&services).await;
    let wal_level: String = db.client.query_one("SHOW wal_level", &[]).await.unwrap().get(0);
    assert_eq!(wal_level, "logical");
    let slot = db.create_slot().await;
    let row = db
        .client
        .query_one(
            "SELECT plugin, database FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "pgoutput");
    assert_eq!(row.get::<_, String>(1), db.name);
}

#[tokio::test]
async fn aborted_transaction_is_invisible_to_read_committed() {
    let services = Services::from_env();
    let topic = unique_name("smoke");
    create_topic(&services.kafka_bootstrap, &topic, 1, &[]).await;
    let producer = transactional_producer(&services.kafka_bootstrap, &unique_name("txn"));
    let timeout = Duration::from_secs(30);

    // Two committed transactions around an aborted one: the second commit proves one producer goes on
    // committing after an abort (with transaction.version 2, the broker's default, the epoch is bumped at
    // every end of transaction and the producer follows it).
    for (value, commit) in [("committed-1", true), ("aborted", false), ("committed-2", true)] {
        producer.begin_transaction().unwrap();
        producer
            .send(
                FutureRecord::to(&topic).key("k").payload(value),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("producing {value}: {e}"));
        if commit {
            producer.commit_transaction(timeout).unwrap();
        } else {
            producer.abort_transaction(timeout).unwrap();
        }
    }

    let values = |isolation| -> Vec<String> {
        drain(&services.kafka_bootstrap, &topic, isolation, timeout)
            .into_iter()
            .map(|r| String::from_utf8(r.value.unwrap()).unwrap())
            .collect()
    };
    assert_eq!(
        values(Isolation::ReadUncommitted),
        ["committed-1", "aborted", "committed-2"]
    );
    assert_eq!(values(Isolation::ReadCommitted), ["committed-1", "committed-2"]);
}

#[tokio::test]
async fn registry_registers_a_schema_and_refuses_an_incompatible_one() {
    let services = Services::from_env();
    let http = reqwest::Client::new();
    let subject = unique_name("smoke-value");
    let base = &services.registry_url;
    let v1 = r#"{"type":"record","name":"Smoke","fields":[{"name":"n","type":"int"}]}"#;
    let incompatible = r#"{"type":"record","name":"Smoke","fields":[{"name":"n","type":"string"}]}"#;
    let post = |schema: &str| {
        http.post(format!("{base}/subjects/{subject}/versions"))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .json(&serde_json::json!({ "schema": schema }))
            .send()
    };

    let res = post(v1)
        .await
        .unwrap_or_else(|e| panic!("registry at {base}: {e}"));
    assert_eq!(res.status(), 200, "registering v1");
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["id"].as_i64().is_some_and(|id| id > 0), "an id in {body}");

    let res = post(incompatible).await.unwrap();
    assert_eq!(
        res.status(),
        409,
        "an int -> string change is incompatible under BACKWARD"
    );
    let versions: Vec<i64> = http
        .get(format!("{base}/subjects/{subject}/versions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(versions, [1], "the refused schema was not registered");
}
