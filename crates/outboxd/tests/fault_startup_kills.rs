//! Fault suite, `outboxd run` killed during start-up: SIGKILL at a random moment 0-500 ms after the spawn
//! (schema gate, topic creation, init_transactions, checkpoint read, slot wait, first transaction), 15 times,
//! while writers insert; then a clean run catches up and a read_committed audit ends the test. With
//! crash_binary.rs's kills this makes the suite's "at least 50 kills" (both print their count).
//! `OUTBOXD_STARTUP_SEED=<n>` replays the delays. Needs `scripts/services up`.

mod support;

use outboxd_testkit::kafka::Isolation;
use outboxd_testkit::wait_until;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;
use support::binary::{describe, LogFile, Outboxd};
use support::fault::{audit_orders, committed_ids, Writers};
use support::{Env, WAIT};

const KILLS: usize = 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kills_during_start_up_lose_and_duplicate_nothing() {
    let seed: u64 = std::env::var("OUTBOXD_STARTUP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("OUTBOXD_STARTUP_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut env = Env::new().await;
    env.config.observability.listen = String::new();
    let config = env.config_file(&env.config, "startup");
    let topic = env.topic("order");
    let writers = Writers::start(&env.db.url, "boot", 2);
    let log = LogFile::new("outboxd_startup_kills");
    let mut kills = 0;
    let mut died_on_its_own = Vec::new();
    for _ in 0..KILLS {
        let mut child = Outboxd::spawn(&config, &log.path, None);
        // The fault's timing (not a synchronisation): a random moment of the start-up.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..500))).await;
        let status = child.kill().await;
        if status.code().is_some() {
            died_on_its_own.push(describe(status));
        } else {
            kills += 1;
        }
    }
    assert!(
        died_on_its_own.is_empty(),
        "instances exited by themselves during start-up: {died_on_its_own:?}\n{}",
        std::fs::read_to_string(&log.path).unwrap_or_default()
    );
    writers.wait_progress(30).await;

    let mut clean = Outboxd::spawn(&config, &log.path, None);
    writers.wait_progress(100).await;
    writers.stop().await;
    let expected = committed_ids(&env.db.url).await;
    wait_until(&format!("{} committed records", expected.len()), WAIT, || async {
        (env.drain(&topic, Isolation::ReadCommitted).await.len() >= expected.len()).then_some(())
    })
    .await;
    assert!(
        clean.exited().is_none(),
        "the clean run stopped:\n{}",
        clean.log_tail(20)
    );
    let status = clean.stop().await;
    assert_eq!(status.code(), Some(0), "{}", describe(status));
    let audit = audit_orders(&env, &expected).await;
    eprintln!(
        "FIGURES fault_startup_kills: kills={kills} rows_audited={} duplicates=0 lost=0",
        audit.rows
    );
}
