//! The broker dies (SIGKILL) mid-stream and comes back on the same port and data dir: the pipeline recovers by
//! itself, and `read_committed` sees every row exactly once, in order per aggregate. Uses a private broker
//! (support::broker), never the shared one. Needs `scripts/services up` (Postgres, registry, broker binary).
//!
//! Two outages while a writer inserts rows:
//! - short, with a Kafka transaction open: librdkafka reconnects and the transaction commits after all;
//! - long (past the transaction timeout), starting while the pipeline is idle: the next transaction fails,
//!   the pipeline restarts from its checkpoint again and again while the broker is away, and carries on.
//!
//! A long outage with a transaction open whose records already reached the broker is in the ignored test
//! below: crabka-broker 0.3.8 writes the ABORT marker of such a transaction after its restart, but still serves
//! its records to `read_committed` consumers (its segments have no aborted-transaction index), so they see
//! duplicates. outboxd did the right thing there (the log holds the records, then an ABORT marker); run it
//! against a real Kafka.

mod support;

use outboxd::FaultPlan;
use outboxd_testkit::kafka::Isolation;
use outboxd_testkit::wait_until;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::broker::PrivateBroker;
use support::{assert_exactly_once, assert_per_key_order, Env, Row, Running, WAIT};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

/// Rows inserted in all.
const ROWS: usize = 4_000;
/// The writer spreads them over this long (load shaping, not synchronisation).
const WRITE_TIME: Duration = Duration::from_secs(12);

/// How the broker goes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outage {
    /// Killed with a transaction open, back before anything times out.
    Short,
    /// Killed while no transaction is open; back once the pipeline has failed a transaction and restarted.
    LongWhileIdle,
    /// Killed with a transaction open; back once the pipeline has failed it and restarted.
    LongMidTransaction,
}

/// Inserts ROWS rows (`r-<i>`, 17 aggregates) in transactions of 1..=20 rows; holds while `paused`.
struct Writer {
    inserted: Arc<AtomicUsize>,
    paused: Arc<AtomicBool>,
    parked: Arc<AtomicBool>,
    task: JoinHandle<Vec<String>>,
}

impl Writer {
    fn start(client: Client) -> Writer {
        let inserted = Arc::new(AtomicUsize::new(0));
        let paused = Arc::new(AtomicBool::new(false));
        let parked = Arc::new(AtomicBool::new(false));
        let (n_, p_, k_) = (inserted.clone(), paused.clone(), parked.clone());
        let task = tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(rand::random());
            let started = tokio::time::Instant::now();
            let mut ids = Vec::with_capacity(ROWS);
            while ids.len() < ROWS {
                if p_.load(Ordering::Relaxed) {
                    k_.store(true, Ordering::Relaxed);
                    wait_until("the writer to be resumed", WAIT, || {
                        std::future::ready((!p_.load(Ordering::Relaxed)).then_some(()))
                    })
                    .await;
                    k_.store(false, Ordering::Relaxed);
                }
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
                n_.store(ids.len(), Ordering::Relaxed);
                let due = started + WRITE_TIME.mul_f64(ids.len() as f64 / ROWS as f64);
                tokio::time::sleep_until(due).await;
            }
            ids
        });
        Writer {
            inserted,
            paused,
            parked,
            task,
        }
    }

    fn inserted(&self) -> usize {
        self.inserted.load(Ordering::Relaxed)
    }

    /// Stops inserting; returns once the writer is between two transactions.
    async fn pause(&self) {
        self.paused.store(true, Ordering::Relaxed);
        let (parked, task) = (&self.parked, &self.task);
        wait_until("the writer to pause", WAIT, || {
            std::future::ready((parked.load(Ordering::Relaxed) || task.is_finished()).then_some(()))
        })
        .await;
    }

    fn resume(&self) {
        self.paused.store(false, Ordering::Relaxed);
    }
}

/// Waits until `n` more rows than now are committed in Kafka.
async fn more_committed(env: &Env, running: &Running, n: usize) -> usize {
    let topic = env.topic("order");
    let committed = env.drain(&topic, Isolation::ReadCommitted).await.len();
    env.wait_for(&topic, committed + n, running).await.len()
}

