//! Exactly-once with the real `outboxd run` binary, killed over and over while writers insert: SIGKILLs at
//! random moments mixed with `OUTBOXD_FAULT` aborts between the Kafka commit and the Postgres confirmation,
//! before a commit and mid-transaction. A clean instance then catches up and stops on SIGTERM with exit 0;
//! `read_committed` must hold every row exactly once, in order per aggregate. Also: a second instance with the
//! same transactional id fences the first, which exits with code 4. Needs `scripts/services up`.
//!
//! `OUTBOXD_CRASH_SEED=<n>` replays a run (the seed is printed); `OUTBOXD_TEST_CHILD_LOG=info` makes the
//! children log more.

mod support;

use apache_avro::types::Value;
use outboxd_testkit::kafka::{Isolation, Record};
use outboxd_testkit::wait_until;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::binary::{describe, LogFile, Outboxd};
use support::{assert_exactly_once, assert_per_key_order, schema_by_id, Env, WAIT};
use tokio_postgres::Client;

/// Rows inserted by all writers together.
const ROWS: usize = 50_000;
/// Aggregates (each owned by one writer, so that its sequence numbers follow commit order).
const AGGREGATES: usize = 200;
/// Concurrent writer tasks (ROWS is a multiple of it).
const WRITERS: usize = 4;
const _: () = assert!(ROWS % WRITERS == 0);
/// Largest Postgres transaction, in rows (sizes are drawn from 1..=MAX_TXN).
const MAX_TXN: usize = 50;
/// Kills at least; more while the writers are still writing.
const MIN_KILLS: usize = 20;
/// Kills at most (a bound on the test's time should something be slow).
const MAX_KILLS: usize = 60;
/// The writers spread their inserts over this long, so that the kills land while they write.
const WRITE_TIME: Duration = Duration::from_secs(45);

/// How an instance dies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kill {
    /// `OUTBOXD_FAULT=crash_after_commit:<n>`: committed in Kafka, not confirmed to Postgres.
    AfterCommit,
    /// SIGKILL a random delay after the instance confirmed something.
    SigkillStreaming,
    /// `OUTBOXD_FAULT=crash_mid_txn:<n>`: inside a Postgres transaction.
    MidTxn,
    /// SIGKILL a random delay after the start (may land during start-up).
    SigkillAnytime,
    /// `OUTBOXD_FAULT=crash_before_commit:<n>`: everything flushed, not committed.
    BeforeCommit,
}

const ROUNDS: [Kill; 5] = [
    Kill::AfterCommit,
    Kill::SigkillStreaming,
    Kill::MidTxn,
    Kill::SigkillAnytime,
    Kill::BeforeCommit,
];

impl Kill {
    fn fault(self, rng: &mut StdRng) -> Option<String> {
        match self {
            Kill::AfterCommit => Some(format!("crash_after_commit:{}", rng.gen_range(1..=3))),
            Kill::MidTxn => Some(format!("crash_mid_txn:{}", rng.gen_range(1..=400))),
            Kill::BeforeCommit => Some(format!("crash_before_commit:{}", rng.gen_range(1..=3))),
            Kill::SigkillStreaming | Kill::SigkillAnytime => None,
        }
    }
}

