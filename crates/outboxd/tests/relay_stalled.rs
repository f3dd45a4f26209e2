//! A relay that freezes (SIGSTOP: a long GC-like pause, an overloaded host) with a Kafka transaction open,
//! on the real broker, while writers keep inserting:
//! - frozen past `transaction.timeout.ms`: the broker aborts the transaction by itself (bumping the producer
//!   epoch, which librdkafka reports as fenced); once thawed, the relay tells that from a takeover by the
//!   transaction's age, starts again from its checkpoint with a new producer and carries on without exiting;
//! - frozen while a newer instance with the same `transactional.id` starts (a zombie): the newcomer's
//!   `init_transactions` fences it and aborts its open transaction; once thawed, the zombie's next commit
//!   fails as fenced and it exits with code 4, and the newcomer relays everything.
//!
//! Each ends with the read_committed audit (every row exactly once, in order per aggregate, no dead letter),
//! and read_uncommitted must hold the aborted copies of the frozen transaction. Needs `scripts/services up`.

mod support;

use outboxd_testkit::wait_until;
use std::time::{Duration, Instant};
use support::binary::{describe, LogFile, Outboxd};
use support::fault::{audit_orders, committed_ids, Writers};
use support::{Env, WAIT};

/// The relay's transaction timeout in these tests (the broker scans for timed-out transactions every second,
/// tools/kafka/server.properties).
const TXN_TIMEOUT: Duration = Duration::from_secs(3);

/// A test's world: writers, one relay binary (with this transaction timeout), its config file and log.
async fn start(test: &str, txn_timeout: Duration) -> (Env, Writers, std::path::PathBuf, LogFile) {
    let mut env = Env::new().await;
    env.config.observability.listen = String::new();
    env.config.kafka.transaction_timeout_ms = txn_timeout.as_millis() as u64;
    env.config.restart.max_restarts = Some(100);
    let config = env.config_file(&env.config, "outboxd");
    let writers = Writers::start(&env.db.url, test, 2);
    (env, writers, config, LogFile::new(test))
}

/// Waits until `relay` has relayed `n` rows (read_committed), failing if it exits.
async fn relayed(env: &Env, relay: &mut Outboxd, n: usize) {
    let topic = env.topic("order");
    wait_until(&format!("{n} rows relayed"), WAIT, || {
        let exited = relay.exited().map(|s| (describe(s), relay.log_tail(30)));
        let (env, topic) = (env, &topic);
        async move {
            if let Some((status, log)) = exited {
                panic!("the relay stopped ({status}):\n{log}");
            }
            (env.drain(topic, outboxd_testkit::kafka::Isolation::ReadCommitted)
                .await
                .len()
                >= n)
                .then_some(())
        }
    })
    .await;
}

/// Freezes `relay` at a moment when its Kafka transaction is open (records on the broker, no commit marker):
/// freezes it, looks, and thaws it to try again while none is open. Returns how many tries it took.
async fn freeze_with_open_transaction(env: &Env, relay: &Outboxd) -> usize {
    let topic = env.topic("order");
    for attempt in 1..=200 {
        relay.pause();
        if env.open_transaction_offsets(&topic).await > 0 {
            return attempt;
        }
        relay.resume();
        // Let it stream a moment before the next try (pacing, not synchronisation).
        tokio::time::sleep(Duration::from_millis(30 + attempt as u64 * 7 % 90)).await;
    }
    panic!("the relay was never caught with a transaction open in 200 tries");
}

/// Waits until no transaction is open on the event topic (it was committed or aborted); returns how long.
async fn until_no_open_transaction(env: &Env, what: &str, timeout: Duration) -> Duration {
    let topic = env.topic("order");
    let t0 = Instant::now();
    wait_until(what, timeout, || async {
        (env.open_transaction_offsets(&topic).await == 0).then_some(())
    })
    .await;
    t0.elapsed()
}

/// Stops the writers and waits until `relay` has every committed row; returns the expected ids.
async fn finish(env: &Env, writers: Writers, relay: &mut Outboxd) -> Vec<String> {
    writers.wait_progress(50).await;
    writers.stop().await;
    let expected = committed_ids(&env.db.url).await;
    relayed(env, relay, expected.len()).await;
    let status = relay.stop().await;
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM: {}; log:\n{}",
        describe(status),
        relay.log_tail(30)
    );
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_frozen_past_the_transaction_timeout_is_aborted_by_the_broker_and_carries_on_by_itself() {
    let (env, writers, config, log) = start("stall", TXN_TIMEOUT).await;
    let mut relay = Outboxd::spawn(&config, &log.path, None);
    relayed(&env, &mut relay, 100).await;

    let tries = freeze_with_open_transaction(&env, &relay).await;
    // The broker aborts it once it is older than the timeout: nobody else touches this transactional id.
    let aborted_after = until_no_open_transaction(
        &env,
        "the broker to abort the frozen relay's transaction",
        TXN_TIMEOUT * 10,
    )
    .await;
    relay.resume();
    writers.wait_progress(100).await;
    assert!(
        relay.exited().is_none(),
        "the relay must recover from a transaction the broker timed out, not exit; it exited with {}:\n{}",
        describe(relay.exited().unwrap()),
        relay.log_tail(30)
    );
    let expected = finish(&env, writers, &mut relay).await;
    let audit = audit_orders(&env, &expected).await;
    assert!(
        audit.aborted > 0,
        "read_uncommitted shows no aborted copy: the frozen transaction was not open"
    );
    println!(
        "frozen with a transaction open (try {tries}); the broker aborted it {aborted_after:?} later; {} rows \
         exactly once, {} aborted copies seen by read_uncommitted",
        audit.rows, audit.aborted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_zombie_is_fenced_by_its_successor_and_its_open_transaction_never_shows() {
    // A timeout longer than the freeze: the zombie's transaction is still young when it thaws, so the fence
    // it meets is its successor's (a transaction past its timeout would be the broker's abort: the test above).
    let (env, writers, config, log) = start("zombie", Duration::from_secs(60)).await;
    let successor_log = LogFile::new("zombie_successor");
    let mut zombie = Outboxd::spawn(&config, &log.path, None);
    relayed(&env, &mut zombie, 100).await;
    let tries = freeze_with_open_transaction(&env, &zombie).await;

    // Same config: same transactional id and slot. Its init_transactions fences the zombie (aborting the open
    // transaction), then it waits for the slot, which the frozen zombie still holds.
    let mut successor = Outboxd::spawn(&config, &successor_log.path, None);
    let fenced_after = until_no_open_transaction(
        &env,
        "the successor's init_transactions to abort the zombie's transaction",
        WAIT,
    )
    .await;
    assert!(successor.exited().is_none(), "{}", successor.log_tail(30));
    zombie.resume();
    let status = zombie.wait(WAIT).await;
    assert_eq!(
        status.code(),
        Some(4),
        "the fenced zombie must exit with 4, got {}; log:\n{}",
        describe(status),
        zombie.log_tail(30)
    );
    let expected = finish(&env, writers, &mut successor).await;
    let audit = audit_orders(&env, &expected).await;
    assert!(
        audit.aborted > 0,
        "read_uncommitted shows no aborted copy: the zombie's transaction was not open"
    );
    println!(
        "zombie frozen with a transaction open (try {tries}), fenced {fenced_after:?} after its successor \
         started, exited 4 once thawed; {} rows exactly once, {} aborted copies",
        audit.rows, audit.aborted
    );
}
