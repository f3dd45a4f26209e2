//! `outboxd check` (preflight) against the shared Postgres: a good set-up passes, and each cause of failure
//! is named with its fix. Each test has its own database, slot and publication. Server settings the shared
//! server must not have (wal_level, authentication, TLS) are checked in tests/cluster.rs.

mod common;

use common::checks::{assert_check, report};
use common::cluster::free_port;
use common::*;
use outboxd_testkit::{Services, TestDb};
use outboxd_wal::admin::{create_slot, preflight, preflight_passed, slot_status, Check, CheckStatus};
use outboxd_wal::{ConnectFailure, OutboxMode, SourceConfig, WalError};
use std::time::{Duration, Instant};

#[tokio::test]
async fn preflight_passes_on_a_good_setup() {
    let db = outbox_db().await;
    let config = config(&db);
    let checks = preflight(&config).await;
    assert_eq!(checks.len(), 11, "{}", report(&checks));
    assert!(
        checks.iter().all(|c| c.status == CheckStatus::Ok),
        "{}",
        report(&checks)
    );
    assert!(preflight_passed(&checks));
    assert_check(
        &checks,
        Check::PUBLICATION,
        CheckStatus::Ok,
        &["will create"],
        &[],
    );
    assert_check(
        &checks,
        Check::REPLICATION_SLOT,
        CheckStatus::Ok,
        &["will create", "does not exist"],
        &[],
    );
    assert_check(
        &checks,
        Check::CONNECTION,
        CheckStatus::Ok,
        &["TLS off", "sslmode prefer"],
        &[],
    );
    assert_check(
        &checks,
        Check::REPLICATION_ROLE,
        CheckStatus::Ok,
        &["superuser"],
        &[],
    );

    // Read-only: nothing was created.
    assert!(!slot_status(&config).await.unwrap().exists());

    create_slot(&config).await.unwrap();
    let checks = preflight(&config).await;
    assert!(
        checks.iter().all(|c| c.status == CheckStatus::Ok),
        "{}",
        report(&checks)
    );
    assert_check(
        &checks,
        Check::PUBLICATION,
        CheckStatus::Ok,
        &["inserts of public.outbox only"],
        &[],
    );
    assert_check(
        &checks,
        Check::REPLICATION_SLOT,
        CheckStatus::Ok,
        &["exists", "wal_status reserved"],
        &[],
    );

    // Logical-message mode needs no table.
    let bare = TestDb::create(&Services::from_env()).await;
    let messages = SourceConfig {
        mode: OutboxMode::LogicalMessage {
            prefix: "outbox".into(),
        },
        ..common::config(&bare)
    };
    let checks = preflight(&messages).await;
    assert!(
        checks.iter().all(|c| c.status == CheckStatus::Ok),
        "{}",
        report(&checks)
    );
}

#[tokio::test]
async fn preflight_fails_on_a_missing_table() {
    let db = TestDb::create(&Services::from_env()).await;
    let checks = preflight(&config(&db)).await;
    assert!(!preflight_passed(&checks));
    assert_check(
        &checks,
        Check::OUTBOX_TABLE,
        CheckStatus::Fail,
        &["public.outbox does not exist"],
        &["config/outbox.sql", "source.table"],
    );
}

#[tokio::test]
async fn preflight_fails_on_a_missing_column() {
    let db = outbox_db().await;
    exec(&db, &["ALTER TABLE outbox DROP COLUMN payload"]).await;
    let checks = preflight(&config(&db)).await;
    assert!(!preflight_passed(&checks));
    assert_check(
        &checks,
        Check::OUTBOX_TABLE,
        CheckStatus::Fail,
        &["public.outbox has no column \"payload\""],
        &["[source.columns] payload = "],
    );
}

#[tokio::test]
async fn preflight_fails_on_a_missing_publication_it_may_not_create() {
    let db = outbox_db().await;
    let config = SourceConfig {
        create_publication: false,
        create_slot: false,
        ..config(&db)
    };
    let checks = preflight(&config).await;
    assert!(!preflight_passed(&checks));
    let create = format!(
        "CREATE PUBLICATION \"{}\" FOR TABLE \"public\".\"outbox\"",
        config.publication
    );
    assert_check(
        &checks,
        Check::PUBLICATION,
        CheckStatus::Fail,
        &["does not exist and create_publication = false"],
        &[&create, "publish = 'insert'"],
    );
    assert_check(
        &checks,
        Check::REPLICATION_SLOT,
        CheckStatus::Fail,
        &["create_slot = false"],
        &["outboxd slot create", "pg_create_logical_replication_slot"],
    );
}

