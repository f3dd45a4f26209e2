//! Fault suite, Postgres side: a private cluster is restarted mid-stream (fast, then immediate shutdown) and
//! the replication connection is cut (`pg_terminate_backend` of the walsender), while writers keep inserting.
//! The pipeline recovers by itself each time; a read_committed audit ends the test. Needs `scripts/services up`.

mod support;

use outboxd::FaultPlan;
use outboxd_testkit::cluster::{Cluster, Setup};
use std::sync::atomic::Ordering;
use support::fault::{attach, audit_orders, committed_ids, Writers, LOGICAL};
use support::Env;

/// Kills the walsender streaming `slot`; true when there was one.
async fn kill_walsender(cluster: &Cluster, slot: &str) -> bool {
    let (client, conn) = tokio_postgres::connect(&cluster.url("postgres"), tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap();
    drop(client);
    let _ = conn.await;
    row.get::<_, Option<bool>>(0) == Some(true)
}

/// The pid of the walsender streaming `slot`, if any.
async fn walsender_pid(cluster: &Cluster, slot: &str) -> Option<i32> {
    let (client, conn) = tokio_postgres::connect(&cluster.url("postgres"), tokio_postgres::NoTls)
        .await
        .ok()?;
    let conn = tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .ok()?;
    drop(client);
    let _ = conn.await;
    row.get::<_, Option<i32>>(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarts_and_a_cut_replication_connection_lose_and_duplicate_nothing() {
    let cluster = Cluster::start(Setup {
        conf: LOGICAL,
        ..Setup::default()
    })
    .await;
    let mut env = Env::new().await;
    let url = attach(&mut env, &cluster).await;
    let slot = env.config.source.slot.clone();
    let writers = Writers::start(&url, "pg", 3);
    let running = env.spawn_with(env.config.clone(), FaultPlan::none());
    env.wait_for(&env.topic("order"), 20, &running).await;

    let mut last_walsender = None;
    for fault in ["fast", "immediate", "walsender", "immediate", "walsender", "fast"] {
        // The pipeline streams again (a new walsender holds the slot, and it produced since) before the next
        // fault, so that each fault costs its own restart.
        let produced = running.stats.snapshot().events_produced;
        writers.wait_progress(30).await;
        let walsender =
            outboxd_testkit::wait_until("a new walsender to stream the slot", support::WAIT, || {
                let (stats, cluster, slot) = (running.stats.clone(), &cluster, &slot);
                async move {
                    let pid = walsender_pid(cluster, slot).await?;
                    (Some(pid) != last_walsender && stats.snapshot().events_produced > produced)
                        .then_some(pid)
                }
            })
            .await;
        last_walsender = Some(walsender);
        match fault {
            "walsender" => assert!(
                kill_walsender(&cluster, &slot).await,
                "the slot had an active walsender"
            ),
            mode => cluster.restart(mode).await,
        }
        eprintln!("fault injected: {fault}");
    }
    writers.wait_progress(30).await;
    let failed = writers.failed.load(Ordering::Relaxed);
    writers.stop().await;

    let expected = committed_ids(&url).await;
    env.wait_for(&env.topic("order"), expected.len(), &running).await;
    let outcome = running.stop().await.unwrap();
    assert!(
        outcome.restarts >= 6,
        "the pipeline restarted after each fault: {}",
        outcome.restarts
    );
    let audit = audit_orders(&env, &expected).await;
    eprintln!(
        "FIGURES fault_postgres: faults=6 (2 fast restarts, 2 immediate restarts, 2 walsender kills) \
         restarts={} rows_audited={} duplicates=0 lost=0 writer_txns_failed={failed}",
        outcome.restarts, audit.rows
    );
}
