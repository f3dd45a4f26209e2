//! Fault suite, the broker's disk full: a private Apache Kafka broker whose data directory is a small tmpfs
//! of our own (mounted by the test; needs root, as the suite runs in CI), filled up mid-stream while writers
//! insert. Kafka takes a log dir offline at the first ENOSPC, and a KRaft node whose metadata log dir is
//! offline halts; the pipeline fails its transaction and keeps restarting; once space is freed and the broker
//! started again it carries on by itself. The audit: read_committed holds every row exactly once in order,
//! and read_uncommitted holds aborted copies (the disk filled under an open transaction).
//! (The broker down past the transaction timeout is broker_restart.rs's `LongWhileIdle` outage.)
//! Needs `scripts/services up`.

mod support;

use outboxd::FaultPlan;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::broker::PrivateBroker;
use support::fault::{audit_orders, committed_ids, Writers};
use support::{Env, WAIT};

/// A tmpfs mounted by the test; lazily unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mount -t tmpfs failed (the test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap();
    assert!(status.success(), "{cmd:?} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_broker_disk_stops_the_stream_and_it_resumes_once_space_is_freed() {
    let mut broker = PrivateBroker::start().await;
    // Move the fresh data dir onto a 48 MB tmpfs.
    broker.kill().await;
    let data = broker.data_dir();
    let seed = data.with_extension("seed");
    std::fs::rename(&data, &seed).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    let _tmpfs = Tmpfs::mount(&data, "48m");
    run(Command::new("cp").arg("-a").arg(seed.join(".")).arg(&data));
    broker.restart().await;
    let seeded = std::fs::read_dir(&data).unwrap().count();
    assert!(seeded > 0, "the data dir was copied onto the tmpfs");

    let mut env = Env::new().await;
    env.config.kafka.bootstrap_servers = broker.bootstrap.clone();
    env.services.kafka_bootstrap = broker.bootstrap.clone();
    env.config.kafka.transaction_timeout_ms = 10_000;
    // Transactions open for a while, so that the disk fills under one: the open transaction seen below must
    // still be open when dd has filled the disk. With a 1 s linger it sometimes committed in between (the
    // probe for it takes a few hundred ms), and the next one then failed before writing a record: no aborted
    // copy. 5 s leaves seconds of margin, and stays well under the 10 s transaction timeout.
    env.config.kafka.batch.linger_ms = 5_000;
    env.config.restart.max_restarts = Some(1_000);
    let writers = Writers::start(&env.db.url, "disk", 2);
    let running = env.spawn(FaultPlan::none());
    env.wait_for(&env.topic("order"), 50, &running).await;

    // Fill the disk while a transaction is open: dd stops at ENOSPC.
    env.until_open_transaction().await;
    let filler = data.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "status=none"])
        .arg(format!("of={}", filler.display()))
        .status();
    let health = running.health.clone();
    let stalled = tokio::time::timeout(Duration::from_secs(30), async {
        while health.is_ready() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    eprintln!(
        "disk full: pipeline failed a transaction: {}; broker running: {}",
        stalled.is_ok(),
        broker.is_running()
    );
    writers.wait_progress(100).await;

    // Kafka takes the log dir offline at the first ENOSPC (KIP-112); it is also the metadata log dir, so the
    // node halts: the operator frees space and starts it again.
    let deadline = std::time::Instant::now() + WAIT;
    while broker.is_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the broker kept running on a full disk"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        broker.log().contains("No space left on device"),
        "{}",
        broker.log()
    );
    std::fs::remove_file(&filler).unwrap();
    broker.restart().await;
    writers.wait_progress(50).await;
    writers.stop().await;
    let expected = committed_ids(&env.db.url).await;
    env.wait_for(&env.topic("order"), expected.len(), &running).await;
    let outcome = running.stop().await.unwrap();
    let audit = audit_orders(&env, &expected).await;
    assert!(
        audit.aborted > 0,
        "read_uncommitted shows no aborted copy: the disk did not fill under an open transaction"
    );
    eprintln!(
        "FIGURES fault_broker_disk: broker halted on ENOSPC and was restarted; restarts={} rows_audited={} \
         aborted_copies={} duplicates=0 lost=0",
        outcome.restarts, audit.rows, audit.aborted
    );
}
