//! A rough throughput measurement (ignored by default: it takes a while and measures, rather than checks,
//! speed): `cargo test -p outboxd --release --test pipeline_throughput -- --ignored --nocapture`.
//! Set `OUTBOXD_THROUGHPUT_ROWS` and `OUTBOXD_THROUGHPUT_PER_TXN` to change the load.

mod support;

use outboxd::FaultPlan;
use outboxd_testkit::wait_until;
use std::time::{Duration, Instant};
use support::Env;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "measurement, run explicitly"]
async fn rows_per_second() {
    let rows = env_usize("OUTBOXD_THROUGHPUT_ROWS", 100_000);
    let per_txn = env_usize("OUTBOXD_THROUGHPUT_PER_TXN", 100).max(1);
    let mut env = Env::new().await;
    env.config.kafka.batch = Default::default(); // the product's batching, not the suites' short linger
    let t0 = Instant::now();
    let mut inserted = 0;
    while inserted < rows {
        let n = per_txn.min(rows - inserted);
        env.db
            .client
            .batch_execute(&format!(
                "INSERT INTO public.outbox (id, aggregate_type, aggregate_id, event_type, payload) \
                 SELECT 'r-{inserted}-' || i, 'order', 'a' || (i % 100), 'OrderCreated', \
                 '{{\"orderId\":\"a' || (i % 100) || '\",\"amount\":' || i || '}}' FROM generate_series(1, {n}) i"
            ))
            .await
            .unwrap();
        inserted += n;
    }
    println!(
        "inserted {rows} rows ({per_txn} per transaction) in {:?}",
        t0.elapsed()
    );

    let running = env.spawn(FaultPlan::none());
    let stats = running.stats.clone();
    let started = Instant::now();
    wait_until(
        "every row produced and committed",
        Duration::from_secs(600),
        || {
            let stats = stats.clone();
            async move { (stats.snapshot().events_produced as usize >= rows).then_some(()) }
        },
    )
    .await;
    let elapsed = started.elapsed();
    let outcome = running.stop().await.unwrap();
    let s = outcome.stats;
    println!(
        "relayed {} events in {elapsed:?}: {:.0} events/s (start-up included); {} Kafka transactions, \
         commit time total {:?}, max {:?}",
        s.events_produced,
        s.events_produced as f64 / elapsed.as_secs_f64(),
        s.txns_committed,
        s.commit_time_total,
        s.commit_time_max
    );
    assert_eq!(s.events_produced as usize, rows);
    assert_eq!(s.dead_letters, 0);
}
