//! Real crashes: a child process (this test binary, running the ignored `crash_child` test) runs the pipeline
//! with `OUTBOXD_FAULT` set and dies by `std::process::abort()` mid-transaction, before a commit, and between a
//! commit and its confirmation. A clean run afterwards must deliver every row exactly once to `read_committed`.
//! This is also the pattern for binary-level crash tests: set `OUTBOXD_FAULT` on the child, expect SIGABRT.

mod support;

use outboxd::{FaultPlan, PipelineConfig};
use outboxd_testkit::kafka::Isolation;
use std::os::unix::process::ExitStatusExt;
use support::{assert_exactly_once, assert_per_key_order, Env, WAIT};

const CONFIG_VAR: &str = "OUTBOXD_CRASH_CHILD_CONFIG";

/// Runs `crash_child` in a child process with this fault; returns once it died.
async fn crash(config: &PipelineConfig, fault: &str) {
    let exe = std::env::current_exe().unwrap();
    let mut child = tokio::process::Command::new(exe)
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CONFIG_VAR, serde_json::to_string(config).unwrap())
        .env("OUTBOXD_FAULT", fault)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap_or_else(|_| panic!("the child with OUTBOXD_FAULT={fault} did not crash in time"))
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(6),
        "OUTBOXD_FAULT={fault}: expected SIGABRT, got {status}"
    );
}

#[tokio::test]
#[ignore = "the child process of the crash tests (needs OUTBOXD_CRASH_CHILD_CONFIG)"]
async fn crash_child() {
    let config: PipelineConfig = serde_json::from_str(&std::env::var(CONFIG_VAR).unwrap()).unwrap();
    let result = outboxd::run(config, std::future::pending()).await;
    panic!("the pipeline was expected to abort the process, it returned {result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crashes_at_every_point_then_a_clean_run_delivers_each_row_once() {
    let env = Env::new().await;
    let topic = env.topic("order");
    let mut expected = env.insert_orders("first", 40, 10, 4).await;

    crash(&env.config, "crash_mid_txn:15").await;
    crash(&env.config, "crash_before_commit:1").await;
    expected.extend(env.insert_orders("second", 20, 5, 4).await);
    crash(&env.config, "crash_after_commit:1").await;
    let committed_before = env.drain(&topic, Isolation::ReadCommitted).await.len();
    assert!(committed_before > 0, "the last child committed before it died");
    expected.extend(env.insert_orders("third", 20, 5, 4).await);

    let running = env.spawn(FaultPlan::none());
    env.wait_for(&topic, expected.len(), &running).await;
    let outcome = running.stop().await.unwrap();
    assert_eq!(
        outcome.stats.events_produced as usize,
        expected.len() - committed_before,
        "what the crashed run committed was skipped, not produced again"
    );
    let records = env.drain(&topic, Isolation::ReadCommitted).await;
    assert_exactly_once(&records, &expected);
    assert_per_key_order(&records, &expected);
    let uncommitted = env.drain(&topic, Isolation::ReadUncommitted).await;
    assert!(
        uncommitted.len() > records.len(),
        "the aborted attempts left copies that only read_uncommitted sees"
    );
}