/// One outage; returns a line for the report.
async fn outage(
    kind: Outage,
    env: &Env,
    broker: &mut PrivateBroker,
    running: &Running,
    writer: &Writer,
) -> String {
    more_committed(env, running, 300).await;
    if kind == Outage::LongWhileIdle {
        // Nothing new in Postgres and everything committed: no Kafka transaction is open.
        writer.pause().await;
        let inserted = writer.inserted();
        env.wait_for(&env.topic("order"), inserted, running).await;
    }
    broker.kill().await;
    let killed = Instant::now();
    let inserted_at_kill = writer.inserted();
    writer.resume();
    match kind {
        Outage::Short => {
            wait_until("rows inserted while the broker is down", WAIT, || {
                let n = writer.inserted();
                std::future::ready((n >= inserted_at_kill + 100 || n == ROWS).then_some(()))
            })
            .await
        }
        Outage::LongWhileIdle | Outage::LongMidTransaction => {
            wait_until("the pipeline to fail a transaction and restart", WAIT, || {
                std::future::ready((!running.health.is_ready()).then_some(()))
            })
            .await
        }
    }
    let down_for = killed.elapsed();
    broker.restart().await;
    format!(
        "{kind:?} outage of {down_for:?} ({} rows inserted meanwhile)",
        writer.inserted() - inserted_at_kill
    )
}

/// A pipeline against a private broker, a writer, the outages, then the audit.
async fn survive(outages: &[Outage]) {
    let t0 = Instant::now();
    let mut broker = PrivateBroker::start().await;
    let mut env = Env::new().await;
    env.services.kafka_bootstrap = broker.bootstrap.clone();
    env.config.kafka.bootstrap_servers = broker.bootstrap.clone();
    // Short timeouts, so that a long outage fails a transaction soon: records not acknowledged within the
    // transaction timeout fail it (message.timeout.ms), and broker calls give up after request_timeout_ms.
    env.config.kafka.transaction_timeout_ms = 5_000;
    env.config.kafka.request_timeout_ms = 2_000;
    env.config.restart.initial_backoff_ms = 100;
    env.config.restart.max_backoff_ms = 500;
    env.config.restart.max_restarts = None; // the waits below bound the test
    let topic = env.topic("order");
    let running = env.spawn(FaultPlan::none());
    let writer = Writer::start(env.db.connect().await);

    let mut report = Vec::new();
    for kind in outages {
        report.push(outage(*kind, &env, &mut broker, &running, &writer).await);
    }
    let restarted_at = Instant::now();
    let expected = writer.task.await.unwrap();
    let records = env.wait_for(&topic, ROWS, &running).await;
    let recovered_in = restarted_at.elapsed();
    let outcome = running
        .stop()
        .await
        .unwrap_or_else(|e| panic!("the pipeline failed: {e}; broker log:\n{}", broker.log()));
    assert_exactly_once(&records, &expected);
    assert_per_key_order(&records, &expected);
    if outages.iter().any(|o| *o != Outage::Short) {
        assert!(outcome.restarts >= 1, "a long outage makes the pipeline restart");
    }
    println!(
        "{}; the pipeline restarted {} times and had all {} rows in Kafka {recovered_in:?} after the last \
         restart of the broker ({} Kafka transactions committed, {} aborted); total {:?}",
        report.join(", "),
        outcome.restarts,
        records.len(),
        outcome.stats.txns_committed,
        outcome.stats.txns_aborted,
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pipeline_recovers_by_itself_from_a_broker_killed_and_restarted_mid_stream() {
    survive(&[Outage::Short, Outage::LongWhileIdle]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "crabka-broker 0.3.8 serves records of a transaction aborted after its restart to read_committed \
            consumers; run against a real Kafka"]
async fn a_transaction_open_when_the_broker_dies_is_aborted_and_hidden_after_its_restart() {
    survive(&[Outage::LongMidTransaction]).await;
}
