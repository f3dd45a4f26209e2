//! The pipeline core's order, on in-memory endpoints (no service running): commit before confirm, skipping
//! through the checkpoint, shutdown inside a Postgres transaction, restarts after an abortable failure (with
//! the backoff reset after progress), dead letters in the same transaction as the events around them.

use super::fault::FaultPlan;
use super::memory::{event, wal, CommittedTxn, Memory, Op};
use super::shutdown::Shutdown;
use super::stream::RunContext;
use super::{run_attempts, PipelineConfig, PipelineError, RestartConfig, Restarts, StopReason};
use crate::http::Health;
use outboxd_core::{Lsn, SlotOrigin, TxEvent};
use outboxd_record::test_encoder::FakeEncoder;
use outboxd_record::Stage;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

const TOPIC: &str = "outbox.event.order";
const DLQ: &str = "outbox.dlq";

/// Runs the core on `memory` until `shutdown` resolves; returns why it stopped and its restarts.
async fn run(
    memory: &Memory,
    restart: RestartConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(StopReason, u32), PipelineError> {
    let config = PipelineConfig {
        restart,
        ..PipelineConfig::default()
    };
    run_config(memory, config, shutdown).await
}

/// [`run`] with a whole configuration.
async fn run_config(
    memory: &Memory,
    config: PipelineConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(StopReason, u32), PipelineError> {
    let stage = Stage::new(&config.kafka, FakeEncoder::default()).unwrap();
    let (faults, health) = (FaultPlan::default(), Arc::new(Health::default()));
    let basis = tokio::sync::watch::channel(None).0;
    let ctx = RunContext {
        config: &config,
        stage: &stage,
        endpoints: memory,
        faults: &faults,
        health: &health,
        basis: &basis,
    };
    let shutdown = std::pin::pin!(shutdown);
    let mut shutdown = Shutdown::new(shutdown);
    let mut restarts = Restarts::new(&config.restart);
    let reason = tokio::time::timeout(
        Duration::from_secs(60),
        run_attempts(&ctx, &mut restarts, &mut shutdown),
    )
    .await
    .expect("the pipeline core stopped within the deadline")?;
    Ok((reason, restarts.total))
}

fn quick_restarts() -> RestartConfig {
    RestartConfig {
        initial_backoff_ms: 100,
        max_backoff_ms: 10_000,
        ..RestartConfig::default()
    }
}

/// The event ids of every committed transaction, in order.
fn committed_ids(memory: &Memory) -> Vec<String> {
    let world = memory.world();
    world
        .committed
        .iter()
        .flat_map(|t| &t.records)
        .map(|(_, id)| id.clone())
        .collect()
}

/// What the three-transaction WAL `[a] [b c] [d]` commits, once each.
fn three_txns() -> Vec<CommittedTxn> {
    vec![
        txn(&[(TOPIC, "a")], 100),
        txn(&[(TOPIC, "b"), (TOPIC, "c")], 200),
        txn(&[(TOPIC, "d")], 300),
    ]
}

fn txn(records: &[(&str, &str)], checkpoint: u64) -> CommittedTxn {
    CommittedTxn {
        records: records
            .iter()
            .map(|(t, id)| (t.to_string(), id.to_string()))
            .collect(),
        checkpoint: Lsn(checkpoint),
        origin: None,
        backfill: None,
    }
}

/// Every confirmation comes after the commit of a checkpoint at that position, and they only move forward.
fn assert_commit_before_confirm(log: &[Op]) {
    let mut committed = Vec::new();
    let mut last = Lsn::ZERO;
    for op in log {
        match op {
            Op::Commit(end) => committed.push(*end),
            Op::Confirm(end) => {
                assert!(
                    committed.contains(end),
                    "{end} confirmed before its commit: {log:?}"
                );
                assert!(*end > last, "confirmations move forward: {log:?}");
                last = *end;
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn commits_come_before_confirms() {
    let memory = Memory::new(wal(&[&["a"], &["b", "c"], &["d"]]));
    let (reason, restarts) = run(&memory, quick_restarts(), memory.logged(Op::Confirm(Lsn(300))))
        .await
        .unwrap();
    assert_eq!((reason, restarts), (StopReason::Shutdown, 0));
    let world = memory.world();
    assert_commit_before_confirm(&world.log);
    assert_eq!(world.committed, three_txns());
}

#[tokio::test]
async fn a_restart_skips_through_the_checkpoint() {
    let memory = Memory::new(wal(&[&["a"], &["b", "c"], &["d"]]));
    {
        let mut world = memory.world();
        // An earlier run committed the first transaction; this source hands it out again all the same.
        world.committed.push(txn(&[(TOPIC, "a")], 100));
        world.source_skips = false;
    }
    run(&memory, quick_restarts(), memory.logged(Op::Confirm(Lsn(300))))
        .await
        .unwrap();
    let world = memory.world();
    assert!(world.log.contains(&Op::StartSource(Lsn(100))), "{:?}", world.log);
    assert!(
        !world.log.contains(&Op::Produce("a".into())),
        "a was skipped: {:?}",
        world.log
    );
    assert_commit_before_confirm(&world.log);
    drop(world);
    assert_eq!(committed_ids(&memory), ["a", "b", "c", "d"], "each event once");
}

#[tokio::test]
async fn shutdown_inside_a_postgres_transaction_aborts_and_confirms_nothing_of_it() {
    let mut wal = wal(&[&["a"], &["b", "c"]]);
    // The second transaction has not ended yet when shutdown comes.
    assert!(matches!(wal[1].pop(), Some(TxEvent::Commit(_))));
    let memory = Memory::new(wal);
    let (reason, _) = run(&memory, quick_restarts(), memory.logged(Op::Produce("c".into())))
        .await
        .unwrap();
    assert_eq!(reason, StopReason::Shutdown);
    let world = memory.world();
    assert_eq!(world.committed, vec![txn(&[(TOPIC, "a")], 100)]);
    let after_c: Vec<&Op> = world
        .log
        .iter()
        .skip_while(|op| **op != Op::Produce("c".into()))
        .skip(1)
        .collect();
    assert_eq!(
        after_c,
        [&Op::Abort],
        "aborted, nothing committed or confirmed after"
    );
    assert_eq!(
        world.log.iter().filter(|op| matches!(op, Op::Confirm(_))).count(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn an_abortable_failure_restarts_from_the_checkpoint() {
    let memory = Memory::new(wal(&[&["a"], &["b", "c"], &["d"]]));
    memory.world().failing_commits.insert(2);
    let (reason, restarts) = run(&memory, quick_restarts(), memory.logged(Op::Confirm(Lsn(300))))
        .await
        .unwrap();
    assert_eq!((reason, restarts), (StopReason::Shutdown, 1));
    let world = memory.world();
    assert_commit_before_confirm(&world.log);
    assert!(
        world.log.contains(&Op::StartSource(Lsn(100))),
        "restarted from the checkpoint"
    );
    let want = vec![
        txn(&[(TOPIC, "a")], 100),
        txn(&[(TOPIC, "b"), (TOPIC, "c")], 200),
        txn(&[(TOPIC, "d")], 300),
    ];
    assert_eq!(
        world.committed, want,
        "the aborted transaction once, after the restart"
    );
}

#[tokio::test(start_paused = true)]
async fn the_backoff_resets_after_progress() {
    let memory = Memory::new(wal(&[&["a"], &["b"], &["c"]]));
    // Commits 1 and 2 fail (no progress), 3 succeeds, 4 and 5 fail, then all succeed.
    memory.world().failing_commits.extend([1, 2, 4, 5]);
    let restart = RestartConfig {
        max_restarts: Some(2),
        ..quick_restarts()
    };
    let (_, restarts) = run(&memory, restart, memory.logged(Op::Confirm(Lsn(300))))
        .await
        .expect("two failures in a row at most: the series restarts after the commit");
    assert_eq!(restarts, 4);
    let world = memory.world();
    let starts: Vec<tokio::time::Instant> = world
        .log
        .iter()
        .filter_map(|op| match op {
            Op::StartSink(at) => Some(*at),
            _ => None,
        })
        .collect();
    let gaps: Vec<u128> = starts.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    assert_eq!(
        gaps,
        [100, 200, 100, 200],
        "doubling, and back to the initial backoff after progress"
    );
    drop(world);
    assert_eq!(committed_ids(&memory), ["a", "b", "c"]);
}

#[tokio::test(start_paused = true)]
async fn restarts_without_progress_give_up_at_the_limit() {
    let memory = Memory::new(wal(&[&["a"]]));
    memory.world().failing_commits.extend(1..=10);
    let restart = RestartConfig {
        max_restarts: Some(2),
        ..quick_restarts()
    };
    let err = run(&memory, restart, std::future::pending()).await.unwrap_err();
    assert!(
        matches!(err, PipelineError::TooManyRestarts { restarts: 2, .. }),
        "{err}"
    );
    let world = memory.world();
    assert!(world.committed.is_empty());
    assert!(
        !world.log.iter().any(|op| matches!(op, Op::Confirm(_))),
        "nothing confirmed"
    );
}

#[tokio::test(start_paused = true)]
async fn dead_letters_commit_in_the_same_transaction_as_the_events_around_them() {
    let memory = Memory::new(wal(&[&["a", "bad1", "b"], &["c"]]));
    // The first commit fails: the dead letter must come back with its transaction, once.
    memory.world().failing_commits.insert(1);
    run(&memory, quick_restarts(), memory.logged(Op::Confirm(Lsn(200))))
        .await
        .unwrap();
    let world = memory.world();
    let want = vec![
        txn(&[(TOPIC, "a"), (DLQ, "bad1"), (TOPIC, "b")], 100),
        txn(&[(TOPIC, "c")], 200),
    ];
    assert_eq!(world.committed, want);
    let dead = Op::DeadLetter("bad1".into(), "schema_mismatch");
    assert_eq!(
        world.log.iter().filter(|op| **op == dead).count(),
        2,
        "written in both attempts"
    );
    assert_commit_before_confirm(&world.log);
}

fn origin() -> SlotOrigin {
    SlotOrigin {
        snapshot: "10:10:".into(),
        committed: String::new(),
        lsn: Lsn(50),
        time: "2026-12-02T00:00:00Z".into(),
        rows: 5,
    }
}

/// A world whose slot this run creates, with five rows before it (`b1`..`b5`) and a WAL `[s1] [s2]`.
fn world_with_rows_before_the_slot() -> Memory {
    let memory = Memory::new(wal(&[&["s1"], &["s2"]]));
    {
        let mut world = memory.world();
        world.created = Some(origin());
        world.before_slot = ["b1", "b2", "b3", "b4", "b5"]
            .iter()
            .map(|id| (id.to_string(), event(id, Lsn::ZERO)))
            .collect();
    }
    memory
}

fn backfilling() -> PipelineConfig {
    let mut config = PipelineConfig {
        restart: quick_restarts(),
        ..PipelineConfig::default()
    };
    config.source.backfill.enabled = true;
    config
}

#[tokio::test(start_paused = true)]
async fn the_backfill_relays_the_rows_before_the_slot_once_across_an_abort_then_streams() {
    let memory = world_with_rows_before_the_slot();
    // Commit 1 records the origin, 2 holds b1 b2, 3 (b3 b4) aborts: the restart resumes after b2.
    memory.world().failing_commits.insert(3);
    let (_, restarts) = run_config(&memory, backfilling(), memory.logged(Op::Confirm(Lsn(200))))
        .await
        .unwrap();
    assert_eq!(restarts, 1);
    assert_eq!(committed_ids(&memory), ["b1", "b2", "b3", "b4", "b5", "s1", "s2"]);
    let world = memory.world();
    assert_commit_before_confirm(&world.log);
    assert_eq!(
        (
            world.committed[0].records.len(),
            world.committed[0].origin.clone()
        ),
        (0, Some(origin())),
        "the origin is recorded first, on its own"
    );
    assert!(world.committed.iter().all(|t| t.origin == Some(origin())));
    let progress: Vec<Option<(u64, bool)>> = world
        .committed
        .iter()
        .map(|t| t.backfill.as_ref().map(|p| (p.rows, p.done)))
        .collect();
    assert_eq!(
        progress,
        [
            None,
            Some((2, false)),
            Some((4, false)),
            Some((5, true)),
            Some((5, true)),
            Some((5, true))
        ],
        "each chunk's progress commits with its rows, and stays in later checkpoints"
    );
    let started = world.log.iter().position(|op| *op == Op::StartSource(Lsn::ZERO));
    let last_backfilled = world.log.iter().rposition(|op| *op == Op::Produce("b5".into()));
    assert!(
        started > last_backfilled,
        "the stream starts after the backfill: {:?}",
        world.log
    );
}

#[tokio::test(start_paused = true)]
async fn without_backfill_the_origin_is_recorded_and_the_rows_before_the_slot_are_not_relayed() {
    let memory = world_with_rows_before_the_slot();
    run(&memory, quick_restarts(), memory.logged(Op::Confirm(Lsn(200))))
        .await
        .unwrap();
    assert_eq!(committed_ids(&memory), ["s1", "s2"]);
    assert!(memory
        .world()
        .committed
        .iter()
        .all(|t| t.origin == Some(origin()) && t.backfill.is_none()));
}

#[tokio::test(start_paused = true)]
async fn a_backfill_without_a_recorded_origin_halts_naming_the_fix() {
    let memory = world_with_rows_before_the_slot();
    memory.world().created = None;
    let e = run_config(&memory, backfilling(), std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(e, PipelineError::Config(_)), "{e:?}");
    assert!(e.to_string().contains("outboxd slot drop"), "{e}");
    assert!(committed_ids(&memory).is_empty());
}

/// Commits that stay in flight for a while: the events behind them are decided meanwhile (the counter says
/// so), and written after them in stream order, exactly once, across aborted commits too.
#[test]
fn events_decided_during_a_commit_are_written_after_it_in_order() {
    let ids: Vec<Vec<String>> = (0..300)
        .map(|t| {
            (0..1 + t % 3)
                .map(|n| match (t * 7 + n) % 31 {
                    0 => format!("bad{t}-{n}"),
                    _ => format!("e{t}-{n}"),
                })
                .collect()
        })
        .collect();
    let strs: Vec<Vec<&str>> = ids
        .iter()
        .map(|t| t.iter().map(String::as_str).collect())
        .collect();
    let txns: Vec<&[&str]> = strs.iter().map(Vec::as_slice).collect();
    let memory = Memory::new(wal(&txns));
    {
        let mut world = memory.world();
        world.commit_yields = 40;
        world.txns_per_commit = 5; // 300 is a multiple: the memory sink has no linger
        world.failing_commits.extend([3, 8]);
    }
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let last = Lsn(txns.len() as u64 * 100);
    let (reason, restarts) = metrics::with_local_recorder(&recorder, || {
        runtime.block_on(run(&memory, quick_restarts(), memory.logged(Op::Confirm(last))))
    })
    .unwrap();
    assert_eq!((reason, restarts), (StopReason::Shutdown, 2));

    let want: Vec<(String, String)> = ids
        .iter()
        .flatten()
        .map(|id| {
            let topic = if id.starts_with("bad") { DLQ } else { TOPIC };
            (topic.to_string(), id.clone())
        })
        .collect();
    let world = memory.world();
    let got: Vec<(String, String)> = world.committed.iter().flat_map(|t| t.records.clone()).collect();
    assert_eq!(got, want, "every event once, in stream order");
    assert_commit_before_confirm(&world.log);
    let rendered = handle.render();
    let ahead: f64 = rendered
        .lines()
        .find_map(|l| l.strip_prefix("outboxd_events_decided_during_commit_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no decided-ahead counter in:\n{rendered}"));
    assert!(
        ahead >= 100.0,
        "events were decided while commits were in flight: {ahead}"
    );
}
