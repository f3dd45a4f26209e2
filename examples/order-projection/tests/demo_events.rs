//! The example service end to end: outboxd (in-process) relays the demo's rows (config/outbox.sql,
//! config/schemas) to a fresh topic, and the `order-projection` binary projects them, exactly once, even when
//! run a second time over the same events (every one is then an inbox duplicate).

use outboxd::PipelineConfig;
use outboxd_testkit::{unique_name, Services, TestDb};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const ROWS: &str = "
INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload, traceparent) VALUES
  ('order', '67e55044-10b1-426f-9247-bb680e5fe0c8', 'OrderCreated',
   '{\"orderId\": \"67e55044-10b1-426f-9247-bb680e5fe0c8\", \"customer\": {\"id\": \"c-1042\"},
     \"items\": [{\"sku\": \"BOOK-17\", \"quantity\": 2, \"unitPrice\": \"19.90\"},
                 {\"sku\": \"PEN-3\", \"quantity\": 1, \"unitPrice\": \"4.50\"}],
     \"total\": \"44.30\", \"currency\": \"EUR\", \"createdAt\": \"2024-05-01T12:00:00.123Z\"}',
   '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'),
  ('order', '67e55044-10b1-426f-9247-bb680e5fe0c8', 'OrderPaid',
   '{\"orderId\": \"67e55044-10b1-426f-9247-bb680e5fe0c8\",
     \"payment\": {\"method\": \"CARD\", \"amount\": \"44.30\", \"currency\": \"EUR\"},
     \"paidAt\": \"2024-05-01T12:01:30.123456Z\"}', NULL),
  ('order', '3f1c3c9e-8a43-4a4b-9d0e-2c7f1f5b7a10', 'OrderCreated',
   '{\"orderId\": \"3f1c3c9e-8a43-4a4b-9d0e-2c7f1f5b7a10\", \"customer\": {\"id\": \"c-7\"},
     \"items\": [{\"sku\": \"MUG-1\", \"quantity\": 1, \"unitPrice\": \"12.00\"}],
     \"total\": \"12.00\", \"currency\": \"NOK\", \"channel\": \"MOBILE\", \"createdAt\": \"2024-05-02T08:30:00Z\"}', NULL)";

/// order_id, status, customer_id, currency, channel, items, payment_method, events.
type ProjectedRow = (String, String, String, String, String, i32, Option<String>, i32);

async fn project(services: &Services, db: &TestDb, topic: &str, group: &str) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-projection"))
        .arg("--config")
        .arg(repo().join("examples/order-projection/consumer.toml"))
        .args(["--topic", topic, "--pg-url", &db.url, "--group", group])
        .args(["--dlq-topic", &format!("{topic}.projection_dlq")])
        .args([
            "--bootstrap",
            &services.kafka_bootstrap,
            "--registry",
            &services.registry_url,
        ])
        .args(["--expect", "3", "--timeout-secs", "60"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projects_the_demo_events_exactly_once() {
    let services = Services::from_env();
    let db = TestDb::create(&services).await;
    db.client
        .batch_execute(&std::fs::read_to_string(repo().join("config/outbox.sql")).unwrap())
        .await
        .unwrap();
    let prefix = unique_name("proj");
    let mut c = PipelineConfig {
        pipeline_id: Some(unique_name("pipe")),
        ..Default::default()
    };
    c.source.pg_url = db.url.clone();
    c.source.slot = unique_name("slot");
    c.source.publication = unique_name("pub");
    c.avro.registry_url = services.registry_url.clone();
    c.avro.schema_dir = repo().join("config/schemas");
    c.kafka.bootstrap_servers = services.kafka_bootstrap.clone();
    c.kafka.transactional_id = Some(unique_name("txn"));
    c.kafka.routing.topic_template = format!("{prefix}.{{aggregate_type}}");
    c.kafka.dlq_topic = format!("{prefix}.dlq");
    c.kafka.checkpoint_topic = format!("{prefix}.checkpoints");
    db.client
        .batch_execute(&format!(
            "CREATE PUBLICATION {} FOR TABLE public.outbox WITH (publish = 'insert')",
            c.source.publication
        ))
        .await
        .unwrap();
    db.client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&c.source.slot],
        )
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(outboxd::run(c, async move {
        let _ = stopped.await;
    }));
    db.client.batch_execute(ROWS).await.unwrap();

    let topic = format!("{prefix}.order");
    let group = unique_name("projection");
    let first = project(&services, &db, &topic, &group).await;
    assert!(
        first.contains("3 applied, 0 duplicates skipped, 0 dead-lettered"),
        "{first}"
    );
    let rows = db
        .client
        .query(
            "SELECT order_id, status, customer_id, currency, channel, items, payment_method, events \
             FROM order_projection ORDER BY order_id",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<ProjectedRow> = rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
            )
        })
        .collect();
    let s = String::from;
    assert_eq!(
        got,
        vec![
            (
                s("3f1c3c9e-8a43-4a4b-9d0e-2c7f1f5b7a10"),
                s("created"),
                s("c-7"),
                s("NOK"),
                s("MOBILE"),
                1,
                None,
                1
            ),
            (
                s("67e55044-10b1-426f-9247-bb680e5fe0c8"),
                s("paid"),
                s("c-1042"),
                s("EUR"),
                s("WEB"),
                3,
                Some(s("CARD")),
                2
            ),
        ]
    );

    // The same events again (the group's offsets rewound, the same inbox): nothing applied twice.
    let (bootstrap, t, g) = (services.kafka_bootstrap.clone(), topic.clone(), group.clone());
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
        let c: BaseConsumer = outboxd_testkit::kafka::client_config(&bootstrap)
            .set("group.id", &g)
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition_offset(&t, p, rdkafka::Offset::Offset(0))
                .unwrap();
        }
        c.commit(&tpl, CommitMode::Sync).unwrap();
    })
    .await
    .unwrap();
    let second = project(&services, &db, &topic, &group).await;
    assert!(
        second.contains("0 applied, 3 duplicates skipped, 0 dead-lettered"),
        "{second}"
    );
    let events: i64 = db
        .client
        .query_one("SELECT sum(events) FROM order_projection", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 3, "each event applied once");
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(60), relay)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
