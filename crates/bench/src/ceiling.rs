//! The ceiling: `pg_recvlogical` with pgoutput (protocol 1, the same publication) draining a slot up to the
//! position after the pre-written rows, output discarded. Nothing reads a slot faster than the walsender
//! sends it, so this is the most any relay can get out of this Postgres.

use crate::env::Services;
use anyhow::{bail, Context, Result};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;

/// What one drain needs.
#[derive(Debug)]
pub struct CeilingRun<'a> {
    /// Tools and cluster.
    pub services: &'a Services,
    /// URL of the run's database.
    pub db_url: &'a str,
    /// The slot to drain (created before the rows were written).
    pub slot: &'a str,
    /// Publication name.
    pub publication: &'a str,
    /// Stop at this position (`--endpos`).
    pub end_lsn: &'a str,
    /// Give up (kill it) after this long.
    pub timeout: Duration,
}

impl CeilingRun<'_> {
    /// The command, for the report (with placeholders for what changes from run to run).
    pub fn command_line() -> String {
        format!(
            "pg_recvlogical -d <run db url> --slot <run>_ceiling --start --endpos <flushed LSN after the writes> \
             -f /dev/null --no-loop -o proto_version=1 -o publication_names={}",
            crate::pg::PUBLICATION
        )
    }

    /// Runs it; returns the wall time from spawn to exit.
    pub async fn run(&self) -> Result<Duration> {
        let bin = self.services.pg_bin.join("pg_recvlogical");
        let started = Instant::now();
        let mut child = Command::new(&bin)
            .args([
                "-d",
                self.db_url,
                "--slot",
                self.slot,
                "--start",
                "--endpos",
                self.end_lsn,
            ])
            .args(["-f", "/dev/null", "--no-loop"])
            .args(["-o", "proto_version=1", "-o"])
            .arg(format!("publication_names={}", self.publication))
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = child.stderr.take();
        let status = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                child.kill().await.ok();
                bail!(
                    "pg_recvlogical did not reach {} within {:?}",
                    self.end_lsn,
                    self.timeout
                );
            }
        };
        let elapsed = started.elapsed();
        if !status.success() {
            let mut text = String::new();
            if let Some(mut e) = stderr {
                use tokio::io::AsyncReadExt;
                e.read_to_string(&mut text).await.ok();
            }
            bail!("pg_recvlogical failed ({status}): {}", text.trim());
        }
        Ok(elapsed)
    }
}
