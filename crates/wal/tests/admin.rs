//! The slot functions of `outboxd slot status|create|drop` against the shared Postgres, and `sslmode`
//! against a server without TLS. Each test has its own database, slot and publication.

mod common;

use common::checks::assert_check;
use common::*;
use outboxd_core::Lsn;
use outboxd_testkit::{unique_name, wait_until, Services, TestDb};
use outboxd_wal::admin::{create_slot, drop_slot, preflight, slot_status, Check, CheckStatus};
use outboxd_wal::{ConnectFailure, Source, SourceConfig, WalError};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[tokio::test]
async fn status_of_a_fresh_slot_and_of_a_missing_one() {
    let db = outbox_db().await;
    let config = config(&db);
    let created = create_slot(&config).await.unwrap();
    assert_eq!(
        (created.slot.as_str(), created.publication_created),
        (config.slot.as_str(), true)
    );
    assert!(created.consistent_point > Lsn::ZERO);
    let publication = db
        .client
        .query_one(
            "SELECT pubinsert, pubupdate, pubdelete, pubtruncate, pubviaroot FROM pg_publication WHERE pubname = $1",
            &[&config.publication],
        )
        .await
        .unwrap();
    let flags: (bool, bool, bool, bool, bool) = (
        publication.get(0),
        publication.get(1),
        publication.get(2),
        publication.get(3),
        publication.get(4),
    );
    assert_eq!(
        flags,
        (true, false, false, false, true),
        "inserts only, via the root"
    );

    let status = slot_status(&config).await.unwrap();
    let d = status.details.as_ref().expect("the slot exists");
    assert_eq!(
        (d.slot_type.as_str(), d.plugin.as_deref(), d.database.as_deref()),
        ("logical", Some("pgoutput"), Some(db.name.as_str()))
    );
    assert!(!d.active && d.active_pid.is_none() && d.client_addr.is_none());
    let confirmed = d.confirmed_flush_lsn.expect("a confirmed position");
    assert!(
        confirmed >= created.consistent_point,
        "{confirmed} < {}",
        created.consistent_point
    );
    assert!(status.current_lsn >= confirmed);
    assert!(d.retained_wal_bytes.is_some_and(|b| b >= 0), "{d:?}");
    assert!(d.unconfirmed_wal_bytes.is_some_and(|b| b >= 0), "{d:?}");
    assert_eq!(d.wal_status.as_deref(), Some("reserved"));
    assert_eq!(status.database, db.name);
    let text = status.to_string();
    assert!(
        text.contains("exists:") && text.contains("yes, logical slot"),
        "{text}"
    );
    assert!(
        text.contains(&format!("confirmed_flush_lsn:  {confirmed}")),
        "{text}"
    );

    // A second create keeps the slot and its position.
    let e = create_slot(&config).await.unwrap_err();
    assert!(
        matches!(&e, WalError::SlotExists { slot } if *slot == config.slot),
        "{e}"
    );
    assert!(e.to_string().contains(&config.slot), "{e}");
    assert_eq!(
        slot_status(&config)
            .await
            .unwrap()
            .details
            .unwrap()
            .confirmed_flush_lsn,
        Some(confirmed)
    );

    let missing = SourceConfig {
        slot: unique_name("nosuch"),
        ..config.clone()
    };
    let status = slot_status(&missing).await.unwrap();
    assert!(!status.exists());
    assert!(
        status.to_string().contains("exists:               no"),
        "{status}"
    );
    let e = drop_slot(&missing).await.unwrap_err();
    assert!(matches!(e, WalError::SlotMissing { .. }), "{e}");
}

#[tokio::test]
async fn create_slot_needs_the_publication_first() {
    let db = outbox_db().await;
    let config = SourceConfig {
        create_publication: false,
        ..config(&db)
    };
    let e = create_slot(&config).await.unwrap_err().to_string();
    assert!(
        e.contains("CREATE PUBLICATION") && e.contains(&config.publication),
        "{e}"
    );
    assert!(
        !slot_status(&config).await.unwrap().exists(),
        "no slot without its publication"
    );

    let no_table = TestDb::create(&Services::from_env()).await;
    let e = create_slot(&common::config(&no_table))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not exist") && e.contains("outbox.sql"), "{e}");
}

