//! Preflight, slot creation and TLS against throwaway clusters with settings the shared server must not
//! have: `wal_level = replica` with password authentication, and TLS with a test CA.

mod common;

use common::checks::{find as check, report};
use common::cluster::{Certs, Cluster, Setup};
use common::{collect, OUTBOX_SQL};
use outboxd_core::Lsn;
use outboxd_testkit::unique_name;
use outboxd_wal::admin::{create_slot, preflight, preflight_passed, slot_status, Check, CheckStatus};
use outboxd_wal::{ConnectFailure, Source, SourceConfig, WalError};
use std::path::PathBuf;
use std::time::Duration;

fn source(pg_url: String) -> SourceConfig {
    SourceConfig {
        pg_url,
        slot: unique_name("slot"),
        publication: unique_name("pub"),
        status_interval_ms: 50,
        shutdown_timeout_ms: 5_000,
        ..SourceConfig::default()
    }
}

#[tokio::test]
async fn wal_level_replica_and_password_logins() {
    let cluster = Cluster::start(Setup {
        conf: "wal_level = replica\npassword_encryption = 'scram-sha-256'",
        hba: Some(
            "local all all trust\nhost all postgres 127.0.0.1/32 trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
        ),
        ..Setup::default()
    })
    .await;
    cluster.execute(OUTBOX_SQL).await;
    cluster.execute("CREATE ROLE app LOGIN PASSWORD 'right'").await;

    let superuser = source(cluster.url("postgres"));
    let checks = preflight(&superuser).await;
    assert!(!preflight_passed(&checks));
    let wal = check(&checks, Check::WAL_LEVEL);
    assert_eq!(wal.status, CheckStatus::Fail, "{}", report(&checks));
    assert!(wal.detail.contains("wal_level = replica"), "{wal}");
    assert!(
        wal.fix
            .as_deref()
            .unwrap_or_default()
            .contains("ALTER SYSTEM SET wal_level = logical")
            && wal.fix.as_deref().unwrap_or_default().contains("restart"),
        "{wal}"
    );
    for name in [
        Check::CONNECTION,
        Check::LOGIN,
        Check::SERVER_VERSION,
        Check::OUTBOX_TABLE,
    ] {
        assert_eq!(
            check(&checks, name).status,
            CheckStatus::Ok,
            "{}",
            report(&checks)
        );
    }
    let e = create_slot(&superuser).await.unwrap_err();
    assert!(matches!(e, WalError::WalLevel { .. }), "{e}");
    let e = Source::start(superuser.clone(), Lsn::ZERO).await.unwrap_err();
    assert!(matches!(e, WalError::WalLevel { .. }) && !e.is_retriable(), "{e}");

    // A wrong password: the login check names the user and where the password comes from.
    let wrong = SourceConfig {
        password: Some("wrong".into()),
        ..source(cluster.url("app"))
    };
    let checks = preflight(&wrong).await;
    assert_eq!(
        check(&checks, Check::CONNECTION).status,
        CheckStatus::Ok,
        "{}",
        report(&checks)
    );
    let login = check(&checks, Check::LOGIN);
    assert_eq!(login.status, CheckStatus::Fail, "{}", report(&checks));
    assert!(login.detail.contains("\"app\""), "{login}");
    assert!(
        login
            .fix
            .as_deref()
            .unwrap_or_default()
            .contains("source.password"),
        "{login}"
    );
    assert!(check(&checks, Check::WAL_LEVEL).status == CheckStatus::Skipped);
    let e = slot_status(&wrong).await.unwrap_err();
    assert!(
        matches!(
            &e,
            WalError::Connect {
                failure: ConnectFailure::Authentication,
                ..
            }
        ) && !e.is_retriable(),
        "{e}"
    );

    // The right password (from `password`, overriding the URL's none), but no REPLICATION attribute.
    let right = SourceConfig {
        password: Some("right".into()),
        ..source(cluster.url("app"))
    };
    let checks = preflight(&right).await;
    let role = check(&checks, Check::REPLICATION_ROLE);
    assert_eq!(role.status, CheckStatus::Fail, "{}", report(&checks));
    assert!(
        role.fix
            .as_deref()
            .unwrap_or_default()
            .contains("ALTER ROLE app WITH REPLICATION"),
        "{role}"
    );
    let publication = check(&checks, Check::PUBLICATION);
    assert_eq!(
        publication.status,
        CheckStatus::Fail,
        "app may not create it:\n{}",
        report(&checks)
    );
    assert!(publication.detail.contains("may not create it"), "{publication}");
}

