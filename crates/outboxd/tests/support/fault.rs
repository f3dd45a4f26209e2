//! Helpers of the fault-tolerance suites (`fault_*.rs`): writers that keep inserting outbox rows through
//! faults (reconnecting as needed), a pipeline environment moved onto a private Postgres cluster, and the
//! read_committed audit every fault test ends with.

use super::{assert_exactly_once, assert_per_key_order, Env, WAIT};
use outboxd_testkit::cluster::Cluster;
use outboxd_testkit::kafka::Isolation;
use outboxd_testkit::wait_until;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

// The private cluster gets the same outbox table as the shared test databases.
use super::TABLE;

/// `postgresql.conf` lines a private cluster needs for logical replication.
pub const LOGICAL: &str = "wal_level = logical\nmax_wal_senders = 10\nmax_replication_slots = 10\n";

/// Points `env`'s pipeline at `cluster` (database `postgres`): creates the outbox table, the publication and
/// the slot there. Returns the cluster's URL.
pub async fn attach(env: &mut Env, cluster: &Cluster) -> String {
    let url = cluster.url("postgres");
    let (slot, publication) = (&env.config.source.slot, &env.config.source.publication);
    // Separate statements: a slot cannot be created in a transaction that has written.
    cluster.execute(TABLE).await;
    cluster
        .execute(&format!(
            "CREATE PUBLICATION {publication} FOR TABLE public.outbox WITH (publish = 'insert')"
        ))
        .await;
    cluster
        .execute(&format!(
            "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
        ))
        .await;
    env.config.source.pg_url = url.clone();
    env.config.restart.max_restarts = Some(500);
    url
}

/// Writer tasks inserting valid `OrderCreated` rows, one to four per transaction, until stopped. Writer `w`
/// owns the aggregates `<tag>w<w>-a0..a2` and inserts ids `<tag>w<w>-<seq>` in increasing order, so the
/// per-aggregate order is the id order. A failed transaction (server restarting, connection cut) is simply
/// retried later with new ids: whether an ambiguous commit happened is settled by reading the table at the end.
#[derive(Debug)]
pub struct Writers {
    stop: Arc<AtomicBool>,
    /// Transactions committed so far (acknowledged by the server).
    pub committed: Arc<AtomicU64>,
    /// Transactions that failed (connection lost, server down).
    pub failed: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Writers {
    /// Starts `n` writers against `url`'s `public.outbox`.
    pub fn start(url: &str, tag: &str, n: usize) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let tasks = (0..n)
            .map(|w| {
                let (url, stop) = (url.to_string(), Arc::clone(&stop));
                let (committed, failed) = (Arc::clone(&committed), Arc::clone(&failed));
                let tag = format!("{tag}w{w}");
                tokio::spawn(async move {
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        match insert_batch(&url, &tag, &mut seq).await {
                            Ok(()) => committed.fetch_add(1, Ordering::Relaxed),
                            Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                        };
                        // Pacing (not synchronisation): keep the 2-core machine responsive.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        Writers {
            stop,
            committed,
            failed,
            tasks,
        }
    }

    /// Waits until `more` further transactions have committed (proves the writers go on through a fault).
    pub async fn wait_progress(&self, more: u64) {
        let target = self.committed.load(Ordering::Relaxed) + more;
        let committed = Arc::clone(&self.committed);
        wait_until(&format!("{more} more writer commits"), WAIT, || {
            let committed = Arc::clone(&committed);
            async move { (committed.load(Ordering::Relaxed) >= target).then_some(()) }
        })
        .await;
    }

    /// Stops the writers and waits for them.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
    }
}

async fn insert_batch(url: &str, tag: &str, seq: &mut u64) -> Result<(), tokio_postgres::Error> {
    let (mut client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let conn = tokio::spawn(conn);
    let tx = client.transaction().await?;
    let rows = 1 + (*seq % 4);
    for _ in 0..rows {
        let id = format!("{tag}-{:08}", *seq);
        let aggregate = format!("{tag}-a{}", *seq % 3);
        let payload = format!(r#"{{"orderId":"{aggregate}","amount":{}}}"#, *seq % 1000);
        *seq += 1;
        tx.execute(
            "INSERT INTO public.outbox (id, aggregate_type, aggregate_id, event_type, payload) \
             VALUES ($1, 'order', $2, 'OrderCreated', $3)",
            &[&id, &aggregate, &payload],
        )
        .await?;
    }
    let result = tx.commit().await;
    drop(client);
    let _ = conn.await;
    result
}

/// Every outbox id of `url`'s table whose `aggregate_type` is `order`, in per-writer insertion order.
pub async fn committed_ids(url: &str) -> Vec<String> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    let conn = tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT id FROM public.outbox WHERE aggregate_type = 'order' ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    drop(client);
    let _ = conn.await;
    rows.iter().map(|r| r.get(0)).collect()
}

/// The audit figures of one fault test.
#[derive(Debug)]
pub struct Audit {
    /// Rows audited (committed outbox rows, each seen exactly once).
    pub rows: usize,
    /// Dead letters read from the DLQ.
    pub dead_letters: usize,
    /// Records that only read_uncommitted sees: copies written by transactions that were aborted.
    pub aborted: usize,
}

/// The read_committed audit: every id of `expected` exactly once on the `order` topic, per-aggregate order
/// kept, and the DLQ empty; also counts the aborted copies that read_uncommitted sees on top.
pub async fn audit_orders(env: &Env, expected: &[String]) -> Audit {
    let topic = env.topic("order");
    let records = env.drain(&topic, Isolation::ReadCommitted).await;
    assert_exactly_once(&records, expected);
    assert_per_key_order(&records, expected);
    let dlq = env
        .drain(&env.config.kafka.dlq_topic, Isolation::ReadCommitted)
        .await;
    assert!(dlq.is_empty(), "no dead letter expected, got {}", dlq.len());
    let uncommitted = env.drain(&topic, Isolation::ReadUncommitted).await;
    Audit {
        rows: records.len(),
        dead_letters: 0,
        aborted: uncommitted.len().saturating_sub(records.len()),
    }
}
