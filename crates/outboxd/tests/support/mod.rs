//! Shared set-up of the pipeline suites: a fresh database with an outbox table, its own slot, publication,
//! schemas (unique Avro namespace), topics, transactional id and pipeline id; the pipeline run as a task.

#![allow(dead_code)]

pub mod binary;
pub mod broker;
pub mod fault;

use outboxd::{run_with, FaultPlan, PipelineConfig, PipelineError, RunOptions, RunOutcome};
use outboxd_core::Lsn;
use outboxd_kafka::SinkStats;
use outboxd_testkit::kafka::{client_config, drain, Isolation, Record};
use outboxd_testkit::{unique_name, wait_until, Services, TestDb};
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any wait of these suites may take.
pub const WAIT: Duration = Duration::from_secs(60);

const TABLE: &str = "CREATE TABLE public.outbox (
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

/// One outbox row to insert.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub id: String,
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    pub event_type: Option<String>,
    pub payload: Option<String>,
    pub headers: Option<String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

impl Row {
    /// A valid `OrderCreated` of aggregate `order`/`aggregate_id`.
    pub fn order(id: &str, aggregate_id: &str, amount: i32) -> Row {
        Row {
            id: id.into(),
            aggregate_type: Some("order".into()),
            aggregate_id: Some(aggregate_id.into()),
            event_type: Some("OrderCreated".into()),
            payload: Some(format!(r#"{{"orderId":"{aggregate_id}","amount":{amount}}}"#)),
            ..Row::default()
        }
    }
}

/// One test's world.
#[derive(Debug)]
pub struct Env {
    pub services: Services,
    pub db: TestDb,
    pub schema_dir: PathBuf,
    /// Avro namespace of this test's schemas.
    pub ns: String,
    /// Prefix of this test's event topics.
    pub prefix: String,
    pub config: PipelineConfig,
}

/// Creates the publication of `source.table` (inserts only) and the slot of `source`.
async fn publish(db: &TestDb, source: &outboxd_wal::SourceConfig) {
    let (table, publication) = (&source.table, &source.publication);
    db.client
        .batch_execute(&format!(
            "CREATE PUBLICATION {publication} FOR TABLE {table} WITH (publish = 'insert')"
        ))
        .await
        .unwrap();
    db.client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&source.slot],
        )
        .await
        .unwrap();
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.schema_dir);
    }
}

impl Env {
    /// A fresh database with the outbox table, schemas for `OrderCreated` and `CustomerCreated`, and a
    /// pipeline configuration of its own.
    pub async fn new() -> Env {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let services = Services::from_env();
        let db = TestDb::create(&services).await;
        db.client.batch_execute(TABLE).await.unwrap();
        let ns = unique_name("ns");
        let schema_dir = std::env::temp_dir().join(unique_name("outboxd_pipeline_schemas"));
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
        let prefix = unique_name("t");
        let mut config = PipelineConfig {
            pipeline_id: Some(unique_name("pipe")),
            ..Default::default()
        };
        config.source.pg_url = db.url.clone();
        config.source.slot = unique_name("slot");
        config.source.publication = unique_name("pub");
        config.source.table = "public.outbox".into();
        config.source.status_interval_ms = 100;
        config.avro.registry_url = services.registry_url.clone();
        config.avro.schema_dir = schema_dir.clone();
        config.kafka.bootstrap_servers = services.kafka_bootstrap.clone();
        config.kafka.transactional_id = Some(unique_name("txn"));
        config.kafka.routing.topic_template = format!("{prefix}.{{aggregate_type}}");
        config.kafka.dlq_topic = format!("{prefix}.dlq");
        config.kafka.checkpoint_topic = format!("{prefix}.checkpoints");
        config.kafka.batch.linger_ms = 50;
        config.restart.initial_backoff_ms = 100;
        config.restart.max_backoff_ms = 1_000;
        config.restart.max_restarts = Some(20);
        // Publication and slot exist before any row is inserted, so that every row is streamed.
        publish(&db, &config.source).await;
        Env {
            services,
            db,
            schema_dir,
            ns,
            prefix,
            config,
        }
    }

    /// Switches the pipeline to another outbox table (already created): a publication and a slot of its own,
    /// created now, before any row is inserted.
    pub async fn use_table(&mut self, table: &str) {
        let source = &mut self.config.source;
        source.table = table.into();
        source.publication = unique_name("pub");
        source.slot = unique_name("slot");
        publish(&self.db, source).await;
    }

    /// The topic of an aggregate type.
    pub fn topic(&self, aggregate_type: &str) -> String {
        format!("{}.{aggregate_type}", self.prefix)
    }

