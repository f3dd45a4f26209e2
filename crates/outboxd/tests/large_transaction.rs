//! One Postgres transaction of 1,000,000 outbox rows (~300-byte payloads) goes through the real `outboxd run`
//! binary as ONE Kafka transaction (one checkpoint record covering all of them), with bounded memory: the
//! process's peak RSS (`VmHWM`) is printed and must stay under 300 MB (target: 150 MB). Runs against a private
//! broker so that the shared one does not keep half a gigabyte of test data. Needs `scripts/services up`.
//!
//! Figures in release: `cargo test -p outboxd --release --test large_transaction -- --nocapture`.

mod support;

use outboxd_kafka::Checkpoint;
use outboxd_testkit::kafka::{drain, drain_each, Isolation};
use outboxd_testkit::wait_until;
use std::time::{Duration, Instant};
use support::binary::{describe, LogFile, Outboxd, OUTBOXD};
use support::broker::PrivateBroker;
use support::Env;

const ROWS: usize = 1_000_000;
/// The bound asserted on the process's peak RSS, in MiB (the target is 150).
const MAX_RSS_MIB: u64 = 300;
/// Longest wait for the transaction to reach Kafka.
const RELAY_TIMEOUT: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_million_row_postgres_transaction_is_one_kafka_transaction_in_bounded_memory() {
    let broker = PrivateBroker::start().await;
    let mut env = Env::new().await;
    env.services.kafka_bootstrap = broker.bootstrap.clone();
    env.config.kafka.bootstrap_servers = broker.bootstrap.clone();
    // The whole Postgres transaction streams inside one Kafka transaction: give it time (the broker's cap,
    // transaction.max.timeout.ms, is 15 minutes).
    env.config.kafka.transaction_timeout_ms = 300_000;
    env.config.kafka.batch = Default::default(); // the product's batching, not the suites' short linger
    env.config.observability.listen = String::new();
    std::fs::write(
        env.schema_dir.join("BulkEvent.avsc"),
        format!(
            r#"{{"type":"record","name":"BulkEvent","namespace":"{}","fields":[
                {{"name":"orderId","type":"string"}},{{"name":"amount","type":"int"}},
                {{"name":"note","type":"string"}}]}}"#,
            env.ns
        ),
    )
    .unwrap();
    let config = env.config_file(&env.config, "outboxd");
    let log_file = LogFile::new("large_transaction");
    let log = log_file.path.as_path();
    let topic = env.topic("bulk");
    let mut outboxd = Outboxd::spawn(&config, log, None);

    // One statement: one transaction of 1,000,000 rows, payloads of ~300 bytes.
    let t0 = Instant::now();
    env.db
        .client
        .batch_execute(&format!(
            "INSERT INTO public.outbox (id, aggregate_type, aggregate_id, event_type, payload) \
             SELECT 'big-' || i, 'bulk', 'a' || (i % 1000), 'BulkEvent', \
             '{{\"orderId\":\"a' || (i % 1000) || '\",\"amount\":' || i || ',\"note\":\"' || \
             repeat(md5(i::text), 8) || '\"}}' FROM generate_series(1, {ROWS}) i"
        ))
        .await
        .unwrap();
    let inserted_in = t0.elapsed();
    let payload_bytes: i64 = env
        .db
        .client
        .query_one("SELECT avg(length(payload))::int8 FROM public.outbox", &[])
        .await
        .unwrap()
        .get(0);

    // The checkpoint is committed with the events: once it is visible, so are they.
    let (bootstrap, checkpoints) = (
        broker.bootstrap.clone(),
        env.config.kafka.checkpoint_topic.clone(),
    );
    let pipeline_id = env.config.pipeline_id();
    let mut peak_kib = 0;
    let ours = wait_until("the checkpoint of the big transaction", RELAY_TIMEOUT, || {
        let exited = outboxd.exited().map(|s| (describe(s), outboxd.log_tail(30)));
        peak_kib = peak_kib.max(outboxd.peak_rss_kib().unwrap_or(0));
        let (bootstrap, checkpoints, pipeline_id) =
            (bootstrap.clone(), checkpoints.clone(), pipeline_id.clone());
        async move {
            if let Some((status, log)) = exited {
                panic!("outboxd stopped ({status}):\n{log}");
            }
            let records = tokio::task::spawn_blocking(move || {
                drain(
                    &bootstrap,
                    &checkpoints,
                    Isolation::ReadCommitted,
                    Duration::from_secs(120),
                )
            })
            .await
            .unwrap();
            let ours: Vec<Checkpoint> = records
                .iter()
                .filter(|r| r.key.as_deref() == Some(pipeline_id.as_bytes()))
                .map(|r| Checkpoint::from_json(r.value.as_deref().unwrap_or_default()).unwrap())
                .collect();
            (!ours.is_empty()).then_some(ours)
        }
    })
    .await;
    let relayed_in = t0.elapsed();
    peak_kib = peak_kib.max(outboxd.peak_rss_kib().expect("outboxd is running"));
    let status = outboxd.stop().await;
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM: {}; log:\n{}",
        describe(status),
        outboxd.log_tail(30)
    );

    // ONE Kafka transaction: one checkpoint, covering one Postgres transaction of every row.
    assert_eq!(ours.len(), 1, "checkpoints: {ours:?}");
    assert_eq!((ours[0].events, ours[0].txns), (ROWS as u64, 1), "{:?}", ours[0]);
    // And read_committed sees every row once.
    let (bootstrap, events_topic) = (broker.bootstrap.clone(), topic.clone());
    let (count, distinct) = tokio::task::spawn_blocking(move || {
        let mut seen = vec![false; ROWS + 1];
        let mut distinct = 0;
        let count = drain_each(
            &bootstrap,
            &events_topic,
            Isolation::ReadCommitted,
            Duration::from_secs(300),
            |r| {
                let i: usize = r
                    .header("id")
                    .and_then(|id| id.strip_prefix("big-").and_then(|n| n.parse().ok()))
                    .expect("an id header big-<n>");
                if !std::mem::replace(&mut seen[i], true) {
                    distinct += 1;
                }
            },
        );
        (count, distinct)
    })
    .await
    .unwrap();
    assert_eq!(
        (count, distinct),
        (ROWS, ROWS),
        "read_committed: records, distinct ids"
    );

    let peak_mib = peak_kib / 1024;
    println!(
        "{ROWS} rows (payload {payload_bytes} bytes on average) in one Postgres transaction: inserted in \
         {inserted_in:?}, in Kafka as one transaction {relayed_in:?} after the insert began; peak RSS of \
         outboxd {peak_mib} MiB ({}); {}",
        if OUTBOXD.contains("/release/") {
            "release build"
        } else {
            "debug build"
        },
        OUTBOXD
    );
    assert!(
        peak_mib < MAX_RSS_MIB,
        "outboxd peaked at {peak_mib} MiB (bound {MAX_RSS_MIB} MiB, target 150 MiB)"
    );
}
