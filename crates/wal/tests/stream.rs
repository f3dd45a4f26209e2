//! The WAL source against a real Postgres, what it emits: each test has its own database, slot and
//! publication.

mod common;

use common::*;
use outboxd_core::Lsn;
use outboxd_wal::{slot_confirmed_flush_lsn, ColumnMapping, OutboxMode, Preset, Source, WalError};
use std::collections::HashMap;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

#[tokio::test]
async fn one_row_streams_as_begin_event_commit_and_is_confirmed() {
    let db = outbox_db().await;
    let config = config(&db);
    let (handle, mut rx) = Source::start(config.clone(), Lsn::ZERO)
        .await
        .expect("source starts");
    db.client
        .batch_execute(
            "INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload, headers, traceparent, \
             schema_version, created_at) VALUES ('0b1e6c1c-2b2f-4a57-9b0e-6f1f2f3f4f5f', 'order', '42', \
             'OrderCreated', '{\"total\": 3}', '{\"tenant\": \"a\"}', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', \
             2, '2024-05-01 12:00:00+02')",
        )
        .await
        .unwrap();
    let txns = collect(&mut rx, 1, T).await;
    let e = &txns[0].events[0];
    assert_eq!(e.id.as_deref(), Some("0b1e6c1c-2b2f-4a57-9b0e-6f1f2f3f4f5f"));
    assert_eq!(
        (e.aggregate_type.as_deref(), e.aggregate_id.as_deref()),
        (Some("order"), Some("42"))
    );
    assert_eq!(e.event_type.as_deref(), Some("OrderCreated"));
    assert_eq!(e.payload.as_deref(), Some(&br#"{"total": 3}"#[..]));
    assert_eq!(e.headers.as_deref(), Some(r#"{"tenant": "a"}"#));
    assert_eq!(
        e.traceparent.as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!(
        (e.schema_version.as_deref(), e.created_at.as_deref()),
        (Some("2"), Some("2024-05-01 10:00:00+00"))
    );
    assert_eq!(e.defect, None);
    let c = txns[0].commit;
    assert!(
        e.lsn > Lsn::ZERO && e.lsn < c.commit_lsn && c.commit_lsn < c.end_lsn,
        "{e:?} {c:?}"
    );
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    assert!(
        (now_us - c.commit_time_us).abs() < 60_000_000,
        "commit time is Unix microseconds"
    );

    assert!(
        handle.progress().confirmed < c.end_lsn,
        "nothing confirmed before the sink says so"
    );
    handle.confirm(c.end_lsn);
    wait_slot_confirmed(&db, &config.slot, c.end_lsn).await;
    let p = handle.progress();
    assert!(
        p.received >= c.end_lsn && p.confirmed >= c.end_lsn && p.reported >= c.end_lsn,
        "{p:?}"
    );
    assert_eq!((p.stats.transactions, p.stats.events), (1, 1));
    handle.shutdown().await.expect("clean shutdown");
    assert!(rx.recv().await.is_none(), "the channel ends with the reader");
}

#[tokio::test]
async fn ten_thousand_rows_in_one_transaction_stream_through_a_small_channel() {
    let db = outbox_db().await;
    let config = outboxd_wal::SourceConfig {
        channel_capacity: 16,
        ..config(&db)
    };
    let (handle, mut rx) = Source::start(config, Lsn::ZERO).await.unwrap();
    db.client
        .batch_execute(
            "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) \
             SELECT 'order', i::text, 'Created', jsonb_build_object('i', i) FROM generate_series(1, 10000) i",
        )
        .await
        .unwrap();
    let txns = collect(&mut rx, 1, T).await;
    let keys = txns[0].keys();
    assert_eq!(keys.len(), 10_000);
    assert!(
        keys.iter().enumerate().all(|(i, k)| *k == (i + 1).to_string()),
        "rows arrive in insert order"
    );
    assert!(
        txns[0].events.windows(2).all(|w| w[0].lsn < w[1].lsn),
        "each event carries its own LSN"
    );
    assert_eq!(handle.progress().stats.events, 10_000);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn ten_thousand_one_row_transactions_arrive_in_commit_order() {
    let db = outbox_db().await;
    let config = config(&db);
    let (handle, mut rx) = Source::start(config.clone(), Lsn::ZERO).await.unwrap();
    insert_txns(&db, "k", 10_000).await;
    let txns = collect(&mut rx, 10_000, T).await;
    for (i, t) in txns.iter().enumerate() {
        assert_eq!(t.keys(), [format!("k-{}", i + 1)]);
    }
    assert!(
        txns.windows(2).all(|w| w[0].commit.end_lsn < w[1].commit.end_lsn),
        "end LSNs strictly increase"
    );
    assert!(txns.windows(2).all(|w| w[0].commit.xid != w[1].commit.xid));
    let last = txns.last().unwrap().commit.end_lsn;
    handle.confirm(last);
    handle.shutdown().await.unwrap();
    let slot = slot_confirmed_flush_lsn(&db.url, &config.slot)
        .await
        .unwrap()
        .unwrap();
    assert!(
        slot >= last,
        "shutdown sent the last confirmation: slot at {slot}, confirmed {last}"
    );
}

#[tokio::test]
async fn concurrent_writers_arrive_grouped_by_transaction_in_commit_order() {
    let db = outbox_db().await;
    let (handle, mut rx) = Source::start(config(&db), Lsn::ZERO).await.unwrap();
    const WRITERS: usize = 4;
    const TXNS: usize = 100;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = db.connect().await;
        writers.push(tokio::spawn(async move {
            for t in 0..TXNS {
                let rows = 1 + (t + w) % 3;
                let sql = format!(
                    "BEGIN; INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) \
                     SELECT 'w', 'w{w}-t{t}', 'E', jsonb_build_object('r', r) FROM generate_series(1, {rows}) r; COMMIT;"
                );
                client.batch_execute(&sql).await.expect("writer transaction");
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let txns = collect(&mut rx, WRITERS * TXNS, T).await;
    assert!(
        txns.windows(2).all(|w| w[0].commit.end_lsn < w[1].commit.end_lsn),
        "commit order"
    );
    let mut next: HashMap<usize, usize> = HashMap::new();
    for t in &txns {
        let keys = t.keys();
        assert!(
            keys.iter().all(|k| *k == keys[0]),
            "a transaction's events are contiguous: {keys:?}"
        );
        let (w, n) = keys[0].trim_start_matches('w').split_once("-t").unwrap();
        let (w, n): (usize, usize) = (w.parse().unwrap(), n.parse().unwrap());
        assert_eq!(keys.len(), 1 + (n + w) % 3);
        let expected = next.entry(w).or_default();
        assert_eq!(
            n, *expected,
            "writer {w}'s transactions arrive in the order it committed them"
        );
        *expected += 1;
    }
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn other_tables_changes_are_not_emitted() {
    let db = outbox_db().await;
    db.client
        .batch_execute("CREATE TABLE orders (id int primary key, note text)")
        .await
        .unwrap();
    let (handle, mut rx) = Source::start(config(&db), Lsn::ZERO).await.unwrap();
    exec(
        &db,
        &[
            "INSERT INTO orders VALUES (1, 'alone')",
            "BEGIN; INSERT INTO orders VALUES (2, 'with an event');
               INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) VALUES ('o', 'mixed', 'E', '{}');
               UPDATE orders SET note = 'x'; COMMIT;",
            "INSERT INTO orders VALUES (3, 'alone again')",
            "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) VALUES ('o', 'last', 'E', '{}')",
        ],
    )
    .await;
    let txns = collect(&mut rx, 2, T).await;
    assert_eq!(
        (txns[0].keys(), txns[1].keys()),
        (vec!["mixed".to_string()], vec!["last".to_string()])
    );
    assert_eq!(handle.progress().stats.events, 2);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn outbox_updates_deletes_and_truncates_are_ignored_and_counted() {
    let db = outbox_db().await;
    let config = config(&db);
    // A publication that publishes every operation, to see that the source ignores them itself.
    db.client
        .batch_execute(&format!(
            "CREATE PUBLICATION {} FOR TABLE outbox",
            config.publication
        ))
        .await
        .unwrap();
    let (handle, mut rx) = Source::start(config.clone(), Lsn::ZERO).await.unwrap();
    exec(
        &db,
        &[
            "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) VALUES ('o', 'a', 'E', '{}'), ('o', 'b', 'E', '{}')",
            "UPDATE outbox SET event_type = 'Changed'",
            "DELETE FROM outbox WHERE aggregate_id = 'a'",
            "TRUNCATE outbox",
            "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) VALUES ('o', 'c', 'E', '{}')",
        ],
    )
    .await;
    let txns = collect(&mut rx, 2, T).await;
    assert_eq!(
        (txns[0].keys(), txns[1].keys()),
        (vec!["a".to_string(), "b".into()], vec!["c".to_string()])
    );
    let s = handle.progress().stats;
    assert_eq!(
        (s.ignored_updates, s.ignored_deletes, s.ignored_truncates),
        (2, 1, 1)
    );
    assert_eq!((s.quiet_transactions, s.transactions, s.events), (3, 2, 3));
    // The quiet transactions between the two emitted ones become confirmable with the first.
    handle.confirm(txns[0].commit.end_lsn);
    let confirmed = wait_slot_confirmed(&db, &config.slot, txns[0].commit.end_lsn).await;
    assert!(confirmed < txns[1].commit.commit_lsn);
    assert!(
        confirmed > txns[0].commit.end_lsn,
        "the quiet transactions after it were confirmed too"
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn logical_message_outbox() {
    let db = outbox_db().await;
    let config = outboxd_wal::SourceConfig {
        mode: OutboxMode::LogicalMessage {
            prefix: "outboxd".into(),
        },
        ..config(&db)
    };
    let (handle, mut rx) = Source::start(config, Lsn::ZERO).await.unwrap();
    db.client
        .batch_execute(
            r#"SELECT pg_logical_emit_message(false, 'outboxd', '{"id": "non-transactional"}');
               SELECT pg_logical_emit_message(true, 'other', '{"id": "other prefix"}');
               BEGIN;
               SELECT pg_logical_emit_message(true, 'outboxd', '{"id": "m1", "aggregate_type": "order", "aggregate_id": "1", "event_type": "E", "payload": {"x": [1, 2]}, "headers": {"h": "v"}, "traceparent": "00-a-b-01"}');
               SELECT pg_logical_emit_message(true, 'outboxd', 'not json');
               INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) VALUES ('o', 'row', 'E', '{}');
               COMMIT;"#,
        )
        .await
        .unwrap();
    let txns = collect(&mut rx, 1, T).await;
    let events = &txns[0].events;
    assert_eq!(events.len(), 2);
    assert_eq!(
        (events[0].id.as_deref(), events[0].aggregate_type.as_deref()),
        (Some("m1"), Some("order"))
    );
    assert_eq!(events[0].payload.as_deref(), Some(&br#"{"x": [1, 2]}"#[..]));
    assert_eq!(
        (events[0].headers.as_deref(), events[0].traceparent.as_deref()),
        (Some(r#"{"h": "v"}"#), Some("00-a-b-01"))
    );
    assert!(events[0].lsn < events[1].lsn);
    assert!(events[1]
        .defect
        .as_deref()
        .is_some_and(|d| d.contains("not a JSON object")));
    assert_eq!(events[1].payload.as_deref(), Some(&b"not json"[..]));
    assert_eq!(handle.progress().stats.ignored_messages, 2);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn debezium_layout_preset() {
    let db = outbox_db().await;
    db.client
        .batch_execute(
            "CREATE TABLE outboxevent (id uuid primary key, aggregatetype varchar(255) not null, \
             aggregateid varchar(255) not null, type varchar(255) not null, payload bytea, \
             tracingspancontext varchar(256))",
        )
        .await
        .unwrap();
    let config = outboxd_wal::SourceConfig {
        table: "public.outboxevent".into(),
        columns: ColumnMapping {
            preset: Preset::Debezium,
            ..Default::default()
        },
        ..config(&db)
    };
    let (handle, mut rx) = Source::start(config, Lsn::ZERO).await.unwrap();
    db.client
        .batch_execute(
            "INSERT INTO outboxevent VALUES ('11111111-1111-1111-1111-111111111111', 'customer', '7', 'Created', \
             '\\x7b7d00ff', E'#Thu Jan 01 00:00:00 UTC 2024\\ntraceparent=00-aa-bb-01\\n')",
        )
        .await
        .unwrap();
    let e = collect(&mut rx, 1, T).await.remove(0).events.remove(0);
    assert_eq!(e.id.as_deref(), Some("11111111-1111-1111-1111-111111111111"));
    assert_eq!(
        (e.aggregate_type.as_deref(), e.aggregate_id.as_deref()),
        (Some("customer"), Some("7"))
    );
    assert_eq!(e.event_type.as_deref(), Some("Created"));
    assert_eq!(
        e.payload.as_deref(),
        Some(&[0x7b, 0x7d, 0x00, 0xff][..]),
        "bytea decoded to bytes"
    );
    assert_eq!((e.traceparent.as_deref(), e.defect), (Some("00-aa-bb-01"), None));
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_table_lacking_a_mapped_column_is_a_config_error() {
    let db = outbox_db().await;
    db.client
        .batch_execute("ALTER TABLE outbox DROP COLUMN event_type")
        .await
        .unwrap();
    let err = Source::start(config(&db), Lsn::ZERO)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&err, WalError::MissingColumn { table, column, .. } if table == "public.outbox" && column == "event_type"),
        "{err}"
    );
    assert!(!err.is_retriable());
}

#[tokio::test]
async fn a_stalled_sink_keeps_the_connection_alive_past_wal_sender_timeout() {
    let db = outbox_db().await;
    // wal_sender_timeout of 1 s for this session only: the walsender drops a client silent for longer.
    let pg_url = format!("{}?options=-c%20wal_sender_timeout%3D1000", db.url);
    let config = outboxd_wal::SourceConfig {
        pg_url,
        channel_capacity: 16,
        status_interval_ms: 200,
        ..config(&db)
    };
    let (handle, mut rx) = Source::start(config.clone(), Lsn::ZERO).await.unwrap();
    // About 8 MB of changes: far more than the channels and socket buffers hold, so the reading stalls.
    db.client
        .batch_execute(
            "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) \
             SELECT 'o', i::text, 'E', jsonb_build_object('pad', repeat('x', 300)) FROM generate_series(1, 25000) i",
        )
        .await
        .unwrap();
    let pid_and_start = "SELECT s.active_pid, now() FROM pg_replication_slots s WHERE s.slot_name = $1";
    let row = db.client.query_one(pid_and_start, &[&config.slot]).await.unwrap();
    let (pid, start): (i32, std::time::SystemTime) = (row.get(0), row.get(1));
    // While nothing is read, status replies keep coming for three timeouts.
    outboxd_testkit::wait_until("status replies 3 s into the stall", Duration::from_secs(20), || {
        let client = &db.client;
        async move {
            let sql = "SELECT reply_time > $2::timestamptz + interval '3 seconds' FROM pg_stat_replication WHERE pid = $1";
            let alive = client.query_opt(sql, &[&pid, &start]).await.unwrap().expect("the walsender is still there");
            alive.get::<_, Option<bool>>(0).unwrap_or(false).then_some(())
        }
    })
    .await;
    let progress = handle.progress();
    assert!(
        progress.stats.events < 25_000,
        "the reading really stalled: {progress:?}"
    );
    let txns = collect(&mut rx, 1, T).await;
    assert_eq!(txns[0].events.len(), 25_000);
    let same: i32 = db
        .client
        .query_one(pid_and_start, &[&config.slot])
        .await
        .unwrap()
        .get(0);
    assert_eq!(same, pid, "the same replication session all along");
    handle.shutdown().await.unwrap();
}