#[tokio::test]
async fn an_active_slot_shows_its_walsender_and_is_never_dropped() {
    let db = outbox_db().await;
    let config = config(&db);
    let (handle, _rx) = Source::start(config.clone(), Lsn::ZERO).await.unwrap();
    let status = wait_until("the slot is active", T, || async {
        let s = slot_status(&config).await.unwrap();
        s.details
            .as_ref()
            .is_some_and(|d| d.active_pid.is_some())
            .then_some(s)
    })
    .await;
    let d = status.details.as_ref().unwrap();
    let pid = d.active_pid.unwrap();
    assert!(d.active);
    assert_eq!(
        (d.client_addr.as_deref(), d.application_name.as_deref()),
        (Some("127.0.0.1"), Some("outboxd"))
    );
    let walsender: i32 = db
        .client
        .query_one(
            "SELECT pid FROM pg_stat_replication WHERE application_name = 'outboxd' AND pid = $1",
            &[&pid],
        )
        .await
        .expect("the reported pid is a walsender")
        .get(0);
    assert_eq!(walsender, pid);
    assert!(
        status.to_string().contains(&format!("yes, pid {pid}")),
        "{status}"
    );

    let preflight_checks = preflight(&config).await;
    assert_check(
        &preflight_checks,
        Check::REPLICATION_SLOT,
        CheckStatus::Warn,
        &[&format!("pid {pid}"), "127.0.0.1"],
        &[],
    );

    let e = drop_slot(&config).await.unwrap_err();
    match &e {
        WalError::SlotInUse {
            slot, pid: holder, ..
        } => assert_eq!((slot, *holder), (&config.slot, pid)),
        other => panic!("expected SlotInUse, got {other}"),
    }
    assert!(e.to_string().contains(&format!("pid {pid}")), "{e}");
    assert!(
        slot_status(&config).await.unwrap().exists(),
        "the slot is still there"
    );

    handle.shutdown().await.unwrap();
    wait_until("the slot is released", T, || async {
        let s = slot_status(&config).await.unwrap();
        s.details.is_some_and(|d| !d.active).then_some(())
    })
    .await;
    let dropped = drop_slot(&config).await.unwrap();
    assert_eq!(dropped.slot, config.slot);
    assert!(dropped.confirmed_flush_lsn.is_some());
    assert!(!slot_status(&config).await.unwrap().exists());
}

#[tokio::test]
async fn sslmode_against_a_server_without_tls() {
    let db = outbox_db().await;
    for mode in ["disable", "prefer"] {
        let config = SourceConfig {
            pg_url: format!("{}?sslmode={mode}", db.url),
            ..config(&db)
        };
        assert!(!slot_status(&config).await.unwrap().exists(), "sslmode={mode}");
    }
    let require = SourceConfig {
        pg_url: format!("{}?sslmode=require", db.url),
        ..config(&db)
    };
    let server = db
        .url
        .split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let e = slot_status(&require).await.unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(
            &e,
            WalError::Connect {
                failure: ConnectFailure::Tls,
                ..
            }
        ) && !e.is_retriable(),
        "{text}"
    );
    assert!(
        text.contains(&server) && text.contains("sslmode=require") && text.contains("does not accept TLS"),
        "{text}"
    );
    let e = Source::start(require.clone(), Lsn::ZERO).await.unwrap_err();
    assert!(
        !e.is_retriable() && e.to_string().contains("sslmode=require"),
        "{e}"
    );
    let checks = preflight(&require).await;
    assert_check(
        &checks,
        Check::CONNECTION,
        CheckStatus::Fail,
        &[&server],
        &["sslmode=prefer or sslmode=disable"],
    );
}
