//! Retention (`source.retention`) on the real services and the real binary: it deletes relayed rows older
//! than the age, and never a row whose event is not yet committed in Kafka. Checked again and again while it
//! runs: every row a writer committed is still in the table or already on its topic (`read_committed`). Also
//! through a stopped relay (rows written meanwhile stay until relayed), a long-running transaction whose rows
//! were created before the cut-off and commit after it, and rows that predate the slot (never relayed, never
//! deleted). Needs `scripts/services up`.

mod support;

use outboxd_testkit::kafka::Isolation;
use outboxd_testkit::{unique_name, wait_until};
use std::collections::{BTreeMap, BTreeSet};
use support::binary::{LogFile, Outboxd};
use support::fault::Writers;
use support::{metric, Env, WAIT};

/// What the table and the topic hold, read in that order.
struct Seen {
    table: BTreeSet<String>,
    kafka: BTreeSet<String>,
}

impl Seen {
    async fn read(env: &Env) -> Seen {
        let rows = env
            .db
            .client
            .query("SELECT id FROM public.outbox", &[])
            .await
            .unwrap();
        let table = rows.iter().map(|r| r.get(0)).collect();
        // Read after the table: a row deleted before the table was read was relayed before that, if ever.
        let records = env.drain(&env.topic("order"), Isolation::ReadCommitted).await;
        let kafka = support::ids(&records).into_iter().collect();
        Seen { table, kafka }
    }

    /// Rows deleted (relayed and gone from the table).
    fn deleted(&self, prefix: &str) -> usize {
        self.kafka
            .iter()
            .filter(|id| id.starts_with(prefix) && !self.table.contains(*id))
            .count()
    }

    /// The invariant: each writer's rows up to the newest one in the table (its ids are consecutive, each
    /// committed before the next) are all in the table or on the topic; the rows that predate the slot are
    /// all in the table and none on the topic. (Newer rows on the topic are not counted: a drain of several
    /// partitions is not one consistent cut.)
    fn assert_nothing_lost(&self, pre: usize) {
        let mut max: BTreeMap<&str, u64> = BTreeMap::new();
        for id in &self.table {
            if let Some((writer, seq)) = id.strip_prefix("live").and_then(|r| r.split_once('-')) {
                let seq: u64 = seq.parse().unwrap();
                let m = max.entry(writer).or_default();
                *m = (*m).max(seq);
            }
        }
        for (writer, max) in max {
            for seq in 0..=max {
                let id = format!("live{writer}-{seq:08}");
                assert!(
                    self.table.contains(&id) || self.kafka.contains(&id),
                    "{id} was deleted but is not in Kafka"
                );
            }
        }
        let pre_in_table = self.table.iter().filter(|id| id.starts_with("pre-")).count();
        assert_eq!(pre_in_table, pre, "rows that predate the slot are never deleted");
        assert!(!self.kafka.iter().any(|id| id.starts_with("pre-")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_deletes_only_relayed_rows() {
    let mut env = Env::new().await;
    // outboxd creates the slot (it records when, which bounds the stream rows).
    env.config.source.slot = unique_name("ret_slot");
    env.config.source.retention.max_age_s = Some(1);
    env.config.source.retention.interval_ms = 200;
    env.config.source.retention.batch_rows = 50;
    env.config.source.retention.confirm_timeout_ms = 3_000;
    let metrics_port = outboxd_testkit::cluster::free_port();
    env.config.observability.listen = format!("127.0.0.1:{metrics_port}");
    const PRE: usize = 20;
    env.insert_orders("pre", PRE, 5, 2).await;

    let config = env.config_file(&env.config, "retention");
    let log = LogFile::new("retention");
    let mut relay = Outboxd::spawn(&config, &log.path, None);
    let writers = Writers::start(&env.db.url, "live", 1);
    let check = |want: &'static str, done: fn(&Seen) -> bool| {
        let env = &env;
        async move {
            wait_until(want, WAIT, || async {
                let seen = Seen::read(env).await;
                seen.assert_nothing_lost(PRE);
                done(&seen).then_some(())
            })
            .await
        }
    };
    // Creating a logical slot waits for the transactions running then: open the long one once it exists.
    check("the relay streams", |s| !s.kafka.is_empty()).await;
    // A long-running transaction: its rows are created now, long before they commit (the sweeps below run
    // while it is open).
    let mut long = env.db.connect().await;
    let long_txn = long.transaction().await.unwrap();
    for i in 0..5 {
        long_txn
            .execute(
                "INSERT INTO public.outbox (id, aggregate_type, aggregate_id, event_type, payload) \
                 VALUES ($1, 'order', 'long', 'OrderCreated', '{\"orderId\":\"l\",\"amount\":1}')",
                &[&format!("long-{i}")],
            )
            .await
            .unwrap();
    }

    check("retention deletes relayed rows", |s| s.deleted("live") >= 100).await;

    // The long transaction commits after the cut-off passed its rows' creation time: they stay until relayed.
    long_txn.commit().await.unwrap();
    check("the long transaction's rows relayed, then deleted", |s| {
        s.deleted("long-") == 5
    })
    .await;

    // A stopped relay: rows written meanwhile are not relayed, and stay; after the restart they go.
    relay.terminate();
    assert!(relay.wait(WAIT).await.success());
    writers.wait_progress(30).await;
    let stopped = Seen::read(&env).await;
    stopped.assert_nothing_lost(PRE);
    let unrelayed = stopped
        .table
        .iter()
        .filter(|id| !stopped.kafka.contains(*id))
        .count();
    assert!(unrelayed > PRE, "rows were written while the relay was stopped");
    let mut relay = Outboxd::spawn(&config, &log.path, None);
    let before = stopped.deleted("live");
    let deleted_more = move |s: &Seen| s.deleted("live") >= before + 60;
    wait_until("retention goes on after the restart", WAIT, || async {
        let seen = Seen::read(&env).await;
        seen.assert_nothing_lost(PRE);
        deleted_more(&seen).then_some(())
    })
    .await;
    writers.stop().await;
    let deleted = metric(metrics_port, "outboxd_retention_deleted_rows_total").await;
    assert!(deleted > 0.0, "this instance deleted rows: {deleted}");
    relay.terminate();
    assert!(relay.wait(WAIT).await.success());
    Seen::read(&env).await.assert_nothing_lost(PRE);
}
