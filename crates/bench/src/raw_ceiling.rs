//! The second ceiling: a minimal replication client on its own twin slot that only takes the stream's message
//! boundaries (pgwire-replication decodes Begin and Commit and nothing else here) and acknowledges each commit,
//! with no mapping and no output. At small transactions `pg_recvlogical` (which writes every message to its
//! output) is slower than this, so "the ceiling" of every ratio is the faster of the two.

use anyhow::{bail, Context, Result};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent, SslMode, TlsConfig};
use std::time::{Duration, Instant};

/// What one drain needs.
#[derive(Debug)]
pub struct RawCeilingRun<'a> {
    /// URL of the run's database.
    pub db_url: &'a str,
    /// The slot to drain (created with the others, before the rows were written).
    pub slot: &'a str,
    /// Publication name.
    pub publication: &'a str,
    /// Stop at this position.
    pub end_lsn: &'a str,
    /// Give up after this long.
    pub timeout: Duration,
}

impl RawCeilingRun<'_> {
    /// How it runs, for the report.
    pub fn command_line() -> &'static str {
        "a pgwire-replication client on slot <run>_raw (pgoutput proto 1, same publication): read to the same end \
         position, acknowledging each commit, no decoding beyond Begin/Commit, no output"
    }

    /// Runs it; returns the wall time from connecting to reaching the end position, and the commits seen.
    pub async fn run(&self) -> Result<(Duration, u64)> {
        let pg: tokio_postgres::Config = self.db_url.parse().context("the run's database URL")?;
        let host = match pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        };
        let user = pg.get_user().unwrap_or("postgres").to_string();
        let password = String::from_utf8_lossy(pg.get_password().unwrap_or_default()).into_owned();
        let database = pg.get_dbname().unwrap_or("postgres").to_string();
        let end = Lsn::parse(self.end_lsn).map_err(|e| anyhow::anyhow!("end position: {e}"))?;
        let config = ReplicationConfig::new(host, user, password, database, self.slot, self.publication)
            .with_port(pg.get_ports().first().copied().unwrap_or(5432))
            .with_tls(TlsConfig {
                mode: SslMode::Disable,
                ..TlsConfig::default()
            });
        let started = Instant::now();
        let mut client = ReplicationClient::connect(config).await?;
        let mut commits = 0u64;
        let drain = async {
            // As pg_recvlogical's --endpos: done at a commit, or a keepalive, at or past the end position.
            while let Some(event) = client.recv().await? {
                match event {
                    ReplicationEvent::Commit { end_lsn, .. } => {
                        commits += 1;
                        client.update_applied_lsn(end_lsn);
                        if end_lsn >= end {
                            break;
                        }
                    }
                    ReplicationEvent::KeepAlive { wal_end, .. } if wal_end >= end => break,
                    _ => {}
                }
            }
            anyhow::Ok(())
        };
        match tokio::time::timeout(self.timeout, drain).await {
            Ok(r) => r?,
            Err(_) => bail!(
                "the raw client did not reach {} within {:?}",
                self.end_lsn,
                self.timeout
            ),
        }
        let elapsed = started.elapsed();
        let _ = client.shutdown().await;
        Ok((elapsed, commits))
    }
}
