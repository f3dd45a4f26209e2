//! The broker (a private Apache Kafka, support::broker; never the shared one) dies (SIGKILL) mid-stream and
//! comes back on the same ports and data dir: the pipeline recovers by itself, and `read_committed` sees every
//! row exactly once, in order per aggregate. Needs `scripts/services up` (Postgres, registry, Kafka's jars).
//!
//! Outages while a writer inserts rows:
//! - short, with a Kafka transaction open: librdkafka reconnects and the transaction commits after all;
//! - long (past the transaction timeout), starting while the pipeline is idle: the next transaction fails,
//!   the pipeline restarts from its checkpoint again and again while the broker is away, and carries on;
//! - long, with a transaction open whose records already reached the broker's log (no commit marker): after
//!   its restart the broker aborts that transaction, `read_uncommitted` shows its records and
//!   `read_committed` never does, and the pipeline writes them again from its checkpoint.
//!
//! - random: killed and restarted at least 10 times at random moments of a 50,000-row run.

mod support;

use outboxd::{FaultPlan, RunOutcome};
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

/// Rows inserted in all by the outage tests.
const ROWS: usize = 6_000;
/// The writer spreads them over this long (load shaping, not synchronisation); once a test's outages are
/// over it hurries through the rest, so this is only an upper bound that outlasts every outage.
const WRITE_TIME: Duration = Duration::from_secs(120);
/// Rows of the random-kills run, spread over at most CHAOS_WRITE_TIME (hurried after the last kill).
const CHAOS_ROWS: usize = 50_000;
const CHAOS_WRITE_TIME: Duration = Duration::from_secs(400);
/// Broker kills of the random run.
const CHAOS_KILLS: usize = 10;

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

/// Inserts `rows` rows (`r-<i>`, 17 aggregates) in transactions of 1..=20 rows, spread over a given time
/// until told to hurry; holds while `paused`.
struct Writer {
    rows: usize,
    hurry: Arc<AtomicBool>,
    inserted: Arc<AtomicUsize>,
    paused: Arc<AtomicBool>,
    parked: Arc<AtomicBool>,
    task: JoinHandle<Vec<String>>,
}

