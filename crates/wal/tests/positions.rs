//! The WAL source against a real Postgres, positions and the slot: confirmations, restarts, skip_through,
//! idle confirmation, a busy slot, and how the reader stops. Each test has its own database, slot and
//! publication.

mod common;

use common::*;
use outboxd_core::Lsn;
use outboxd_wal::{slot_confirmed_flush_lsn, SlotBusy, Source, WalError};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

#[tokio::test]
async fn restart_after_a_partial_confirmation_loses_and_repeats_nothing() {
    let db = outbox_db().await;
    let config = config(&db);
    let (handle, mut rx) = Source::start(config.clone(), Lsn::ZERO).await.unwrap();
    insert_txns(&db, "r", 10).await;
    let first = collect(&mut rx, 10, T).await;
    handle.confirm(first[4].commit.end_lsn);
    handle.shutdown().await.unwrap();
    let slot = slot_confirmed_flush_lsn(&db.url, &config.slot)
        .await
        .unwrap()
        .unwrap();
    assert!(
        slot >= first[4].commit.end_lsn && slot < first[5].commit.commit_lsn,
        "slot at {slot}"
    );

    // No checkpoint (skip_through 0): Postgres alone decides what comes again.
    let (handle, mut rx) = Source::start(config, Lsn::ZERO).await.unwrap();
    let second = collect(&mut rx, 5, T).await;
    let keys: Vec<_> = second.iter().flat_map(|t| t.keys()).collect();
    assert_eq!(keys, ["r-6", "r-7", "r-8", "r-9", "r-10"]);
    for (a, b) in first[5..].iter().zip(&second) {
        assert_eq!((a.commit.xid, a.commit.end_lsn), (b.commit.xid, b.commit.end_lsn));
    }
    assert_nothing_more(&mut rx, Duration::from_millis(300)).await;
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn skip_through_is_honoured_and_confirmable() {
    let db = outbox_db().await;
    let config = config(&db);
    let (handle, mut rx) = Source::start(config.clone(), Lsn::ZERO).await.unwrap();
    insert_txns(&db, "s", 10).await;
    let first = collect(&mut rx, 10, T).await;
    handle.shutdown().await.unwrap(); // nothing confirmed: Postgres resends all ten
    let checkpoint = first[4].commit.end_lsn;

    let (handle, mut rx) = Source::start(config.clone(), checkpoint).await.unwrap();
    let second = collect(&mut rx, 5, T).await;
    let keys: Vec<_> = second.iter().flat_map(|t| t.keys()).collect();
    assert_eq!(keys, ["s-6", "s-7", "s-8", "s-9", "s-10"]);
    let s = handle.progress().stats;
    assert_eq!((s.skipped_transactions, s.skipped_events), (5, 5));
    // Without any sink confirmation, the slot moves up to the checkpoint, and no further.
    let slot = wait_slot_confirmed(&db, &config.slot, checkpoint).await;
    assert!(slot < first[5].commit.commit_lsn, "slot at {slot}");
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_idle_outbox_on_a_busy_database_does_not_retain_wal() {
    let db = outbox_db().await;
    db.client
        .batch_execute("CREATE TABLE busy (id int, note text)")
        .await
        .unwrap();
    let config = config(&db);
    let (handle, mut rx) = Source::start(config.clone(), Lsn::ZERO).await.unwrap();
    exec(
        &db,
        &[
            "SET synchronous_commit = off",
            "DO $$ BEGIN FOR i IN 1..5000 LOOP INSERT INTO busy VALUES (i, 'x'); COMMIT; END LOOP; END $$",
            "SET synchronous_commit = on",
            "INSERT INTO busy VALUES (0, 'flush')",
        ],
    )
    .await;
    let after = insert_lsn(&db).await;
    // A keepalive carries the walsender's position; at a WAL page boundary the insert position is one page
    // header (at most 40 bytes) beyond the end of the last record.
    let confirmed = wait_slot_confirmed(&db, &config.slot, Lsn(after.0 - 40)).await;
    assert!(confirmed >= Lsn(after.0 - 40));
    assert_eq!(handle.progress().stats.events, 0);
    assert_nothing_more(&mut rx, Duration::from_millis(100)).await;
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_busy_slot_is_never_stolen() {
    let db = outbox_db().await;
    let config = config(&db);
    let (first, mut rx) = Source::start(config.clone(), Lsn::ZERO).await.unwrap();

    let exit = outboxd_wal::SourceConfig {
        on_slot_busy: SlotBusy::Exit,
        ..config.clone()
    };
    let err = Source::start(exit, Lsn::ZERO).await.map(|_| ()).unwrap_err();
    assert!(
        matches!(&err, WalError::SlotBusy { pid, .. } if *pid > 0),
        "{err}"
    );
    assert!(err.to_string().contains("application_name outboxd"), "{err}");

    let short = outboxd_wal::SourceConfig {
        slot_busy_timeout_ms: Some(300),
        ..config.clone()
    };
    assert!(matches!(
        Source::start(short, Lsn::ZERO).await.map(|_| ()),
        Err(WalError::SlotBusy { .. })
    ));

    // A waiting instance takes over once the first one stops.
    let waiting = tokio::spawn(Source::start(config.clone(), Lsn::ZERO));
    db.client
        .batch_execute("INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) VALUES ('o', 'x', 'E', '{}')")
        .await
        .unwrap();
    let txns = collect(&mut rx, 1, T).await;
    assert!(
        !waiting.is_finished(),
        "the second instance waits while the first streams"
    );
    first.confirm(txns[0].commit.end_lsn);
    first.shutdown().await.unwrap();
    let (second, mut rx2) = waiting.await.unwrap().expect("the waiting instance starts");
    db.client
        .batch_execute("INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) VALUES ('o', 'y', 'E', '{}')")
        .await
        .unwrap();
    assert_eq!(collect(&mut rx2, 1, T).await[0].keys(), ["y"]);
    second.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_receiver_ending_means_the_reader_stopped() {
    let db = outbox_db().await;
    let (mut handle, rx) = Source::start(config(&db), Lsn::ZERO).await.unwrap();
    drop(rx);
    db.client
        .batch_execute("INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) VALUES ('o', 'x', 'E', '{}')")
        .await
        .unwrap();
    tokio::time::timeout(T, handle.join())
        .await
        .expect("the reader stops")
        .expect("without an error");
    // A terminated walsender is a retriable error for the next instance.
    let config = config(&db);
    let (mut handle, mut rx) = Source::start(config.clone(), Lsn::ZERO).await.unwrap();
    db.client
        .execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1",
            &[&config.slot],
        )
        .await
        .unwrap();
    let err = tokio::time::timeout(T, handle.join())
        .await
        .expect("the reader stops")
        .unwrap_err();
    assert!(err.is_retriable(), "{err}");
    assert!(tokio::time::timeout(T, rx.recv())
        .await
        .expect("the channel ends")
        .is_none());
}