/// Inserts `rows` rows into the aggregates `a<k>` with `k % WRITERS == w`, in transactions of 1..=MAX_TXN
/// rows, each row's payload carrying its aggregate's next sequence number (`amount`). The pace spreads the
/// inserts over WRITE_TIME (load shaping, not synchronisation). Returns the ids in insertion order.
async fn writer(client: Client, w: usize, rows: usize, seed: u64, inserted: Arc<AtomicUsize>) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed ^ (w as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let own: Vec<usize> = (0..AGGREGATES).filter(|k| k % WRITERS == w).collect();
    let mut next_seq: HashMap<usize, i32> = HashMap::new();
    let mut ids = Vec::with_capacity(rows);
    let started = tokio::time::Instant::now();
    while ids.len() < rows {
        let n = rng.gen_range(1..=MAX_TXN).min(rows - ids.len());
        let (mut tx_ids, mut aggs, mut payloads) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let k = own[rng.gen_range(0..own.len())];
            let seq = next_seq.entry(k).or_insert(0);
            tx_ids.push(format!("w{w}-{}", ids.len() + tx_ids.len()));
            aggs.push(format!("a{k}"));
            payloads.push(format!(r#"{{"orderId":"a{k}","amount":{seq}}}"#));
            *seq += 1;
        }
        // One statement, so one Postgres transaction, of n rows.
        client
            .execute(
                "INSERT INTO public.outbox (id, aggregate_type, aggregate_id, event_type, payload) \
                 SELECT id, 'order', agg, 'OrderCreated', payload \
                 FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, agg, payload)",
                &[&tx_ids, &aggs, &payloads],
            )
            .await
            .unwrap();
        ids.extend(tx_ids);
        inserted.fetch_add(n, Ordering::Relaxed);
        let due = started + WRITE_TIME.mul_f64(ids.len() as f64 / rows as f64);
        tokio::time::sleep_until(due).await;
    }
    ids
}

/// One kill: starts an instance, lets it die the planned way, and returns (what happened, exit status).
async fn round(
    env: &Env,
    config: &Path,
    log: &Path,
    kind: Kill,
    rng: &mut StdRng,
    writers_done: &AtomicBool,
) -> (Kill, std::process::ExitStatus) {
    let before = env.confirmed_flush_lsn().await;
    let fault = kind.fault(rng);
    let mut child = Outboxd::spawn(config, log, fault.as_deref());
    let started = Instant::now();
    match kind {
        Kill::AfterCommit | Kill::MidTxn | Kill::BeforeCommit => {
            // The fault fires at the n-th point reached; once the writers are done and the backlog is gone it
            // may never be reached: then SIGKILL it instead (reported as such).
            let fired = wait_until(&format!("{fault:?} to fire"), WAIT * 2, || {
                let exited = child.exited();
                let idle =
                    writers_done.load(Ordering::Relaxed) && started.elapsed() > Duration::from_secs(15);
                std::future::ready(exited.map(Some).or(idle.then_some(None)))
            })
            .await;
            match fired {
                Some(status) => {
                    assert_eq!(
                        status.signal(),
                        Some(6),
                        "{fault:?}: expected SIGABRT, got {}; log:\n{}",
                        describe(status),
                        child.log_tail(30)
                    );
                    (kind, status)
                }
                None => (Kill::SigkillAnytime, child.kill().await),
            }
        }
        Kill::SigkillStreaming | Kill::SigkillAnytime => {
            if kind == Kill::SigkillStreaming {
                wait_until("the instance to confirm something", WAIT * 2, || {
                    let exited = child.exited().map(|s| (describe(s), child.log_tail(30)));
                    let done = writers_done.load(Ordering::Relaxed);
                    async move {
                        if let Some((status, log)) = exited {
                            panic!("the instance died by itself ({status}):\n{log}");
                        }
                        (done || env.confirmed_flush_lsn().await > before).then_some(())
                    }
                })
                .await;
            }
            // The random delay IS the fault injection (when to kill), not a synchronisation.
            let delay = match kind {
                Kill::SigkillStreaming => rng.gen_range(0..1_000),
                _ => rng.gen_range(100..3_000),
            };
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let status = child.kill().await;
            assert_eq!(
                status.signal(),
                Some(9),
                "the instance died by itself ({}) before the SIGKILL; log:\n{}",
                describe(status),
                child.log_tail(30)
            );
            (kind, status)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkills_and_injected_crashes_of_the_binary_lose_and_duplicate_nothing() {
    let seed: u64 = std::env::var("OUTBOXD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (replay with OUTBOXD_CRASH_SEED={seed})");
    let t0 = Instant::now();
    let mut env = Env::new().await;
    env.config.observability.listen = String::new();
    let config = env.config_file(&env.config, "outboxd");
    let log_file = LogFile::new("crash_binary");
    let log = log_file.path.as_path();
    let topic = env.topic("order");

    let inserted = Arc::new(AtomicUsize::new(0));
    let writers_done = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..WRITERS {
        clients.push(env.db.connect().await);
    }
    let writing = {
        let (inserted, done) = (inserted.clone(), writers_done.clone());
        tokio::spawn(async move {
            let tasks: Vec<_> = clients
                .into_iter()
                .enumerate()
                .map(|(w, client)| tokio::spawn(writer(client, w, ROWS / WRITERS, seed, inserted.clone())))
                .collect();
            let mut ids = Vec::with_capacity(ROWS);
            for t in tasks {
                ids.extend(t.await.unwrap());
            }
            done.store(true, Ordering::Relaxed);
            ids
        })
    };

    let mut rng = StdRng::seed_from_u64(seed);
    let mut kills: Vec<(Kill, std::process::ExitStatus)> = Vec::new();
    while kills.len() < MAX_KILLS && (kills.len() < MIN_KILLS || !writers_done.load(Ordering::Relaxed)) {
        let kind = ROUNDS[kills.len() % ROUNDS.len()];
        kills.push(round(&env, &config, log, kind, &mut rng, &writers_done).await);
        println!(
            "kill {}: {:?} ({}), {} rows inserted so far, at {:?}",
            kills.len(),
            kills.last().unwrap().0,
            describe(kills.last().unwrap().1),
            inserted.load(Ordering::Relaxed),
            t0.elapsed()
        );
    }
    let expected = writing.await.unwrap();
    let killed_at = t0.elapsed();
    assert_eq!(expected.len(), ROWS);

    // A clean instance catches up; SIGTERM stops it with exit 0.
    let mut clean = Outboxd::spawn(&config, log, None);
    let records = wait_until("every row committed in Kafka", Duration::from_secs(120), || {
        let exited = clean.exited().map(|s| (describe(s), clean.log_tail(30)));
        let (env, topic) = (&env, &topic);
        async move {
            // The slot is active once this instance streams (well past the start-up, signal handlers in place).
            let streaming: bool = env
                .db
                .client
                .query_one(
                    "SELECT coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_name = $1",
                    &[&env.config.source.slot],
                )
                .await
                .map(|row| row.get(0))
                .unwrap_or(false);
            if let Some((status, log)) = exited {
                panic!("the clean instance stopped by itself ({status}):\n{log}");
            }
            let records = env.drain(topic, Isolation::ReadCommitted).await;
            let distinct: BTreeSet<String> = support::ids(&records).into_iter().collect();
            // Earlier instances may already have delivered everything: also wait until this one streams
            // (its signal handlers are installed by then), so that the SIGTERM below tests the graceful stop.
            (distinct.len() >= ROWS && streaming).then_some(records)
        }
    })
    .await;
    let status = clean.stop().await;
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM must stop outboxd with exit 0, got {}; log:\n{}",
        describe(status),
        clean.log_tail(30)
    );

    // The audit.
    assert_exactly_once(&records, &expected);
    assert_per_key_order(&records, &expected);
    let checked = assert_sequences(&env, &records).await;
    let uncommitted = env.drain(&topic, Isolation::ReadUncommitted).await;
    let aborted = uncommitted.len() - records.len();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for (kind, status) in &kills {
        *by_kind
            .entry(format!("{kind:?} ({})", describe(*status)))
            .or_default() += 1;
    }
    println!(
        "{} kills survived in {killed_at:?} ({by_kind:?}); audited {} rows over {checked} aggregates \
         (read_committed: each once, sequences in order); read_uncommitted saw {} records, {aborted} of them \
         aborted copies; total {:?}",
        kills.len(),
        records.len(),
        uncommitted.len(),
        t0.elapsed()
    );
    assert!(kills.len() >= MIN_KILLS);
    for kind in [Kill::AfterCommit, Kill::MidTxn, Kill::SigkillStreaming] {
        assert!(
            kills.iter().any(|(k, _)| *k == kind),
            "no {kind:?} kill happened: {by_kind:?}"
        );
    }
    assert!(
        aborted > 0,
        "read_uncommitted shows no aborted copy: the kills never hit an open transaction"
    );
}

/// Decodes each record and asserts that, per aggregate, the sequence numbers in partition order are exactly
/// 0, 1, 2, ... (so strictly increasing, none missing). Returns the number of aggregates.
async fn assert_sequences(env: &Env, records: &[Record]) -> usize {
    let mut schemas = HashMap::new();
    let mut per_key: BTreeMap<String, Vec<(i32, i64, i32)>> = BTreeMap::new();
    for r in records {
        let value = r.value.as_deref().expect("an event has a value");
        assert!(value.len() > 5 && value[0] == 0, "not a Confluent frame");
        let id = u32::from_be_bytes(value[1..5].try_into().unwrap());
        if let std::collections::hash_map::Entry::Vacant(e) = schemas.entry(id) {
            e.insert(schema_by_id(&env.services.registry_url, id).await);
        }
        #[allow(deprecated)] // a bare datum, no container header
        let decoded = apache_avro::from_avro_datum(&schemas[&id], &mut &value[5..], None).unwrap();
        let Value::Record(fields) = decoded else {
            panic!("not a record: {decoded:?}")
        };
        let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let (Some(Value::String(aggregate)), Some(Value::Int(seq))) = (field("orderId"), field("amount"))
        else {
            panic!("unexpected fields: {fields:?}")
        };
        assert_eq!(
            r.key.as_deref(),
            Some(aggregate.as_bytes()),
            "the key is the aggregate id"
        );
        per_key
            .entry(aggregate)
            .or_default()
            .push((r.partition, r.offset, seq));
    }
    for (aggregate, list) in &mut per_key {
        list.sort_unstable();
        let seqs: Vec<i32> = list.iter().map(|x| x.2).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "aggregate {aggregate}: sequence numbers out of order in partition order: {seqs:?}"
        );
        assert_eq!(
            seqs,
            (0..seqs.len() as i32).collect::<Vec<_>>(),
            "aggregate {aggregate}: gaps"
        );
    }
    assert_eq!(per_key.len(), AGGREGATES, "every aggregate received events");
    per_key.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_binary_with_the_same_transactional_id_fences_the_first_which_exits_4() {
    let mut env = Env::new().await;
    env.config.observability.listen = String::new();
    let config = env.config_file(&env.config, "outboxd");
    let (first_log, second_log) = (LogFile::new("fencing_first"), LogFile::new("fencing_second"));
    let topic = env.topic("order");
    let mut expected = env.insert_orders("early", 20, 5, 4).await;
    let mut first = Outboxd::spawn(&config, &first_log.path, None);
    wait_until("the first instance to relay 20 rows", WAIT, || {
        let exited = first.exited().map(|s| (describe(s), first.log_tail(30)));
        async {
            if let Some((status, log)) = exited {
                panic!("the first instance stopped ({status}):\n{log}");
            }
            (env.drain(&topic, Isolation::ReadCommitted).await.len() >= 20).then_some(())
        }
    })
    .await;

    // Same config, so same transactional id and slot: its init_transactions fences the first, then it waits
    // for the slot (and says so in its log). No row is written meanwhile, so the first is idle and the
    // fence meets it between transactions: its next transaction fails as fenced.
    let mut second = Outboxd::spawn(&config, &second_log.path, None);
    wait_until("the second instance to wait for the slot", WAIT, || {
        let exited = second.exited().map(|s| (describe(s), second.log_tail(30)));
        let log = std::fs::read_to_string(&second_log.path).unwrap_or_default();
        async move {
            if let Some((status, log)) = exited {
                panic!("the second instance stopped ({status}):\n{log}");
            }
            log.contains("is in use by another process").then_some(())
        }
    })
    .await;
    // The first notices at its next commit: keep writing until it exits.
    let late = std::sync::Mutex::new(Vec::new());
    let status = wait_until("the first instance to be fenced", WAIT, || {
        let exited = first.exited();
        let n = late.lock().unwrap().len();
        let (env, late) = (&env, &late);
        async move {
            if exited.is_some() {
                return exited;
            }
            let id = format!("late-{n}");
            env.insert(&[support::Row::order(&id, &format!("a{}", n % 4), n as i32)])
                .await;
            late.lock().unwrap().push(id);
            None
        }
    })
    .await;
    assert_eq!(
        status.code(),
        Some(4),
        "the fenced instance must exit with 4, got {}; log:\n{}",
        describe(status),
        first.log_tail(30)
    );
    expected.extend(late.into_inner().unwrap());

    let records = wait_until("the second instance to relay every row", WAIT, || {
        let exited = second.exited().map(|s| (describe(s), second.log_tail(30)));
        let (n, env, topic) = (expected.len(), &env, &topic);
        async move {
            if let Some((status, log)) = exited {
                panic!("the second instance stopped ({status}):\n{log}");
            }
            let records = env.drain(topic, Isolation::ReadCommitted).await;
            (records.len() >= n).then_some(records)
        }
    })
    .await;
    let status = second.stop().await;
    assert_eq!(status.code(), Some(0), "SIGTERM: {}", describe(status));
    assert_exactly_once(&records, &expected);
    assert_per_key_order(&records, &expected);
    println!(
        "fenced: first exited 4, second relayed {} rows exactly once",
        records.len()
    );
}