#[tokio::test]
async fn preflight_warns_about_a_publication_that_publishes_deletes_or_other_tables() {
    let db = outbox_db().await;
    let config = config(&db);
    exec(
        &db,
        &[
            "CREATE TABLE orders (id int PRIMARY KEY)",
            &format!(
                "CREATE PUBLICATION {} FOR TABLE outbox, orders",
                config.publication
            ),
        ],
    )
    .await;
    let checks = preflight(&config).await;
    assert!(preflight_passed(&checks), "warnings pass:\n{}", report(&checks));
    assert_check(
        &checks,
        Check::PUBLICATION,
        CheckStatus::Warn,
        &[
            "cleanup DELETEs will be streamed and ignored",
            "also publishes public.orders",
        ],
        &[
            "publish = 'insert'",
            &format!(
                "ALTER PUBLICATION {} SET TABLE public.outbox;",
                config.publication
            ),
        ],
    );

    // Without the outbox table, it fails.
    exec(
        &db,
        &[&format!(
            "ALTER PUBLICATION {} DROP TABLE outbox",
            config.publication
        )],
    )
    .await;
    let checks = preflight(&config).await;
    assert_check(
        &checks,
        Check::PUBLICATION,
        CheckStatus::Fail,
        &["does not include public.outbox"],
        &["ADD TABLE public.outbox"],
    );
}

#[tokio::test]
async fn preflight_fails_on_a_partitioned_outbox_published_under_its_partitions() {
    let db = TestDb::create(&Services::from_env()).await;
    let config = config(&db);
    exec(
        &db,
        &[
            "CREATE TABLE outbox (id uuid NOT NULL DEFAULT gen_random_uuid(), aggregate_type text NOT NULL, \
             aggregate_id text NOT NULL, event_type text NOT NULL, payload jsonb NOT NULL, \
             created_at timestamptz NOT NULL DEFAULT now()) PARTITION BY RANGE (created_at)",
            "CREATE TABLE outbox_all PARTITION OF outbox DEFAULT",
            &format!(
                "CREATE PUBLICATION {} FOR TABLE outbox WITH (publish = 'insert')",
                config.publication
            ),
        ],
    )
    .await;
    let checks = preflight(&config).await;
    assert_check(
        &checks,
        Check::PUBLICATION,
        CheckStatus::Fail,
        &["partitioned"],
        &["publish_via_partition_root = true"],
    );
    assert_check(&checks, Check::OUTBOX_TABLE, CheckStatus::Ok, &[], &[]);
}

#[tokio::test]
async fn preflight_names_the_address_of_an_unreachable_server() {
    let port = free_port();
    let config = SourceConfig {
        pg_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        ..SourceConfig::default()
    };
    let started = Instant::now();
    let checks = preflight(&config).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_check(
        &checks,
        Check::CONNECTION,
        CheckStatus::Fail,
        &[&format!("127.0.0.1:{port}")],
        &[&format!("listening on 127.0.0.1:{port}"), "source.pg_url"],
    );
    let skipped: Vec<_> = checks.iter().skip(2).collect();
    assert_eq!(skipped.len(), 9);
    assert!(
        skipped
            .iter()
            .all(|c| c.status == CheckStatus::Skipped && c.detail == "skipped: no connection"),
        "{}",
        report(&checks)
    );

    let e = slot_status(&config).await.unwrap_err();
    assert!(
        matches!(
            &e,
            WalError::Connect {
                failure: ConnectFailure::Unreachable,
                ..
            }
        ) && e.is_retriable(),
        "{e}"
    );
}

#[tokio::test]
async fn preflight_fails_on_a_missing_database() {
    let db = outbox_db().await;
    let config = SourceConfig {
        pg_url: db.url.replace(&db.name, "no_such_database"),
        ..config(&db)
    };
    let checks = preflight(&config).await;
    assert_check(&checks, Check::CONNECTION, CheckStatus::Ok, &["reached"], &[]);
    assert_check(
        &checks,
        Check::LOGIN,
        CheckStatus::Fail,
        &["no_such_database"],
        &["create database \"no_such_database\""],
    );
}