impl Writer {
    fn start(client: Client, rows: usize, write_time: Duration) -> Writer {
        let inserted = Arc::new(AtomicUsize::new(0));
        let paused = Arc::new(AtomicBool::new(false));
        let parked = Arc::new(AtomicBool::new(false));
        let hurry = Arc::new(AtomicBool::new(false));
        let (n_, p_, k_, h_) = (inserted.clone(), paused.clone(), parked.clone(), hurry.clone());
        let task = tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(rand::random());
            let started = tokio::time::Instant::now();
            let mut ids = Vec::with_capacity(rows);
            while ids.len() < rows {
                if p_.load(Ordering::Relaxed) {
                    k_.store(true, Ordering::Relaxed);
                    wait_until("the writer to be resumed", WAIT, || {
                        std::future::ready((!p_.load(Ordering::Relaxed)).then_some(()))
                    })
                    .await;
                    k_.store(false, Ordering::Relaxed);
                }
                let n = rng.gen_range(1..=20).min(rows - ids.len());
                let batch: Vec<Row> = (ids.len()..ids.len() + n)
                    .map(|i| Row::order(&format!("r-{i}"), &format!("a{}", i % 17), i as i32))
                    .collect();
                let tx_ids: Vec<&str> = batch.iter().map(|r| r.id.as_str()).collect();
                let aggs: Vec<&str> = batch.iter().filter_map(|r| r.aggregate_id.as_deref()).collect();
                let payloads: Vec<&str> = batch.iter().filter_map(|r| r.payload.as_deref()).collect();
                client
                    .execute(
                        "INSERT INTO public.outbox (id, aggregate_type, aggregate_id, event_type, payload) \
                         SELECT id, 'order', agg, 'OrderCreated', payload \
                         FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, agg, payload)",
                        &[&tx_ids, &aggs, &payloads],
                    )
                    .await
                    .unwrap();
                ids.extend(batch.into_iter().map(|r| r.id));
                n_.store(ids.len(), Ordering::Relaxed);
                if !h_.load(Ordering::Relaxed) {
                    let due = started + write_time.mul_f64(ids.len() as f64 / rows as f64);
                    tokio::time::sleep_until(due).await;
                }
            }
            ids
        });
        Writer {
            rows,
            hurry,
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

    /// Inserts the remaining rows without pacing, and returns every id inserted.
    async fn finish(self) -> Vec<String> {
        self.hurry.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
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
    if kind == Outage::LongMidTransaction {
        // Kill while a transaction is open on the broker (records in its log, no marker yet).
        env.until_open_transaction().await;
    }
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
                std::future::ready((n >= inserted_at_kill + 100 || n == writer.rows).then_some(()))
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

/// The end of every test here: the writer hurries through the rest of its rows, all of them reach Kafka and
/// the pipeline stops cleanly; read_committed must hold each row exactly once, in order per aggregate.
/// Returns the outcome, the rows and the aborted copies that read_uncommitted sees on top.
async fn audit(
    env: &Env,
    broker: &PrivateBroker,
    running: Running,
    writer: Writer,
) -> (RunOutcome, usize, usize) {
    let topic = env.topic("order");
    let expected = writer.finish().await;
    let records = env.wait_for(&topic, expected.len(), &running).await;
    let outcome = running
        .stop()
        .await
        .unwrap_or_else(|e| panic!("the pipeline failed: {e}; broker log:\n{}", broker.log()));
    assert_exactly_once(&records, &expected);
    assert_per_key_order(&records, &expected);
    let aborted = env.drain(&topic, Isolation::ReadUncommitted).await.len() - records.len();
    (outcome, records.len(), aborted)
}

/// A test environment whose pipeline uses `broker`, with short timeouts, so that a long outage fails a
/// transaction soon: records not acknowledged within the transaction timeout fail it (message.timeout.ms),
/// and broker calls give up after request_timeout_ms.
async fn env_on(broker: &PrivateBroker) -> Env {
    let mut env = Env::new().await;
    env.services.kafka_bootstrap = broker.bootstrap.clone();
    env.config.kafka.bootstrap_servers = broker.bootstrap.clone();
    env.config.kafka.transaction_timeout_ms = 5_000;
    env.config.kafka.request_timeout_ms = 2_000;
    env.config.restart.initial_backoff_ms = 100;
    env.config.restart.max_backoff_ms = 500;
    env.config.restart.max_restarts = None; // the waits of the tests bound them
    env
}

/// A pipeline against a private broker, a writer, the outages, then the audit.
async fn survive(outages: &[Outage]) {
    let t0 = Instant::now();
    let mut broker = PrivateBroker::start().await;
    let mut env = env_on(&broker).await;
    if outages == [Outage::Short] {
        // Short means back before anything times out: a JVM takes seconds to start.
        env.config.kafka.transaction_timeout_ms = 60_000;
    }
    if outages.contains(&Outage::LongMidTransaction) {
        // Transactions that stay open a while, so that the kill lands inside one.
        env.config.kafka.batch.linger_ms = 1_000;
    }
    let running = env.spawn(FaultPlan::none());
    let writer = Writer::start(env.db.connect().await, ROWS, WRITE_TIME);

    let mut report = Vec::new();
    for kind in outages {
        report.push(outage(*kind, &env, &mut broker, &running, &writer).await);
    }
    let restarted_at = Instant::now();
    let (outcome, rows, aborted) = audit(&env, &broker, running, writer).await;
    let recovered_in = restarted_at.elapsed();
    if outages.iter().any(|o| *o != Outage::Short) {
        assert!(outcome.restarts >= 1, "a long outage makes the pipeline restart");
    } else {
        assert_eq!(
            outcome.restarts, 0,
            "a short outage is ridden out by librdkafka, without a restart"
        );
    }
    if outages.contains(&Outage::LongMidTransaction) {
        assert!(
            aborted > 0,
            "read_uncommitted shows no aborted copy: the broker did not die under an open transaction"
        );
    }
    report.push(format!("{aborted} aborted copies seen by read_uncommitted"));
    println!(
        "{}; the pipeline restarted {} times and had all {} rows in Kafka {recovered_in:?} after the last \
         restart of the broker ({} Kafka transactions committed, {} aborted); total {:?}",
        report.join(", "),
        outcome.restarts,
        rows,
        outcome.stats.txns_committed,
        outcome.stats.txns_aborted,
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_killed_with_a_transaction_open_and_soon_back_is_ridden_out_without_a_restart() {
    survive(&[Outage::Short]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pipeline_recovers_by_itself_from_a_broker_down_past_the_transaction_timeout() {
    survive(&[Outage::LongWhileIdle]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_open_when_the_broker_dies_is_aborted_and_hidden_after_its_restart() {
    survive(&[Outage::LongMidTransaction]).await;
}

/// The broker SIGKILLed at random moments, CHAOS_KILLS times while a writer inserts CHAOS_ROWS
/// rows, each time restarted after a random time down (some shorter than the transaction timeout, most
/// longer, as a JVM takes seconds to start). The pipeline never stops; the audit is the same as above, and
/// read_uncommitted must show aborted copies (kills that hit open transactions).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_broker_killed_and_restarted_at_random_ten_times_loses_and_duplicates_nothing() {
    let seed: u64 = std::env::var("OUTBOXD_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (replay with OUTBOXD_CHAOS_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let t0 = Instant::now();
    let mut broker = PrivateBroker::start().await;
    let mut env = env_on(&broker).await;
    // Transactions open for a while, so that the kills aimed at an open one find it.
    env.config.kafka.batch.linger_ms = 500;
    let running = env.spawn(FaultPlan::none());
    let writer = Writer::start(env.db.connect().await, CHAOS_ROWS, CHAOS_WRITE_TIME);

    let mut kills = 0;
    let mut downtimes = Vec::new();
    while kills < CHAOS_KILLS {
        // Some progress first (so that every kill meets a streaming pipeline), then a random moment; every
        // other kill waits for an open transaction first.
        more_committed(&env, &running, rng.gen_range(50..=1_500)).await;
        if kills % 2 == 1 {
            env.until_open_transaction().await;
        } else {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=700))).await;
        }
        broker.kill().await;
        let killed = Instant::now();
        kills += 1;
        // Down for a random while (load shaping, not synchronisation: any length is correct).
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=3_000))).await;
        broker.restart().await;
        downtimes.push(killed.elapsed());
        println!(
            "kill {kills}: broker down {:?}, {} rows inserted, at {:?}",
            killed.elapsed(),
            writer.inserted(),
            t0.elapsed()
        );
    }
    let (outcome, rows, aborted) = audit(&env, &broker, running, writer).await;
    println!(
        "{kills} broker kills in {:?} (down {:?} .. {:?}); the pipeline restarted {} times; {} rows exactly \
         once in order; {aborted} aborted copies seen by read_uncommitted ({} Kafka transactions committed, \
         {} aborted)",
        t0.elapsed(),
        downtimes.iter().min().unwrap(),
        downtimes.iter().max().unwrap(),
        outcome.restarts,
        rows,
        outcome.stats.txns_committed,
        outcome.stats.txns_aborted,
    );
    assert!(
        aborted > 0,
        "read_uncommitted shows no aborted copy: no kill hit an open transaction"
    );
}
