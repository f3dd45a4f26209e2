//! Fault suite, two `outboxd run` binaries on one slot.
//! - Started at the same moment with the same configuration (`on_slot_busy = "wait"`): exactly one streams.
//!   Both initialise the same transactional id; the later `init_transactions` wins the Kafka side, so the
//!   other either exits fenced (code 4) or waits for the slot. The loser never commits: the read_committed
//!   audit shows every row exactly once.
//! - With `on_slot_busy = "exit"`: a second deployment (its own transactional id) exits non-zero naming the
//!   holder's pid, and the first streams on; so does a second instance of the SAME configuration, which must
//!   not fence the running one (it looks at the slot before it touches Kafka).
//!
//! Needs `scripts/services up`.

mod support;

use outboxd_testkit::kafka::Isolation;
use outboxd_testkit::wait_until;
use support::binary::{describe, LogFile, Outboxd};
use support::fault::{audit_orders, committed_ids, Writers};
use support::{Env, WAIT};

/// The pid of the process whose TCP connection is the walsender streaming `slot` (via `ss`).
async fn slot_holder(env: &Env) -> Option<u32> {
    let row = env
        .db
        .client
        .query_opt(
            "SELECT a.client_port FROM pg_replication_slots s JOIN pg_stat_activity a ON a.pid = s.active_pid \
             WHERE s.slot_name = $1",
            &[&env.config.source.slot],
        )
        .await
        .unwrap()?;
    let port: i32 = row.get(0);
    let out = std::process::Command::new("ss")
        .args(["-Htnp", &format!("sport = :{port}")])
        .output()
        .expect("running ss");
    let text = String::from_utf8_lossy(&out.stdout);
    let pid = text.split("pid=").nth(1)?.split(',').next()?;
    pid.parse().ok()
}

/// Waits until `n` committed records are on `topic` (no pipeline handle: the producers are child processes).
async fn wait_records(env: &Env, topic: &str, n: usize) {
    wait_until(&format!("{n} committed records on {topic}"), WAIT, || async {
        (env.drain(topic, Isolation::ReadCommitted).await.len() >= n).then_some(())
    })
    .await;
}

