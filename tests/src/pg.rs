//! A fresh Postgres database per test, dropped (with its replication slots) when the test ends.

use crate::{unique_name, Services};
use tokio_postgres::{Client, NoTls};

/// A database of its own for one test. Dropping it terminates its sessions (walsenders included), drops
/// its replication slots (so they retain no WAL) and drops the database; set `OUTBOXD_TEST_KEEP=1` to keep it.
#[derive(Debug)]
pub struct TestDb {
    /// The database name.
    pub name: String,
    /// Connection URL of this database (superuser).
    pub url: String,
    /// An open connection to it.
    pub client: Client,
    admin_url: String,
}

/// Connects, spawning the connection task; panics with the address when Postgres does not answer.
pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap_or_else(|e| {
        panic!("cannot connect to Postgres at {url}: {e}. Is `scripts/services up` running?")
    });
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

fn with_database(url: &str, db: &str) -> String {
    // URLs from `scripts/services env` look like postgres://user@host:port/postgres[?params].
    let (base, params) = url.split_once('?').map_or((url, None), |(b, p)| (b, Some(p)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match params {
        Some(p) => format!("{base}/{db}?{p}"),
        None => format!("{base}/{db}"),
    }
}

impl TestDb {
    /// Creates a fresh, empty database.
    pub async fn create(services: &Services) -> TestDb {
        let name = unique_name("t");
        let admin = connect(&services.pg_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let url = with_database(&services.pg_url, &name);
        let client = connect(&url).await;
        TestDb {
            name,
            url,
            client,
            admin_url: services.pg_url.clone(),
        }
    }

    /// Creates a pgoutput logical replication slot with a fresh name and returns the name.
    pub async fn create_slot(&self) -> String {
        let slot = unique_name("slot");
        self.client
            .execute(
                "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&slot],
            )
            .await
            .unwrap_or_else(|e| panic!("creating slot {slot}: {e}"));
        slot
    }

    /// A new connection to this database.
    pub async fn connect(&self) -> Client {
        connect(&self.url).await
    }
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), tokio_postgres::Error> {
    let (admin, conn) = tokio_postgres::connect(admin_url, NoTls).await?;
    let task = tokio::spawn(conn);
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .await?;
    // A terminated walsender releases its slot asynchronously: retry the drop briefly.
    for _ in 0..100 {
        let res = admin
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1",
                &[&name],
            )
            .await;
        if res.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    drop(admin);
    let _ = task.await;
    Ok(())
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var_os("OUTBOXD_TEST_KEEP").is_some() {
            eprintln!("keeping test database {}", self.name);
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside a runtime; do the async clean-up on a thread of its own.
        let joined = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(drop_database(&admin_url, &name)).err()
        })
        .join();
        if let Ok(Some(e)) = joined {
            eprintln!("warning: could not drop test database {}: {e}", self.name);
        }
    }
}
