//! Helpers for the WAL source's integration tests: a fresh database with the outbox table, a source config
//! with short intervals, and collecting whole transactions from the channel with a deadline; a throwaway
//! cluster of its own ([`cluster`]) for server settings the shared one must not change.

#![allow(dead_code)]

pub mod checks;
pub mod cluster;

use outboxd_core::{Commit, Lsn, OutboxEvent, TxBegin, TxEvent};
use outboxd_testkit::{unique_name, wait_until, Services, TestDb};
use outboxd_wal::{slot_confirmed_flush_lsn, SourceConfig};
use std::time::Duration;
use tokio::sync::mpsc::Receiver;

pub const OUTBOX_SQL: &str = include_str!("../../../../config/outbox.sql");

/// A fresh database holding the default outbox table.
pub async fn outbox_db() -> TestDb {
    let db = TestDb::create(&Services::from_env()).await;
    db.client
        .batch_execute(OUTBOX_SQL)
        .await
        .expect("creating the outbox table");
    db
}

/// A config for `db` with a fresh slot and publication, and short intervals.
pub fn config(db: &TestDb) -> SourceConfig {
    SourceConfig {
        pg_url: db.url.clone(),
        slot: unique_name("slot"),
        publication: unique_name("pub"),
        status_interval_ms: 50,
        shutdown_timeout_ms: 5_000,
        slot_busy_timeout_ms: Some(20_000),
        ..SourceConfig::default()
    }
}

/// One received transaction.
#[derive(Debug)]
pub struct Txn {
    pub begin: TxBegin,
    pub events: Vec<OutboxEvent>,
    pub commit: Commit,
}

impl Txn {
    /// The aggregate ids of its events, in order.
    pub fn keys(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|e| e.aggregate_id.clone().unwrap_or_default())
            .collect()
    }
}

/// Receives `n` whole transactions, checking the Begin/Event/Commit structure; panics after `timeout`.
pub async fn collect(rx: &mut Receiver<TxEvent>, n: usize, timeout: Duration) -> Vec<Txn> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut txns = Vec::with_capacity(n);
    let mut open: Option<(TxBegin, Vec<OutboxEvent>)> = None;
    while txns.len() < n {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out after {timeout:?} with {} of {n} transactions",
                    txns.len()
                )
            })
            .expect("the source stopped");
        match event {
            TxEvent::Begin(b) => {
                assert!(open.is_none(), "Begin {b:?} inside an open transaction");
                open = Some((b, Vec::new()));
            }
            TxEvent::Event(e) => open.as_mut().expect("an event outside a transaction").1.push(e),
            TxEvent::Commit(c) => {
                let (begin, events) = open.take().expect("a Commit without a Begin");
                assert_eq!((c.xid, c.commit_lsn), (begin.xid, begin.final_lsn));
                assert_eq!(
                    c.events,
                    events.len() as u64,
                    "Commit.events counts the transaction's events"
                );
                assert!(!events.is_empty(), "an emitted transaction carries events");
                txns.push(Txn {
                    begin,
                    events,
                    commit: c,
                });
            }
        }
    }
    txns
}

/// Asserts that nothing more arrives within `quiet` (used after the expected events have all arrived).
pub async fn assert_nothing_more(rx: &mut Receiver<TxEvent>, quiet: Duration) {
    if let Ok(Some(event)) = tokio::time::timeout(quiet, rx.recv()).await {
        panic!("unexpected event: {event:?}");
    }
}

/// Waits until the slot's confirmed_flush_lsn is at least `lsn`; returns it.
pub async fn wait_slot_confirmed(db: &TestDb, slot: &str, lsn: Lsn) -> Lsn {
    wait_until(
        &format!("slot {slot} confirmed_flush_lsn >= {lsn}"),
        Duration::from_secs(20),
        || async {
            slot_confirmed_flush_lsn(&db.url, slot)
                .await
                .expect("slot query")
                .filter(|l| *l >= lsn)
        },
    )
    .await
}

/// The server's current WAL insert position.
pub async fn insert_lsn(db: &TestDb) -> Lsn {
    let row = db
        .client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .expect("insert lsn");
    row.get::<_, String>(0).parse().expect("an LSN")
}

/// Inserts one outbox row per transaction, `n` times, with ids `{prefix}-{i}` (i from 1).
pub async fn insert_txns(db: &TestDb, prefix: &str, n: usize) {
    // Each statement on its own: a multi-statement query string runs as one transaction, where DO may not
    // COMMIT.
    let client = db.connect().await;
    client
        .batch_execute("SET synchronous_commit = off")
        .await
        .unwrap();
    let sql = format!(
        "DO $$ BEGIN FOR i IN 1..{n} LOOP
           INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload)
           VALUES ('order', '{prefix}-' || i, 'Created', jsonb_build_object('i', i));
           COMMIT;
         END LOOP; END $$"
    );
    client.batch_execute(&sql).await.expect("inserting transactions");
}

/// Runs each statement as its own transaction, in order.
pub async fn exec(db: &TestDb, statements: &[&str]) {
    for sql in statements {
        db.client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}