/// The state "exactly one streams": the slot's holder is alive and produces, and the other one either
/// exited fenced (code 4: it lost the Kafka side) or waits for the slot (its log says so). Returns the
/// holder's pid.
async fn exactly_one_streams(env: &Env, a: &mut Outboxd, b: &mut Outboxd) -> u32 {
    // Polled with a deadline (like `wait_until`, which cannot lend the two children mutably).
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(holder) = slot_holder(env).await {
            let (streaming, other) = if holder == a.pid {
                (&mut *a, &mut *b)
            } else {
                (&mut *b, &mut *a)
            };
            assert!(streaming.exited().is_none(), "the slot holder is gone");
            let waits = std::fs::read_to_string(&other.log)
                .unwrap_or_default()
                .contains("waiting for it to be released");
            match other.exited() {
                Some(s) if s.code() == Some(4) => return holder,
                Some(s) => panic!(
                    "the other instance exited, not fenced: {}\n{}",
                    describe(s),
                    other.log_tail(20)
                ),
                None if waits => return holder,
                None => {}
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no state where exactly one instance streams within {WAIT:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_started_at_once_exactly_one_streams_and_the_loser_never_commits() {
    let mut env = Env::new().await;
    env.config.observability.listen = String::new();
    env.config.restart.max_restarts = Some(500);
    let config = env.config_file(&env.config, "same");
    let topic = env.topic("order");
    let writers = Writers::start(&env.db.url, "two", 2);
    let (log_a, log_b) = (LogFile::new("outboxd_two_a"), LogFile::new("outboxd_two_b"));
    let mut a = Outboxd::spawn(&config, &log_a.path, None);
    let mut b = Outboxd::spawn(&config, &log_b.path, None);
    wait_records(&env, &topic, 30).await;
    writers.wait_progress(100).await;
    let holder = exactly_one_streams(&env, &mut a, &mut b).await;
    let (streaming, other) = if holder == a.pid {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    eprintln!(
        "streaming: pid {}; the other: {}",
        streaming.pid,
        other
            .exited()
            .map(describe)
            .unwrap_or("waiting for the slot".into())
    );
    writers.wait_progress(50).await;
    writers.stop().await;
    let expected = committed_ids(&env.db.url).await;
    wait_records(&env, &topic, expected.len()).await;
    let status = streaming.stop().await;
    assert_eq!(status.code(), Some(0), "{}", describe(status));
    let audit = audit_orders(&env, &expected).await;
    eprintln!(
        "other after the streaming one stopped: {:?}\n{}",
        other.exited().map(describe),
        other.log_tail(5)
    );
    other.kill().await;
    eprintln!("FIGURES fault_two_instances(wait): rows_audited={}", audit.rows);
}

/// A first instance streams (`on_slot_busy = "exit"`); a second one with the same slot is started. With
/// `same_transactional_id` it is the same configuration; otherwise only its transactional id differs (a second
/// deployment pointed at the same slot by mistake). The second must exit non-zero naming the holder's pid,
/// produce nothing, and leave the first streaming.
async fn second_instance_with_exit(same_transactional_id: bool) {
    let mut env = Env::new().await;
    env.config.observability.listen = String::new();
    env.config.restart.max_restarts = Some(500);
    env.config.source.on_slot_busy = outboxd_wal::SlotBusy::Exit;
    let config = env.config_file(&env.config, "exit");
    let mut second_config = env.config.clone();
    if !same_transactional_id {
        second_config.kafka.transactional_id = Some(outboxd_testkit::unique_name("txn_second"));
    }
    let second_file = env.config_file(&second_config, "exit_second");
    let topic = env.topic("order");
    let writers = Writers::start(&env.db.url, "exit", 2);
    let log_a = LogFile::new("outboxd_exit_a");
    let mut first = Outboxd::spawn(&config, &log_a.path, None);
    wait_records(&env, &topic, 30).await;
    let holder_pid: i32 = env
        .db
        .client
        .query_one(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&env.config.source.slot],
        )
        .await
        .unwrap()
        .get(0);
    let log_b = LogFile::new("outboxd_exit_b");
    let mut second = Outboxd::spawn(&second_file, &log_b.path, None);
    // Polled with a deadline: whichever of the two exits first tells the story.
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = second.exited() {
            break s;
        }
        if let Some(s) = first.exited() {
            panic!(
                "BUG: the second instance (on_slot_busy = \"exit\") did not exit; the running one did ({}): \
                 the newcomer's init_transactions fenced it before the slot was checked.\n--- first\n{}\n--- second\n{}",
                describe(s),
                first.log_tail(5),
                second.log_tail(5)
            );
        }
        assert!(std::time::Instant::now() < deadline, "neither instance exited");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let second_exit = describe(status);
    let log = std::fs::read_to_string(&log_b.path).unwrap_or_default();
    assert!(status.code().is_some_and(|c| c != 0), "{}", describe(status));
    assert!(
        log.contains(&format!("pid {holder_pid}")) && log.contains("in use by another process"),
        "names the holder's pid {holder_pid}:\n{log}"
    );
    writers.wait_progress(100).await;
    assert!(
        first.exited().is_none(),
        "the first instance streams on:\n{}",
        first.log_tail(10)
    );
    writers.stop().await;
    let expected = committed_ids(&env.db.url).await;
    wait_records(&env, &topic, expected.len()).await;
    let status = first.stop().await;
    assert_eq!(
        status.code(),
        Some(0),
        "the first instance streams on: {}",
        describe(status)
    );
    let audit = audit_orders(&env, &expected).await;
    eprintln!(
        "FIGURES fault_two_instances(exit, same transactional id: {same_transactional_id}): second exited {second_exit}, \
         rows_audited={}",
        audit.rows
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_on_slot_busy_exit_a_second_deployment_exits_naming_the_holder_and_produces_nothing() {
    second_instance_with_exit(false).await;
}

/// Fails today (product bug, see docs/reliability.md): the Kafka producer is initialised (fencing) before
/// the slot is checked, so the newcomer kills the running instance instead of exiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_on_slot_busy_exit_a_second_instance_of_the_same_config_exits_and_the_first_streams_on() {
    second_instance_with_exit(true).await;
}
