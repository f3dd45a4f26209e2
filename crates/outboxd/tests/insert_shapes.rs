//! Inserts of every shape, relayed exactly once through crashes: a multi-row `INSERT ... VALUES`, an
//! `INSERT ... SELECT` of 200 rows, a `COPY` of 100 rows (each several events sharing one transaction and one
//! commit LSN, where other relays lost data) and a 1 MB TOASTed payload. The real `outboxd run` binary aborts
//! mid-transaction, before a commit and between a commit and its confirmation (`OUTBOXD_FAULT`), then a clean
//! instance catches up; `read_committed` holds every row once, in order per aggregate, and
//! `read_uncommitted` shows the aborted copies. Needs `scripts/services up`.

mod support;

use futures::SinkExt;
use outboxd_avro::UnknownFields;
use outboxd_testkit::kafka::Isolation;
use std::os::unix::process::ExitStatusExt;
use support::binary::{LogFile, Outboxd};
use support::{assert_exactly_once, assert_per_key_order, Env, WAIT};

const COLUMNS: &str = "(id, aggregate_type, aggregate_id, event_type, payload)";

/// Writes the rows in four statements of four shapes; returns their ids in commit order.
async fn insert_every_shape(env: &Env) -> Vec<String> {
    let client = &env.db.client;
    let mut ids = Vec::new();
    // Several rows in one INSERT ... VALUES.
    let values: Vec<String> = (0..5)
        .map(|i| {
            format!(
                "('mv-{i}', 'order', 'a{}', 'OrderCreated', '{{\"orderId\":\"mv-{i}\",\"amount\":{i}}}')",
                i % 4
            )
        })
        .collect();
    client
        .batch_execute(&format!(
            "INSERT INTO public.outbox {COLUMNS} VALUES {}",
            values.join(", ")
        ))
        .await
        .unwrap();
    ids.extend((0..5).map(|i| format!("mv-{i}")));
    // INSERT ... SELECT: 200 events, one statement, one transaction.
    client
        .batch_execute(&format!(
            "INSERT INTO public.outbox {COLUMNS} SELECT 'is-' || g, 'order', 'a' || (g % 4), 'OrderCreated', \
             json_build_object('orderId', 'is-' || g, 'amount', g)::text FROM generate_series(0, 199) g"
        ))
        .await
        .unwrap();
    ids.extend((0..200).map(|g| format!("is-{g}")));
    // COPY: 100 events.
    let sink = client
        .copy_in(&format!("COPY public.outbox {COLUMNS} FROM STDIN"))
        .await
        .unwrap();
    let mut sink = std::pin::pin!(sink);
    let mut data = String::new();
    for i in 0..100 {
        data.push_str(&format!(
            "cp-{i}\torder\ta{}\tOrderCreated\t{{\"orderId\":\"cp-{i}\",\"amount\":{i}}}\n",
            i % 4
        ));
        ids.push(format!("cp-{i}"));
    }
    sink.send(bytes::Bytes::from(data)).await.unwrap();
    sink.finish().await.unwrap();
    // A payload of over 1 MB, stored out of line (TOAST): random hex does not compress below the threshold.
    let blob: String = (0..600_000)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let payload = format!(r#"{{"orderId":"big-0","amount":1,"blob":"{blob}"}}"#);
    client
        .execute(
            &format!(
                "INSERT INTO public.outbox {COLUMNS} VALUES ('big-0', 'order', 'a0', 'OrderCreated', $1)"
            ),
            &[&payload],
        )
        .await
        .unwrap();
    ids.push("big-0".into());
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_insert_shape_is_relayed_once_through_crashes() {
    let mut env = Env::new().await;
    // The 1 MB payload's extra field is dropped by the schema, so that its record fits the topic.
    env.config.avro.unknown_fields = UnknownFields::Ignore;
    env.config.kafka.batch.max_events = 64;
    let expected = insert_every_shape(&env).await;
    let config = env.config_file(&env.config, "shapes");
    let log = LogFile::new("insert_shapes");
    // Each fault aborts the process; the next instance resumes from the checkpoint.
    for fault in [
        "crash_mid_txn:150",
        "crash_before_commit:2",
        "crash_after_commit:1",
    ] {
        let mut child = Outboxd::spawn(&config, &log.path, Some(fault));
        let status = child.wait(WAIT).await;
        assert_eq!(
            status.signal(),
            Some(6),
            "{fault}: expected SIGABRT, got {status}"
        );
    }
    let mut clean = Outboxd::spawn(&config, &log.path, None);
    let topic = env.topic("order");
    let wanted = expected.len();
    outboxd_testkit::wait_until("every row visible to read_committed", WAIT, || async {
        (env.drain(&topic, Isolation::ReadCommitted).await.len() >= wanted).then_some(())
    })
    .await;
    clean.terminate();
    assert!(clean.wait(WAIT).await.success(), "SIGTERM exits 0");

    let records = env.drain(&topic, Isolation::ReadCommitted).await;
    assert_exactly_once(&records, &expected);
    assert_per_key_order(&records, &expected);
    let big = records
        .iter()
        .find(|r| r.header("id").as_deref() == Some("big-0"))
        .unwrap();
    assert!(
        big.value.as_ref().is_some_and(|v| v.len() < 100),
        "encoded without the dropped field"
    );
    let uncommitted = env.drain(&topic, Isolation::ReadUncommitted).await;
    assert!(
        uncommitted.len() > records.len(),
        "the aborted attempts left copies that only read_uncommitted sees"
    );
    assert!(env
        .drain(&env.config.kafka.dlq_topic, Isolation::ReadCommitted)
        .await
        .is_empty());
}