#[tokio::test]
async fn tls_modes_and_a_replication_stream_over_verified_tls() {
    let certs = Certs::generate();
    let cluster = Cluster::start(Setup {
        conf: "wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\nssl = on\n\
               ssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'",
        files: &[
            ("server.pem", certs.server_cert.as_path()),
            ("server.key", certs.server_key.as_path()),
        ],
        ..Setup::default()
    })
    .await;
    cluster.execute(OUTBOX_SQL).await;
    let port = cluster.port;
    let with = |host: &str, mode: &str, root: Option<&PathBuf>| SourceConfig {
        ssl_root_cert: root.cloned(),
        ..source(format!(
            "postgres://postgres@{host}:{port}/postgres?sslmode={mode}"
        ))
    };
    let connection = |checks: Vec<Check>| check(&checks, Check::CONNECTION).clone();

    for (config, why) in [
        (
            with("127.0.0.1", "require", None),
            "require: encrypted, not checked",
        ),
        (with("127.0.0.1", "prefer", None), "prefer: TLS when offered"),
        (
            with("localhost", "verify-full", Some(&certs.ca)),
            "verify-full by the certificate's name",
        ),
        (
            with("127.0.0.1", "verify-ca", Some(&certs.ca)),
            "verify-ca ignores the name",
        ),
    ] {
        let c = connection(preflight(&config).await);
        assert_eq!(c.status, CheckStatus::Ok, "{why}: {c}");
        assert!(c.detail.contains("TLS on (TLSv1."), "{why}: {c}");
    }

    let wrong_name = connection(preflight(&with("127.0.0.1", "verify-full", Some(&certs.ca))).await);
    assert_eq!(wrong_name.status, CheckStatus::Fail, "{wrong_name}");
    assert!(
        wrong_name
            .fix
            .as_deref()
            .unwrap_or_default()
            .contains("sslmode=verify-ca"),
        "{wrong_name}"
    );
    let wrong_ca = with("localhost", "verify-full", Some(&certs.other_ca));
    let failed = connection(preflight(&wrong_ca).await);
    assert_eq!(failed.status, CheckStatus::Fail, "{failed}");
    assert!(
        failed.detail.to_lowercase().contains("certificate")
            && failed
                .fix
                .as_deref()
                .unwrap_or_default()
                .contains("source.ssl_root_cert"),
        "{failed}"
    );
    let e = slot_status(&wrong_ca).await.unwrap_err();
    assert!(
        matches!(
            &e,
            WalError::Connect {
                failure: ConnectFailure::Tls,
                ..
            }
        ),
        "{e}"
    );

    // Both connections of the source over verified TLS: set-up and replication.
    let config = with("localhost", "verify-full", Some(&certs.ca));
    let (handle, mut rx) = Source::start(config.clone(), Lsn::ZERO).await.unwrap();
    cluster
        .execute(
            "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) \
             VALUES ('order', 'tls-1', 'Created', '{}')",
        )
        .await;
    let txns = collect(&mut rx, 1, Duration::from_secs(30)).await;
    assert_eq!(txns[0].keys(), ["tls-1"]);
    let status = slot_status(&config).await.unwrap();
    let pid = status
        .details
        .and_then(|d| d.active_pid)
        .expect("an active walsender");
    let (client, conn) = tokio_postgres::connect(&cluster.url("postgres"), tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    let ssl: bool = client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = $1", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the walsender's connection is encrypted");
    drop(client);
    let _ = task.await;
    handle.shutdown().await.unwrap();
}
