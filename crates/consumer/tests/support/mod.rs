//! One consumer test's world: a fresh database with an outbox table (and the projection the test handler
//! writes), Avro schemas of a unique namespace, a topic with N partitions, outboxd relaying into it (run
//! in-process through `outboxd::run`), and the consumer under test either as a task or as a child process
//! (this same test binary, re-run as its ignored `consumer_child` test) that can be SIGKILLed.

#![allow(dead_code)]

pub mod child;
pub mod projection;

use outboxd::PipelineConfig;
use outboxd_consumer::{ConsumerConfig, RetryConfig, StoreConfig};
use outboxd_testkit::kafka::{create_topic, drain, Isolation, Record};
use outboxd_testkit::{unique_name, wait_until, Services, TestDb};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any single wait of these suites may take.
pub const WAIT: Duration = Duration::from_secs(120);

const OUTBOX: &str = "CREATE TABLE public.outbox (
    id             text PRIMARY KEY,
    aggregate_type text,
    aggregate_id   text,
    event_type     text,
    payload        text,
    headers        jsonb,
    traceparent    text,
    tracestate     text,
    created_at     timestamptz NOT NULL DEFAULT now()
)";

/// The Redis URL of `scripts/services env`.
pub fn redis_url() -> String {
    std::env::var("OUTBOXD_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "OUTBOXD_TEST_REDIS_URL is not set: run `scripts/services up && eval \"$(scripts/services env)\"` \
             before `cargo test`"
        )
    })
}

/// One test's world.
#[derive(Debug)]
pub struct World {
    pub services: Services,
    pub db: TestDb,
    pub schema_dir: PathBuf,
    /// The event topic (aggregate type `order`).
    pub topic: String,
    /// The consumer's dead-letter topic.
    pub dlq: String,
    /// The consumer group.
    pub group: String,
    pub relay_config: PipelineConfig,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.schema_dir);
    }
}

