//! Every metric outboxd exports, by name, in one place (documented in `docs/metrics.md`), and the Prometheus
//! recorder behind `/metrics`. Library stages keep plain counters ([`outboxd_kafka::SinkStats`],
//! [`outboxd_wal::Progress`]); the pipeline records per-event histograms here and copies the counters over.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Outbox events produced to their routed topics (committed or not yet).
pub const EVENTS_PRODUCED: &str = "outboxd_events_produced_total";
/// Bytes (key + value + headers) produced to routed topics.
pub const BYTES_PRODUCED: &str = "outboxd_bytes_produced_total";
/// Kafka transactions by `outcome` (`committed`, `aborted`).
pub const KAFKA_TRANSACTIONS: &str = "outboxd_kafka_transactions_total";
/// Seconds `commit_transaction` took.
pub const COMMIT_DURATION: &str = "outboxd_kafka_commit_duration_seconds";
/// Events the stage decided while a Kafka commit was in flight (written right after it).
pub const EVENTS_DECIDED_AHEAD: &str = "outboxd_events_decided_during_commit_total";
/// Seconds from the Postgres commit to the Kafka commit holding the event.
pub const END_TO_END_LATENCY: &str = "outboxd_end_to_end_latency_seconds";
/// Bytes of WAL between the server's current position and the slot's confirmed position (sampled).
pub const REPLICATION_LAG_BYTES: &str = "outboxd_replication_lag_bytes";
/// The last LSN confirmed to Postgres, as a number.
pub const CONFIRMED_LSN: &str = "outboxd_confirmed_lsn";
/// Events sent to the dead-letter topic, by `reason`.
pub const DLQ_EVENTS: &str = "outboxd_dlq_events_total";
/// Payloads that did not fit their Avro schema, by `event_type`.
pub const SCHEMA_FAILURES: &str = "outboxd_schema_validation_failures_total";
/// Encodes that found the schema registry unavailable (each is retried; nothing goes to the DLQ).
pub const REGISTRY_ERRORS: &str = "outboxd_registry_errors_total";
/// Outbox updates, deletes and truncates seen and ignored, by `kind`.
pub const EVENTS_IGNORED: &str = "outboxd_events_ignored_total";
/// 1 while the pipeline streams from its slot, 0 otherwise.
pub const SLOT_ACTIVE: &str = "outboxd_slot_active";
/// Restarts of the pipeline from its checkpoint, by `reason`.
pub const PIPELINE_RESTARTS: &str = "outboxd_pipeline_restarts_total";
/// Rows the outbox table held when outboxd created the slot (they predate its stream).
pub const ROWS_BEFORE_SLOT: &str = "outboxd_rows_before_slot";
/// Rows the backfill relayed (to their topic or the dead-letter topic) in this process.
pub const BACKFILL_ROWS: &str = "outboxd_backfill_rows_total";
/// Rows the backfill relayed since it started, across restarts (from the checkpoint).
pub const BACKFILL_PROGRESS: &str = "outboxd_backfill_relayed_rows";
/// 1 once the backfill is complete, 0 while it runs (absent without a backfill).
pub const BACKFILL_DONE: &str = "outboxd_backfill_complete";
/// Outbox rows deleted by retention.
pub const RETENTION_DELETED: &str = "outboxd_retention_deleted_rows_total";

/// Bucket bounds (seconds) shared by the latency histograms: 1 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the process-wide Prometheus recorder (once) and describes every metric. Returns the handle that
/// renders the `/metrics` page.
pub fn install() -> Result<PrometheusHandle, String> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .map_err(|e| e.to_string())?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| format!("a metrics recorder is already installed: {e}"))?;
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(EVENTS_PRODUCED, "Outbox events produced to their routed topics");
    describe_counter!(BYTES_PRODUCED, Unit::Bytes, "Bytes produced to routed topics");
    describe_counter!(KAFKA_TRANSACTIONS, "Kafka transactions by outcome");
    describe_histogram!(COMMIT_DURATION, Unit::Seconds, "Duration of commit_transaction");
    describe_counter!(
        EVENTS_DECIDED_AHEAD,
        "Events decided (routed, encoded) while a Kafka commit was in flight"
    );
    describe_histogram!(
        END_TO_END_LATENCY,
        Unit::Seconds,
        "Postgres commit to Kafka commit"
    );
    describe_gauge!(
        REPLICATION_LAG_BYTES,
        Unit::Bytes,
        "Server WAL position minus the confirmed LSN"
    );
    describe_gauge!(CONFIRMED_LSN, "Last LSN confirmed to Postgres");
    describe_counter!(DLQ_EVENTS, "Events sent to the dead-letter topic, by reason");
    describe_counter!(SCHEMA_FAILURES, "Payloads that did not fit their schema");
    describe_counter!(
        REGISTRY_ERRORS,
        "Encodes that found the schema registry unavailable"
    );
    describe_counter!(
        EVENTS_IGNORED,
        "Outbox updates/deletes/truncates ignored, by kind"
    );
    describe_gauge!(SLOT_ACTIVE, "1 while streaming from the replication slot");
    describe_counter!(
        PIPELINE_RESTARTS,
        "Pipeline restarts from the checkpoint, by reason"
    );
    describe_gauge!(
        ROWS_BEFORE_SLOT,
        "Rows in the outbox table when the slot was created"
    );
    describe_counter!(BACKFILL_ROWS, "Rows relayed by the backfill in this process");
    describe_gauge!(BACKFILL_PROGRESS, "Rows relayed by the backfill since it started");
    describe_gauge!(BACKFILL_DONE, "1 once the backfill is complete");
    describe_counter!(RETENTION_DELETED, "Outbox rows deleted by retention");
}
