//! The broker dies (SIGKILL) mid-stream and comes back on the same port and data dir: the pipeline recovers by
//! itself, and `read_committed` sees every row exactly once, in order per aggregate. Uses a private broker
//! (support::broker), never the shared one. Needs `scripts/services up` (Postgres, registry, the broker binary).

mod support;

use outboxd::FaultPlan;
use outboxd_testkit::wait_until;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::broker::PrivateBroker;
use support::{assert_exactly_once, assert_per_key_order, Env, Row, WAIT};

/// Rows inserted in all.
const ROWS: usize = 3_000;
/// The writer spreads them over this long (load shaping, not synchronisation).
const WRITE_TIME: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pipeline_recovers_by_itself_from_a_broker_killed_and_restarted_mid_stream() {
    let t0 = Instant::now();
    let mut broker = PrivateBroker::start().await;
    let mut env = Env::new().await;
    env.services.kafka_bootstrap = broker.bootstrap.clone();
    env.config.kafka.bootstrap_servers = broker.bootstrap.clone();
    env.config.kafka.request_timeout_ms = 5_000;
    env.config.restart.initial_backoff_ms = 100;
    env.config.restart.max_backoff_ms = 500;
    env.config.restart.max_restarts = None; // the waits below bound the test
    let topic = env.topic("order");
    let running = env.spawn(FaultPlan::none());

    let inserted = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (client, inserted) = (env.db.connect().await, inserted.clone());
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(rand::random());
            let started = tokio::time::Instant::now();
            let mut ids = Vec::with_capacity(ROWS);
            while ids.len() < ROWS {
                let n = rng.gen_range(1..=20).min(ROWS - ids.len());
                let rows: Vec<Row> = (ids.len()..ids.len() + n)
                    .map(|i| Row::order(&format!("r-{i}"), &format!("a{}", i % 17), i as i32))
                    .collect();
                let tx_ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
                let aggs: Vec<&str> = rows.iter().filter_map(|r| r.aggregate_id.as_deref()).collect();
                let payloads: Vec<&str> = rows.iter().filter_map(|r| r.payload.as_deref()).collect();
                client
                    .execute(
                        "INSERT INTO public.outbox (id, aggregate_type, aggregate_id, event_type, payload) \
                         SELECT id, 'order', agg, 'OrderCreated', payload \
                         FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, agg, payload)",
                        &[&tx_ids, &aggs, &payloads],
                    )
                    .await
                    .unwrap();
                ids.extend(rows.into_iter().map(|r| r.id));
                inserted.store(ids.len(), Ordering::Relaxed);
                let due = started + WRITE_TIME.mul_f64(ids.len() as f64 / ROWS as f64);
                tokio::time::sleep_until(due).await;
            }
            ids
        })
    };

    // Mid-stream: some rows are committed in Kafka, the writer goes on.
    let before = env.wait_for(&topic, 300, &running).await.len();
    broker.kill().await;
    let killed = Instant::now();
    let killed_at = inserted.load(Ordering::Relaxed);
    let produced_before = running.stats.snapshot().events_produced;
    // While it is down the writer adds more: the pipeline reads them and cannot commit them.
    wait_until("rows inserted while the broker is down", WAIT, || {
        let n = inserted.load(Ordering::Relaxed);
        std::future::ready((n >= killed_at + 500 || n == ROWS).then_some(()))
    })
    .await;
    let down_for = killed.elapsed();
    let restarted_with = inserted.load(Ordering::Relaxed);
    broker.restart().await;
    let restarted_at = Instant::now();

    let expected = writer.await.unwrap();
    let records = env.wait_for(&topic, ROWS, &running).await;
    let recovered_in = restarted_at.elapsed();
    let outcome = running
        .stop()
        .await
        .unwrap_or_else(|e| panic!("the pipeline failed: {e}; broker log:\n{}", broker.log()));
    assert_exactly_once(&records, &expected);
    assert_per_key_order(&records, &expected);
    assert!(
        outcome.stats.events_produced > produced_before,
        "the pipeline committed after the restart"
    );
    println!(
        "broker killed with {before} rows committed and {killed_at} inserted, restarted {down_for:?} later \
         with {} inserted; the pipeline restarted {} times and had all {} rows in Kafka {recovered_in:?} after \
         the broker came back ({} Kafka transactions committed, {} aborted); total {:?}",
        restarted_with,
        outcome.restarts,
        records.len(),
        outcome.stats.txns_committed,
        outcome.stats.txns_aborted,
        t0.elapsed()
    );
}
