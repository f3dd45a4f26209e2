//! The sink against the real broker: transactions with their checkpoint, checkpoint read-back, aborts hidden
//! from `read_committed`, dead letters, fencing. Needs `scripts/services up kafka`.

use outboxd_core::{Commit, Lsn, TxBegin};
use outboxd_kafka::{DlqReason, ReadyRecord, RouteMode, Sink, SinkConfig, SinkIdentity, SinkStats, Written};
use outboxd_testkit::kafka::{drain, Isolation, Record};
use outboxd_testkit::{unique_name, wait_until, Services};
use std::sync::Arc;
use std::time::Duration;

const DRAIN: Duration = Duration::from_secs(30);

struct Fixture {
    bootstrap: String,
    config: SinkConfig,
    identity: SinkIdentity,
    topic: String,
}

fn fixture() -> Fixture {
    let services = Services::from_env();
    let topic = unique_name("events");
    let config = SinkConfig {
        bootstrap_servers: services.kafka_bootstrap.clone(),
        dlq_topic: unique_name("dlq"),
        checkpoint_topic: unique_name("checkpoints"),
        max_message_bytes: 10_000,
        routing: outboxd_kafka::RoutingConfig {
            mode: RouteMode::Fixed,
            fixed_topic: Some(topic.clone()),
            ..Default::default()
        },
        topics: outboxd_kafka::TopicsConfig {
            replication_factor: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let identity = SinkIdentity {
        pipeline_id: unique_name("pipe"),
        transactional_id: unique_name("txn"),
    };
    Fixture {
        bootstrap: services.kafka_bootstrap,
        config,
        identity,
        topic,
    }
}

/// A ready record for event `n` (as outboxd-record builds them: the sink writes it as it is).
fn record(topic: &str, n: u64, aggregate: &str) -> ReadyRecord {
    ReadyRecord {
        topic: topic.into(),
        key: Some(aggregate.as_bytes().to_vec()),
        value: Some(format!("{{\"n\":{n}}}").into_bytes()),
        headers: vec![("id".into(), format!("id-{n}").into_bytes().into())],
    }
}

fn begin(n: u64) -> TxBegin {
    TxBegin {
        xid: n as u32,
        final_lsn: Lsn(n * 100),
        commit_time_us: 1_714_566_896_000_000,
    }
}

fn commit(n: u64, events: u64) -> Commit {
    Commit {
        xid: n as u32,
        commit_lsn: Lsn(n * 100),
        end_lsn: Lsn(n * 100 + 8),
        commit_time_us: 1_714_566_896_000_000,
        events,
    }
}

/// Streams one Postgres transaction `n` with `events` events through the sink.
async fn stream_txn(sink: &mut Sink, topic: &str, n: u64, events: u64) {
    sink.begin(&begin(n)).unwrap();
    for i in 0..events {
        let r = record(topic, n * 1000 + i, &format!("agg-{}", i % 3));
        assert_eq!(sink.produce(&r).await.unwrap(), Written::Queued);
    }
    sink.end(&commit(n, events)).unwrap();
}

/// A sink of the fixture's pipeline, with statistics of its own.
async fn start(f: &Fixture) -> Sink {
    Sink::start(
        f.config.clone(),
        f.identity.clone(),
        Arc::new(SinkStats::default()),
    )
    .await
    .unwrap()
}

fn ids(records: &[Record]) -> Vec<String> {
    let mut v: Vec<String> = records.iter().map(|r| r.header("id").unwrap()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn commits_carry_the_checkpoint_and_a_restart_reads_it_back() {
    let f = fixture();
    let stats = Arc::new(SinkStats::default());
    let mut sink = Sink::start(f.config.clone(), f.identity.clone(), Arc::clone(&stats))
        .await
        .unwrap();
    assert_eq!(sink.resume_after(), Lsn::ZERO, "no checkpoint yet");
    stream_txn(&mut sink, &f.topic, 1, 3).await;
    stream_txn(&mut sink, &f.topic, 2, 2).await;
    assert!(sink.committable());
    let c = sink.commit().await.unwrap().expect("a transaction was open");
    assert_eq!(
        (c.checkpoint.end_lsn, c.checkpoint.txns, c.checkpoint.events),
        (Lsn(208), 2, 5)
    );
    // A second transaction from the same producer (the broker must not fence us after a commit).
    stream_txn(&mut sink, &f.topic, 3, 1).await;
    let c = sink.commit().await.unwrap().unwrap();
    assert_eq!(c.checkpoint.end_lsn, Lsn(308));
    let snap = stats.snapshot();
    assert_eq!(
        (snap.events_produced, snap.txns_committed, snap.pg_txns_committed),
        (6, 2, 3)
    );
    assert_eq!(snap.checkpoint_end_lsn, Lsn(308));
    drop(sink);

    let records = drain(&f.bootstrap, &f.topic, Isolation::ReadCommitted, DRAIN);
    assert_eq!(records.len(), 6);
    let r = &records[0];
    assert!(r.key.as_deref().is_some_and(|k| k.starts_with(b"agg-")));
    assert!(
        r.header("id").is_some_and(|id| id.starts_with("id-")),
        "written with the headers it was given"
    );
    let checkpoints = drain(
        &f.bootstrap,
        &f.config.checkpoint_topic,
        Isolation::ReadCommitted,
        DRAIN,
    );
    assert_eq!(checkpoints.len(), 2);

    let again = start(&f).await;
    assert_eq!(again.resume_after(), Lsn(308));
    assert_eq!(again.checkpoint().unwrap().pipeline_id, f.identity.pipeline_id);
    // Another pipeline sharing the checkpoint topic has no checkpoint.
    let other = SinkIdentity {
        pipeline_id: unique_name("pipe"),
        transactional_id: unique_name("txn"),
    };
    let other = Sink::start(f.config.clone(), other, Arc::new(SinkStats::default()))
        .await
        .unwrap();
    assert_eq!(other.resume_after(), Lsn::ZERO);
}

#[tokio::test]
async fn aborted_transactions_are_invisible_to_read_committed() {
    let f = fixture();
    let stats = Arc::new(SinkStats::default());
    let mut sink = Sink::start(f.config.clone(), f.identity.clone(), Arc::clone(&stats))
        .await
        .unwrap();
    stream_txn(&mut sink, &f.topic, 1, 2).await;
    sink.commit().await.unwrap().unwrap();
    stream_txn(&mut sink, &f.topic, 2, 3).await;
    sink.begin(&begin(3)).unwrap();
    // Abort only once the records reached the broker (an abort purges what is still queued locally).
    let bootstrap = f.bootstrap.clone();
    wait_until("the open transaction's records on the broker", DRAIN, || {
        let n = drain(&bootstrap, &f.topic, Isolation::ReadUncommitted, DRAIN).len();
        std::future::ready((n == 5).then_some(()))
    })
    .await;
    sink.abort().await.unwrap();
    assert_eq!(stats.snapshot().txns_aborted, 1);
    stream_txn(&mut sink, &f.topic, 4, 1).await;
    sink.commit().await.unwrap().unwrap();
    drop(sink);

    let committed = drain(&f.bootstrap, &f.topic, Isolation::ReadCommitted, DRAIN);
    assert_eq!(ids(&committed), vec!["id-1000", "id-1001", "id-4000"]);
    let uncommitted = drain(&f.bootstrap, &f.topic, Isolation::ReadUncommitted, DRAIN);
    assert_eq!(
        uncommitted.len(),
        6,
        "read_uncommitted also sees the aborted copies"
    );
    let restarted = Sink::start(f.config.clone(), f.identity.clone(), stats)
        .await
        .unwrap();
    assert_eq!(
        restarted.resume_after(),
        Lsn(408),
        "the aborted transaction's checkpoint never counted"
    );
}

#[tokio::test]
async fn dead_letters_share_the_transaction_and_refusals_are_reported() {
    let f = fixture();
    let stats = Arc::new(SinkStats::default());
    let mut sink = Sink::start(f.config.clone(), f.identity.clone(), Arc::clone(&stats))
        .await
        .unwrap();
    sink.begin(&begin(1)).unwrap();
    let mut poison = record(&f.config.dlq_topic, 1, "agg-1");
    poison
        .headers
        .push(("dlq_reason".into(), b"schema_mismatch"[..].into()));
    sink.dead_letter(&poison, DlqReason::Encoder("schema_mismatch"))
        .await
        .unwrap();
    // Over the producer's message.max.bytes (kafka.max_message_bytes = 10,000): refused, not an error.
    let big = ReadyRecord {
        value: Some(vec![0; 20_000]),
        ..record(&f.topic, 2, "agg-2")
    };
    match sink.produce(&big).await.unwrap() {
        Written::Refused { reason, detail } => {
            assert_eq!(reason, DlqReason::TooLarge);
            assert!(detail.contains("10000"), "{detail}");
        }
        Written::Queued => panic!("a 20,000-byte record was queued past max_message_bytes"),
    }
    assert_eq!(
        sink.produce(&record(&f.topic, 4, "agg-4")).await.unwrap(),
        Written::Queued
    );
    sink.end(&commit(1, 3)).unwrap();
    sink.commit().await.unwrap().unwrap();
    let snap = stats.snapshot();
    assert_eq!((snap.dead_letters, snap.events_produced), (1, 1));
    assert_eq!(snap.dead_letters_by_reason.get("schema_mismatch"), Some(&1));

    let dlq = drain(&f.bootstrap, &f.config.dlq_topic, Isolation::ReadCommitted, DRAIN);
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].header("id").as_deref(), Some("id-1"));
    assert_eq!(dlq[0].header("dlq_reason").as_deref(), Some("schema_mismatch"));
    assert_eq!(dlq[0].key.as_deref(), Some(&b"agg-1"[..]));
    assert_eq!(
        dlq[0].value.as_deref(),
        Some(&br#"{"n":1}"#[..]),
        "written as it was given"
    );
    let events = drain(&f.bootstrap, &f.topic, Isolation::ReadCommitted, DRAIN);
    assert_eq!(ids(&events), vec!["id-4"]);
}

#[tokio::test]
async fn a_second_instance_fences_the_first() {
    let f = fixture();
    let mut first = start(&f).await;
    stream_txn(&mut first, &f.topic, 1, 2).await;
    first.commit().await.unwrap().unwrap();
    stream_txn(&mut first, &f.topic, 2, 2).await;

    // The newcomer initialises transactions: the first one's open transaction is aborted.
    let mut second = start(&f).await;
    assert_eq!(
        second.resume_after(),
        Lsn(108),
        "it sees only the committed checkpoint"
    );
    let err = first.commit().await.unwrap_err();
    assert!(err.is_fenced(), "expected fenced, got {err}");
    assert!(!err.is_restartable());
    assert!(err.to_string().contains("another instance"), "{err}");

    stream_txn(&mut second, &f.topic, 2, 2).await;
    second.commit().await.unwrap().unwrap();
    let records = drain(&f.bootstrap, &f.topic, Isolation::ReadCommitted, DRAIN);
    assert_eq!(
        ids(&records),
        vec!["id-1000", "id-1001", "id-2000", "id-2001"],
        "no loss, no duplicate"
    );
}

#[tokio::test]
async fn the_latest_checkpoint_is_found_behind_other_pipelines_records() {
    use rdkafka::producer::{FutureRecord, Producer};
    let f = fixture();
    let mut sink = start(&f).await;
    stream_txn(&mut sink, &f.topic, 1, 1).await;
    sink.commit().await.unwrap().unwrap();
    stream_txn(&mut sink, &f.topic, 2, 1).await;
    sink.commit().await.unwrap().unwrap();
    drop(sink);

    // Another pipeline's checkpoints after ours: more than the first two windows of the backward read (256,
    // then 2,048 offsets), so that ours is found in the third. Then an aborted transaction of records keyed
    // like ours whose value is no checkpoint at all: read_committed must never take it.
    let noise = outboxd_testkit::kafka::transactional_producer(&f.bootstrap, &unique_name("noise"));
    let timeout = Duration::from_secs(30);
    noise.begin_transaction().unwrap();
    let sends: Vec<_> = (0..5_000)
        .map(|i| {
            let key = format!("other-{}", i % 7);
            let record = FutureRecord::to(&f.config.checkpoint_topic)
                .key(&key)
                .payload("{}");
            noise.send_result(record).map_err(|(e, _)| e).unwrap()
        })
        .collect();
    for sent in sends {
        sent.await.unwrap().unwrap();
    }
    noise.commit_transaction(timeout).unwrap();
    noise.begin_transaction().unwrap();
    let record = FutureRecord::to(&f.config.checkpoint_topic)
        .key(&f.identity.pipeline_id)
        .payload("not a checkpoint");
    noise.send(record, timeout).await.unwrap();
    noise.abort_transaction(timeout).unwrap();

    let again = start(&f).await;
    assert_eq!(
        again.resume_after(),
        Lsn(208),
        "the newest committed checkpoint of ours"
    );
    assert_eq!(again.checkpoint().unwrap().txns, 1);
}
