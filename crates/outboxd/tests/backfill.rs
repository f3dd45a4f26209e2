//! Backfill of the rows that predate the slot (`source.backfill`), on the real services and the real binary:
//! 100,000 `PENDING` rows (and 2,000 already `SENT`, which the predicate leaves out) are in the table when
//! outboxd first starts and creates its slot; writers keep inserting throughout; the relay is SIGKILLed at
//! random at least ten times, during the backfill and during the stream. `read_committed` then holds every
//! pending row and every written row exactly once, per-aggregate order kept (rows that predate the slot in
//! `created_at` order, first), and no row of either set twice across the boundary; `read_uncommitted` holds
//! the aborted copies the kills left. Needs `scripts/services up`.

mod support;

use outboxd_testkit::kafka::{client_config, Isolation};
use outboxd_testkit::{unique_name, wait_until};
use rand::Rng;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::time::Duration;
use support::binary::{LogFile, Outboxd};
use support::fault::{committed_ids, Writers};
use support::{assert_exactly_once, assert_per_key_order, metric, metric_opt, Env, WAIT};

const PENDING: i64 = 100_000;

/// Records written to `topic` so far (all partitions, committed or not, commit markers included).
fn written(bootstrap: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = client_config(bootstrap).create().unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len());
    (0..partitions as i32)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .map_or(0, |(_, high)| high)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backfill_and_the_stream_through_ten_kills_relay_every_row_once() {
    let mut env = Env::new().await;
    // outboxd creates the slot itself, so that it records the snapshot the slot exports.
    env.config.source.slot = unique_name("bf_slot");
    env.config.source.backfill.enabled = true;
    env.config.source.backfill.predicate = Some("status = 'PENDING'".into());
    env.config.source.backfill.chunk_rows = 1_000;
    env.config.restart.max_restarts = None;
    let client = &env.db.client;
    client
        .batch_execute(&format!(
            "ALTER TABLE public.outbox ADD COLUMN status text NOT NULL DEFAULT 'PENDING';
             INSERT INTO public.outbox (id, aggregate_type, aggregate_id, event_type, payload, created_at, status)
             SELECT 'old-' || lpad(g::text, 6, '0'), 'order', 'old-a' || (g % 50), 'OrderCreated',
                    json_build_object('orderId', 'o' || g, 'amount', g % 1000)::text,
                    timestamptz '2026-01-01' + g * interval '1 ms', 'PENDING'
             FROM generate_series(0, {}) g;
             INSERT INTO public.outbox (id, aggregate_type, aggregate_id, event_type, payload, status)
             SELECT 'sent-' || g, 'order', 'sent-a' || (g % 5), 'OrderCreated', '{{}}', 'SENT'
             FROM generate_series(0, 1999) g;",
            PENDING - 1
        ))
        .await
        .unwrap();
    let writers = Writers::start(&env.db.url, "live", 2);
    let log = LogFile::new("backfill");
    let bootstrap = env.services.kafka_bootstrap.clone();
    let checkpoints = env.config.kafka.checkpoint_topic.clone();

    let metrics_port = outboxd_testkit::cluster::free_port();
    env.config.observability.listen = format!("127.0.0.1:{metrics_port}");
    let config = env.config_file(&env.config, "backfill");
    let (mut during_backfill, mut during_stream) = (0, 0);
    while during_backfill + during_stream < 10 || during_stream < 2 {
        assert!(
            during_backfill + during_stream < 40,
            "the backfill never finished"
        );
        let mut child = Outboxd::spawn(&config, &log.path, None);
        // Kill only after this instance committed something (so that every round makes progress).
        let start = written(&bootstrap, &checkpoints);
        wait_until("the instance commits", WAIT, || async {
            (written(&bootstrap, &checkpoints) > start + 1).then_some(())
        })
        .await;
        // Whether this instance's backfill is complete (from the checkpoint it read, or its last chunk's commit).
        let done = metric_opt(metrics_port, "outboxd_backfill_complete").await == Some(1.0);
        // A random moment in the middle of the work: fault injection, not synchronisation.
        let pause = if done { 300..1_500 } else { 300..2_000 };
        let pause = rand::thread_rng().gen_range(pause);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        child.kill().await;
        *(if done {
            &mut during_stream
        } else {
            &mut during_backfill
        }) += 1;
    }
    assert!(
        during_backfill >= 3,
        "the kills hit the backfill: {during_backfill} during the backfill, {during_stream} during the stream"
    );

    let mut clean = Outboxd::spawn(&config, &log.path, None);
    writers.wait_progress(20).await;
    writers.stop().await;
    let mut expected: Vec<String> = (0..PENDING).map(|g| format!("old-{g:06}")).collect();
    expected.extend(
        committed_ids(&env.db.url)
            .await
            .into_iter()
            .filter(|id| id.starts_with("live")),
    );
    let topic = env.topic("order");
    let wanted = expected.len();
    wait_until(
        "every row visible to read_committed",
        Duration::from_secs(180),
        || async { (env.drain(&topic, Isolation::ReadCommitted).await.len() >= wanted).then_some(()) },
    )
    .await;
    // Progress is in /metrics: the rows the table held when the slot was created, and the backfill's.
    // The writers were already running: the rows they wrote before the slot existed predate it too (and,
    // PENDING, are backfilled); the SENT ones are counted but not relayed.
    let before = metric(metrics_port, "outboxd_rows_before_slot").await;
    assert!(before >= 102_000.0, "{before}");
    assert_eq!(
        metric(metrics_port, "outboxd_backfill_relayed_rows").await,
        before - 2_000.0
    );
    assert_eq!(metric(metrics_port, "outboxd_backfill_complete").await, 1.0);
    clean.terminate();
    assert!(clean.wait(WAIT).await.success(), "SIGTERM exits 0");

    let records = env.drain(&topic, Isolation::ReadCommitted).await;
    // Exactly once: no SENT row, no row twice, none missing, across the backfill/stream boundary too.
    assert_exactly_once(&records, &expected);
    assert_per_key_order(&records, &expected);
    let uncommitted = env.drain(&topic, Isolation::ReadUncommitted).await;
    assert!(
        uncommitted.len() > records.len(),
        "the kills left aborted copies that only read_uncommitted sees"
    );
    assert!(env
        .drain(&env.config.kafka.dlq_topic, Isolation::ReadCommitted)
        .await
        .is_empty());
}
