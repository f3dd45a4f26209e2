//! Where the services are (the `OUTBOXD_*` variables printed by `scripts/services env`), and run names.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of every database, slot, topic and transactional id the bench creates; leftovers of a crashed run
/// are found (and removed) by it.
pub const PREFIX: &str = "outboxd_bench";

/// The local services and tools.
#[derive(Clone, Debug)]
pub struct Services {
    /// Superuser URL of the cluster (database `postgres`).
    pub pg_url: String,
    /// Kafka bootstrap servers.
    pub kafka_bootstrap: String,
    /// Schema registry base URL.
    pub registry_url: String,
    /// Directory of the Postgres binaries (`pg_recvlogical`).
    pub pg_bin: PathBuf,
}

fn required(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| {
        format!("{name} is not set: run through scripts/bench, or `eval \"$(scripts/services env)\"` first")
    })
}

impl Services {
    /// Reads the services from the environment.
    pub fn from_env() -> Result<Services> {
        Ok(Services {
            pg_url: required("OUTBOXD_PG_URL")?,
            kafka_bootstrap: required("OUTBOXD_KAFKA_BOOTSTRAP")?,
            registry_url: required("OUTBOXD_REGISTRY_URL")?,
            pg_bin: std::env::var("OUTBOXD_PG_BIN")
                .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into())
                .into(),
        })
    }

    /// The cluster URL with another database.
    pub fn pg_url_for(&self, database: &str) -> Result<String> {
        with_database(&self.pg_url, database)
    }
}

/// Replaces the database of a `postgres://...[/db][?params]` URL.
pub fn with_database(url: &str, database: &str) -> Result<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!("OUTBOXD_PG_URL {url:?} is not a postgres:// URL");
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let host = rest.split_once('/').map_or(rest, |(h, _)| h);
    let mut out = format!("{scheme}://{host}/{database}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// A fresh name for one run: `outboxd_bench_<pid>_<n>`, valid for databases, slots and topics alike.
pub fn run_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{PREFIX}_{}_{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database() {
        let u = "postgres://postgres@127.0.0.1:54329/postgres";
        assert_eq!(
            with_database(u, "b1").unwrap(),
            "postgres://postgres@127.0.0.1:54329/b1"
        );
        let u = "postgres://u:p@h:1?sslmode=disable";
        assert_eq!(
            with_database(u, "b1").unwrap(),
            "postgres://u:p@h:1/b1?sslmode=disable"
        );
        assert!(with_database("host=x", "b1").is_err());
        assert!(run_name().starts_with(PREFIX));
        assert_ne!(run_name(), run_name());
    }
}