    /// Inserts the rows in ONE Postgres transaction.
    pub async fn insert(&self, rows: &[Row]) {
        let mut client = self.db.connect().await;
        let tx = client.transaction().await.unwrap();
        for r in rows {
            tx.execute(
                "INSERT INTO public.outbox (id, aggregate_type, aggregate_id, event_type, payload, headers, \
                 traceparent, tracestate) VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8)",
                &[
                    &r.id,
                    &r.aggregate_type,
                    &r.aggregate_id,
                    &r.event_type,
                    &r.payload,
                    &r.headers,
                    &r.traceparent,
                    &r.tracestate,
                ],
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }

    /// Inserts `n` orders (ids `<prefix>-<i>`, aggregates `a0..a{aggregates}`), `per_txn` rows per transaction.
    pub async fn insert_orders(
        &self,
        prefix: &str,
        n: usize,
        per_txn: usize,
        aggregates: usize,
    ) -> Vec<String> {
        let rows: Vec<Row> = (0..n)
            .map(|i| {
                Row::order(
                    &format!("{prefix}-{i}"),
                    &format!("a{}", i % aggregates),
                    i as i32,
                )
            })
            .collect();
        for chunk in rows.chunks(per_txn.max(1)) {
            self.insert(chunk).await;
        }
        rows.into_iter().map(|r| r.id).collect()
    }

    /// Starts the pipeline as a task.
    pub fn spawn(&self, faults: FaultPlan) -> Running {
        self.spawn_with(self.config.clone(), faults)
    }

    /// Starts a pipeline with this configuration as a task.
    pub fn spawn_with(&self, config: PipelineConfig, faults: FaultPlan) -> Running {
        let (stop, stopped) = oneshot::channel::<()>();
        let stats = Arc::new(SinkStats::default());
        let health = outboxd::http::Health::new();
        let options = RunOptions {
            faults,
            stats: Arc::clone(&stats),
            health: Arc::clone(&health),
        };
        let handle = tokio::spawn(run_with(
            config,
            async move {
                let _ = stopped.await;
            },
            options,
        ));
        Running {
            stop: Some(stop),
            handle,
            stats,
            health,
        }
    }

    /// Every record of `topic` at that isolation (waits for the end of the topic; empty if it does not exist).
    pub async fn drain(&self, topic: &str, isolation: Isolation) -> Vec<Record> {
        let (bootstrap, topic) = (self.services.kafka_bootstrap.clone(), topic.to_string());
        tokio::task::spawn_blocking(move || {
            if exists(&bootstrap, &topic) {
                drain(&bootstrap, &topic, isolation, WAIT)
            } else {
                Vec::new()
            }
        })
        .await
        .unwrap()
    }

    /// Offsets of `topic` between its last stable offset and its high watermark: more than 0 while a
    /// transaction that wrote to it is open on the broker (testkit `open_transaction_offsets`).
    pub async fn open_transaction_offsets(&self, topic: &str) -> i64 {
        let (bootstrap, topic) = (self.services.kafka_bootstrap.clone(), topic.to_string());
        tokio::task::spawn_blocking(move || {
            outboxd_testkit::kafka::open_transaction_offsets(&bootstrap, &topic)
        })
        .await
        .unwrap()
    }

    /// Waits until a transaction that wrote to the `order` topic is open on the broker (records in its log,
    /// no marker yet).
    pub async fn until_open_transaction(&self) {
        let topic = self.topic("order");
        wait_until("a Kafka transaction to be open", WAIT, || async {
            (self.open_transaction_offsets(&topic).await > 0).then_some(())
        })
        .await;
    }

    /// Waits until `topic` holds at least `n` committed records, and returns them. Fails early when `running`
    /// (a pipeline expected to produce them) stopped.
    pub async fn wait_for(&self, topic: &str, n: usize, running: &Running) -> Vec<Record> {
        wait_until(&format!("{n} committed records on {topic}"), WAIT, || async {
            assert!(
                !running.is_finished(),
                "the pipeline stopped early (see its log above)"
            );
            let records = self.drain(topic, Isolation::ReadCommitted).await;
            (records.len() >= n).then_some(records)
        })
        .await
    }

    /// Writes `config` as a TOML file for the `outboxd` binary into this test's directory (removed with the
    /// test) and returns its path.
    pub fn config_file(&self, config: &PipelineConfig, name: &str) -> PathBuf {
        let path = self.schema_dir.join(format!("{name}.toml"));
        binary::write_config(config, &path);
        path
    }

    /// The slot's `confirmed_flush_lsn`.
    pub async fn confirmed_flush_lsn(&self) -> Lsn {
        let row = self
            .db
            .client
            .query_one(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.config.source.slot],
            )
            .await
            .unwrap();
        row.get::<_, String>(0).parse().unwrap()
    }
}

/// True when the topic exists with at least one partition.
fn exists(bootstrap: &str, topic: &str) -> bool {
    let consumer: BaseConsumer = client_config(bootstrap)
        .create()
        .unwrap_or_else(|e| panic!("consumer for {bootstrap}: {e}"));
    consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .is_ok_and(|md| {
            md.topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        })
}

/// A pipeline running as a task.
#[derive(Debug)]
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<RunOutcome, PipelineError>>,
    pub stats: Arc<SinkStats>,
    /// Readiness: true while an attempt streams, false between a failure and the next attempt.
    pub health: Arc<outboxd::http::Health>,
}