impl World {
    /// Everything fresh; the event topic gets `partitions` partitions.
    pub async fn new(partitions: i32) -> World {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let services = Services::from_env();
        let db = TestDb::create(&services).await;
        db.client.batch_execute(OUTBOX).await.unwrap();
        projection::create(&db.client).await;
        let ns = unique_name("ns");
        let schema_dir = std::env::temp_dir().join(unique_name("consumer_schemas"));
        std::fs::create_dir_all(&schema_dir).unwrap();
        let schema = |name: &str, fields: &str| {
            format!(r#"{{"type":"record","name":"{name}","namespace":"{ns}","fields":{fields}}}"#)
        };
        std::fs::write(
            schema_dir.join("OrderCreated.avsc"),
            schema(
                "OrderCreated",
                r#"[{"name":"orderId","type":"string"},{"name":"amount","type":"int"}]"#,
            ),
        )
        .unwrap();
        std::fs::write(
            schema_dir.join("CustomerCreated.avsc"),
            schema("CustomerCreated", r#"[{"name":"name","type":"string"}]"#),
        )
        .unwrap();
        let prefix = unique_name("c");
        let topic = format!("{prefix}.order");
        create_topic(&services.kafka_bootstrap, &topic, partitions, &[]).await;
        let mut c = PipelineConfig {
            pipeline_id: Some(unique_name("pipe")),
            ..Default::default()
        };
        c.source.pg_url = db.url.clone();
        c.source.slot = unique_name("slot");
        c.source.publication = unique_name("pub");
        c.source.table = "public.outbox".into();
        c.source.status_interval_ms = 100;
        c.avro.registry_url = services.registry_url.clone();
        c.avro.schema_dir = schema_dir.clone();
        c.kafka.bootstrap_servers = services.kafka_bootstrap.clone();
        c.kafka.transactional_id = Some(unique_name("txn"));
        c.kafka.routing.topic_template = format!("{prefix}.{{aggregate_type}}");
        c.kafka.dlq_topic = format!("{prefix}.relay_dlq");
        c.kafka.checkpoint_topic = format!("{prefix}.checkpoints");
        c.kafka.batch.linger_ms = 20;
        c.kafka.topics.partitions = partitions;
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
        World {
            services,
            db,
            schema_dir,
            topic,
            dlq: format!("{prefix}.consumer_dlq"),
            group: unique_name("group"),
            relay_config: c,
        }
    }

    /// outboxd relaying the outbox table, as a task.
    pub fn spawn_relay(&self) -> Relay {
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(outboxd::run(self.relay_config.clone(), async move {
            let _ = stopped.await;
        }));
        Relay {
            stop: Some(stop),
            handle,
        }
    }

    /// The consumer's configuration for this world, with the inbox in this world's database.
    pub fn consumer_config(&self) -> ConsumerConfig {
        ConsumerConfig {
            bootstrap_servers: self.services.kafka_bootstrap.clone(),
            group_id: self.group.clone(),
            topics: vec![self.topic.clone()],
            registry_url: self.services.registry_url.clone(),
            dlq_topic: self.dlq.clone(),
            max_in_flight: 8,
            commit_interval_ms: 500,
            session_timeout_ms: 6_000,
            lag_interval_ms: 1_000,
            retry: RetryConfig {
                max_attempts: 3,
                initial_backoff_ms: 10,
                max_backoff_ms: 200,
            },
            store: StoreConfig::PostgresInbox {
                pg_url: self.db.url.clone(),
                table: "public.inbox".into(),
            },
            ..ConsumerConfig::default()
        }
    }

    /// Inserts orders `<prefix>-<i>` for i in `range` (aggregate `a<i % aggregates>`, amount i), `per_txn`
    /// per transaction; returns their ids.
    pub async fn insert_orders(
        &self,
        prefix: &str,
        range: std::ops::Range<usize>,
        per_txn: usize,
        aggregates: usize,
    ) -> Vec<String> {
        let mut client = self.db.connect().await;
        let mut ids = Vec::new();
        let all: Vec<usize> = range.collect();
        for chunk in all.chunks(per_txn.max(1)) {
            let tx = client.transaction().await.unwrap();
            for &i in chunk {
                let id = format!("{prefix}-{i}");
                let agg = format!("a{}", i % aggregates);
                let payload = format!(r#"{{"orderId":"{agg}","amount":{i}}}"#);
                insert_row(&tx, &id, &agg, "OrderCreated", &payload).await;
                ids.push(id);
            }
            tx.commit().await.unwrap();
        }
        ids
    }

    /// Writes orders `<prefix>-<i>` in transactions of 100 rows, 1,000 at a time, while `running` is true
    /// and until at least `min_events` are written; while `running`, the next 1,000 only once the projection
    /// is at most `max_backlog` behind, so that the consumer is always busy but never far behind. Returns
    /// the ids.
    pub async fn feed(
        &self,
        prefix: &str,
        min_events: usize,
        aggregates: usize,
        max_backlog: i64,
        running: &std::sync::atomic::AtomicBool,
    ) -> Vec<String> {
        let mut ids = Vec::new();
        while running.load(std::sync::atomic::Ordering::Relaxed) || ids.len() < min_events {
            let start = ids.len();
            assert!(
                start < 50 * min_events.max(1_000),
                "the consumer under test made too little progress"
            );
            ids.extend(
                self.insert_orders(prefix, start..start + 1_000, 100, aggregates)
                    .await,
            );
            let written = ids.len() as i64;
            // Once `running` is false no consumer may be running: write the rest without waiting.
            wait_until("the consumer to catch up with the writer", WAIT, || async {
                let stopped = !running.load(std::sync::atomic::Ordering::Relaxed);
                (stopped || written - projection::count(&self.db.client).await <= max_backlog).then_some(())
            })
            .await;
        }
        ids
    }

    /// Every committed record of a topic (empty when it does not exist yet).
    pub async fn drain(&self, topic: &str) -> Vec<Record> {
        let (bootstrap, topic) = (self.services.kafka_bootstrap.clone(), topic.to_string());
        tokio::task::spawn_blocking(move || drain(&bootstrap, &topic, Isolation::ReadCommitted, WAIT))
            .await
            .unwrap()
    }

    /// Waits until the event topic holds at least `n` committed records.
    pub async fn until_relayed(&self, n: usize) -> Vec<Record> {
        wait_until(
            &format!("{n} records relayed to {}", self.topic),
            WAIT,
            || async {
                let r = self.drain(&self.topic).await;
                (r.len() >= n).then_some(r)
            },
        )
        .await
    }
}

/// Inserts one outbox row in `tx`.
pub async fn insert_row(
    tx: &tokio_postgres::Transaction<'_>,
    id: &str,
    aggregate_id: &str,
    event_type: &str,
    payload: &str,
) {
    tx.execute(
        "INSERT INTO public.outbox (id, aggregate_type, aggregate_id, event_type, payload) \
         VALUES ($1, 'order', $2, $3, $4)",
        &[&id, &aggregate_id, &event_type, &payload],
    )
    .await
    .unwrap();
}

/// outboxd running as a task.
#[derive(Debug)]
pub struct Relay {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<outboxd::RunOutcome, outboxd::PipelineError>>,
}

impl Relay {
    /// Stops it and checks that it ended without an error.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let r = tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("the relay did not stop in time")
            .unwrap();
        assert!(r.is_ok(), "the relay failed: {r:?}");
    }

    /// Fails when the relay stopped on its own (it must run throughout).
    pub fn assert_running(&self) {
        assert!(
            !self.handle.is_finished(),
            "the relay stopped early (see the log above)"
        );
    }
}
