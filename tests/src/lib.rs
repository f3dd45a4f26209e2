//! Test support shared by every outboxd test that talks to real services.
//!
//! ```text
//!  scripts/services env ──OUTBOXD_* vars──▶ Services::from_env()
//!        ├── TestDb::create()      fresh database (dropped, with its slots, when the test ends)
//!        ├── unique_name("slot")   fresh slot / publication / topic / transactional.id names
//!        ├── kafka::create_topic() / kafka::drain()   topics and read_committed / read_uncommitted reads
//!        ├── cluster::Cluster::start()   a throwaway Postgres cluster with settings of its own (wal_level, ...)
//!        └── wait_until(deadline, condition)          waiting without fixed sleeps
//! ```
//!
//! A missing service is a loud failure, never a skip: every constructor panics with what to run.

pub mod cluster;
pub mod kafka;
mod pg;
pub mod registry;

pub use pg::TestDb;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Where the local services are, as printed by `scripts/services env`.
#[derive(Clone, Debug)]
pub struct Services {
    /// Superuser connection URL of the local Postgres cluster (database `postgres`).
    pub pg_url: String,
    /// Kafka bootstrap servers (`host:port`).
    pub kafka_bootstrap: String,
    /// Base URL of the Confluent-compatible schema registry.
    pub registry_url: String,
    /// Directory holding the Postgres binaries (`pg_recvlogical`, `pg_ctl`).
    pub pg_bin: String,
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the tests need the local services. Run `scripts/test`, or \
             `scripts/services up && eval \"$(scripts/services env)\"` before `cargo test`."
        )
    })
}

impl Services {
    /// Reads the service addresses from the environment; panics with a fix-it message when they are absent.
    pub fn from_env() -> Services {
        Services {
            pg_url: required_env("OUTBOXD_PG_URL"),
            kafka_bootstrap: required_env("OUTBOXD_KAFKA_BOOTSTRAP"),
            registry_url: required_env("OUTBOXD_REGISTRY_URL"),
            pg_bin: std::env::var("OUTBOXD_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
        }
    }
}

/// A name that no other test (in this or another process) uses: `prefix_<pid>_<n>_<random>`, made only of
/// `[a-z0-9_]` so it is valid for slots, publications, databases, topics and transactional ids alike.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let r: u32 = rand::random();
    format!("{prefix}_{}_{n}_{:08x}", std::process::id(), r)
}

/// Polls `condition` until it returns `Some`, or panics naming `what` once `timeout` has passed. The pause
/// between polls is a poll interval, not a synchronisation: the outcome depends only on the condition.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut interval = Duration::from_millis(10);
    loop {
        if let Some(v) = condition().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(Duration::from_millis(200));
    }
}