impl Running {
    /// Resolves the shutdown future and waits for the run to end.
    pub async fn stop(mut self) -> Result<RunOutcome, PipelineError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join().await
    }

    /// Waits for the run to end by itself.
    pub async fn join(self) -> Result<RunOutcome, PipelineError> {
        tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("the pipeline did not stop in time")
            .unwrap()
    }

    /// True once the run ended.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// The `id` header of each record.
pub fn ids(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.header("id").unwrap_or_default())
        .collect()
}

/// Asserts that every id appears exactly once.
pub fn assert_exactly_once(records: &[Record], expected: &[String]) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for id in ids(records) {
        *counts.entry(id).or_default() += 1;
    }
    let dupes: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(dupes.is_empty(), "duplicates: {dupes:?}");
    let missing: Vec<_> = expected.iter().filter(|id| !counts.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "missing {} ids, e.g. {:?}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(counts.len(), expected.len(), "unexpected extra ids");
}

/// Asserts that, per key, records appear in the order of `expected` (ids in insertion order).
pub fn assert_per_key_order(records: &[Record], expected: &[String]) {
    let rank: BTreeMap<&str, usize> = expected
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut by_key: BTreeMap<Vec<u8>, Vec<(i32, i64, usize)>> = BTreeMap::new();
    for r in records {
        let id = r.header("id").unwrap_or_default();
        let Some(&rank) = rank.get(id.as_str()) else {
            continue;
        };
        by_key
            .entry(r.key.clone().unwrap_or_default())
            .or_default()
            .push((r.partition, r.offset, rank));
    }
    for (key, mut list) in by_key {
        let partitions: std::collections::BTreeSet<i32> = list.iter().map(|x| x.0).collect();
        assert_eq!(
            partitions.len(),
            1,
            "key {:?} spread over partitions {partitions:?}",
            String::from_utf8_lossy(&key)
        );
        list.sort();
        let ranks: Vec<usize> = list.iter().map(|x| x.2).collect();
        let mut sorted = ranks.clone();
        sorted.sort_unstable();
        assert_eq!(
            ranks,
            sorted,
            "key {:?} out of order",
            String::from_utf8_lossy(&key)
        );
    }
}

/// The value of an unlabelled metric on the `/metrics` page served at `127.0.0.1:port` (panics, showing the
/// page, when it is absent).
pub async fn metric(port: u16, name: &str) -> f64 {
    let (value, page) = metric_on_page(port, name).await;
    value.unwrap_or_else(|| panic!("{name} in /metrics:\n{page}"))
}

/// The value of an unlabelled metric, `None` while the process has not set it yet.
pub async fn metric_opt(port: u16, name: &str) -> Option<f64> {
    metric_on_page(port, name).await.0
}

async fn metric_on_page(port: u16, name: &str) -> (Option<f64>, String) {
    let page = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("{name} ");
    let value = page.lines().find_map(|l| l.strip_prefix(&prefix)?.parse().ok());
    (value, page)
}

/// The registry's schema with that id.
pub async fn schema_by_id(registry_url: &str, id: u32) -> apache_avro::Schema {
    let body: serde_json::Value = reqwest::get(format!("{registry_url}/schemas/ids/{id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = body["schema"]
        .as_str()
        .unwrap_or_else(|| panic!("GET /schemas/ids/{id}: {body}"));
    apache_avro::Schema::parse_str(text).unwrap()
}

/// Decodes a Confluent-framed Avro value with the registry's schema: (schema id, value).
pub async fn decode(registry_url: &str, bytes: &[u8]) -> (u32, apache_avro::types::Value) {
    assert!(
        bytes.len() > 5 && bytes[0] == 0,
        "not a Confluent frame: {bytes:?}"
    );
    let id = u32::from_be_bytes(bytes[1..5].try_into().unwrap());
    let schema = schema_by_id(registry_url, id).await;
    #[allow(deprecated)] // GenericDatumReader needs a header; this is a bare datum.
    let value = apache_avro::from_avro_datum(&schema, &mut &bytes[5..], None).unwrap();
    (id, value)
}
