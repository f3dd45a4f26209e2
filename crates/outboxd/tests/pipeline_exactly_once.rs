//! Exactly-once across stops, crashes between the Kafka commit and the Postgres confirmation, aborted
//! transactions and fencing, as seen by `read_committed` consumers. Needs `scripts/services up`.

mod support;

use outboxd::{FaultPlan, FaultPoint, StopReason};
use outboxd_core::Lsn;
use outboxd_testkit::kafka::Isolation;
use outboxd_testkit::wait_until;
use support::{assert_exactly_once, assert_per_key_order, Env, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_and_a_restart_deliver_each_event_once_in_order() {
    let env = Env::new().await;
    let topic = env.topic("order");
    let mut expected = env.insert_orders("first", 60, 7, 5).await;

    let running = env.spawn(FaultPlan::none());
    env.wait_for(&topic, 60, &running).await;
    let first = running.stop().await.unwrap();
    assert_eq!(first.reason, StopReason::Shutdown);
    assert!(
        env.confirmed_flush_lsn().await >= first.checkpoint,
        "shutdown confirms the last commit"
    );

    expected.extend(env.insert_orders("second", 45, 4, 5).await);
    let running = env.spawn(FaultPlan::none());
    env.wait_for(&topic, 105, &running).await;
    let second = running.stop().await.unwrap();
    assert!(second.checkpoint > first.checkpoint);
    assert_eq!(
        second.stats.events_produced, 45,
        "the restart produced only the new events"
    );

    let records = env.drain(&topic, Isolation::ReadCommitted).await;
    assert_exactly_once(&records, &expected);
    assert_per_key_order(&records, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_between_kafka_commit_and_postgres_confirmation_duplicates_nothing() {
    let env = Env::new().await;
    let topic = env.topic("order");
    let mut expected = env.insert_orders("before", 30, 10, 3).await;

    // Stop right after the first commit, without confirming it to Postgres.
    let crashed = env
        .spawn(FaultPlan::stop_at(FaultPoint::AfterCommit, 1))
        .join()
        .await
        .unwrap();
    assert_eq!(crashed.reason, StopReason::Fault(FaultPoint::AfterCommit));
    let committed = crashed.checkpoint;
    assert!(committed > Lsn::ZERO);
    assert!(
        env.confirmed_flush_lsn().await < committed,
        "the scenario: Kafka holds the transaction, Postgres was not told"
    );
    let in_kafka = env.drain(&topic, Isolation::ReadCommitted).await;
    assert!(!in_kafka.is_empty());

    // Postgres resends what was committed but not confirmed; the checkpoint skips it.
    expected.extend(env.insert_orders("after", 20, 5, 3).await);
    let running = env.spawn(FaultPlan::none());
    env.wait_for(&topic, 50, &running).await;
    let outcome = running.stop().await.unwrap();
    assert_eq!(
        outcome.stats.events_produced as usize,
        50 - in_kafka.len(),
        "nothing produced twice"
    );
    let records = env.drain(&topic, Isolation::ReadCommitted).await;
    assert_exactly_once(&records, &expected);
    assert_per_key_order(&records, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aborted_copies_are_seen_only_by_read_uncommitted() {
    let env = Env::new().await;
    let topic = env.topic("order");
    let mut expected = env.insert_orders("one", 10, 10, 2).await;

    // The second commit never happens: its records are on the broker, uncommitted, when the pipeline stops.
    let running = env.spawn(FaultPlan::stop_at(FaultPoint::BeforeCommit, 2));
    env.wait_for(&topic, 10, &running).await;
    expected.extend(env.insert_orders("two", 10, 10, 2).await);
    let stopped = running.join().await.unwrap();
    assert_eq!(stopped.reason, StopReason::Fault(FaultPoint::BeforeCommit));

    // A new instance aborts them (init_transactions) and produces the same events again.
    let running = env.spawn(FaultPlan::none());
    env.wait_for(&topic, 20, &running).await;
    running.stop().await.unwrap();

    let committed = env.drain(&topic, Isolation::ReadCommitted).await;
    assert_exactly_once(&committed, &expected);
    let uncommitted = env.drain(&topic, Isolation::ReadUncommitted).await;
    let copies = |id: &str| support::ids(&uncommitted).iter().filter(|x| *x == id).count();
    assert_eq!(
        uncommitted.len(),
        30,
        "read_uncommitted also sees the 10 aborted copies"
    );
    assert_eq!(copies("two-0"), 2);
    assert_eq!(copies("one-0"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_instance_fences_the_first_without_loss_or_duplicate() {
    let env = Env::new().await;
    let topic = env.topic("order");
    let mut expected = env.insert_orders("early", 20, 5, 4).await;
    let first = env.spawn(FaultPlan::none());
    env.wait_for(&topic, 20, &first).await;

    // Same slot, pipeline id and transactional id: its init_transactions fences the first instance, then it
    // waits for the slot, which the first holds until it notices.
    let second = env.spawn(FaultPlan::none());
    let stats = second.stats.clone();
    wait_until("the second instance to read the checkpoint", WAIT, || {
        let stats = stats.clone();
        async move { (stats.snapshot().checkpoint_end_lsn > Lsn::ZERO).then_some(()) }
    })
    .await;

    // New rows make the first instance try to commit: it is fenced and stops; the second takes over.
    expected.extend(env.insert_orders("late", 20, 5, 4).await);
    let err = first
        .join()
        .await
        .expect_err("the first instance must stop with an error");
    assert!(err.is_fenced(), "expected fencing, got: {err}");
    assert!(err.to_string().contains("another instance"), "{err}");

    env.wait_for(&topic, 40, &second).await;
    second.stop().await.unwrap();
    let records = env.drain(&topic, Isolation::ReadCommitted).await;
    assert_exactly_once(&records, &expected);
    assert_per_key_order(&records, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_replication_connection_restarts_from_the_checkpoint() {
    let env = Env::new().await;
    let topic = env.topic("order");
    let mut expected = env.insert_orders("before", 30, 6, 3).await;
    let running = env.spawn(FaultPlan::none());
    env.wait_for(&topic, 30, &running).await;

    // Kill the walsender: the source fails with a retriable error, the pipeline starts again from the top.
    let killed = env
        .db
        .client
        .query_one(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1",
            &[&env.config.source.slot],
        )
        .await
        .unwrap();
    assert_eq!(
        killed.get::<_, Option<bool>>(0),
        Some(true),
        "the slot had an active walsender"
    );
    expected.extend(env.insert_orders("after", 30, 6, 3).await);
    env.wait_for(&topic, 60, &running).await;
    let outcome = running.stop().await.unwrap();
    assert!(outcome.restarts >= 1, "the pipeline restarted");
    let records = env.drain(&topic, Isolation::ReadCommitted).await;
    assert_exactly_once(&records, &expected);
    assert_per_key_order(&records, &expected);
}
