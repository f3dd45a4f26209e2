//! Steady-rate writers for the latency runs: `writers` sessions, each committing a transaction of `per_tx`
//! rows on its own ticker, staggered so that commits are spread evenly (synchronous commit, as an
//! application would). A writer that falls behind catches up (the ticker bursts); the achieved rate is
//! reported next to the target.

use crate::pg::{connect, INSERT_RANGE_SQL};
use anyhow::{Context, Result};
use std::time::{Duration, Instant};

/// The load.
#[derive(Clone, Debug)]
pub struct WriterSpec {
    /// Database URL.
    pub db_url: String,
    /// Target events per second, all writers together.
    pub rate: u64,
    /// Rows per transaction.
    pub per_tx: u64,
    /// How long to write.
    pub duration: Duration,
    /// Parallel sessions.
    pub writers: u64,
    /// Index of the first row (rows are `first..first + events`).
    pub first: u64,
}

/// What was written.
#[derive(Clone, Copy, Debug)]
pub struct WriterTally {
    /// Rows committed.
    pub events: u64,
    /// Wall time from the first to the last commit's return.
    pub elapsed: Duration,
}

impl WriterSpec {
    /// Transactions in total.
    fn transactions(&self) -> u64 {
        (self.rate * self.duration.as_millis() as u64 / 1000 / self.per_tx).max(1)
    }
}

/// Writes the load; returns once every transaction has committed.
pub async fn run(spec: &WriterSpec) -> Result<WriterTally> {
    let txs = spec.transactions();
    let writers = spec.writers.clamp(1, txs);
    // Each writer commits every `period`; writer w starts w/writers of a period late.
    let period = Duration::from_secs_f64((writers * spec.per_tx) as f64 / spec.rate as f64);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let spec = spec.clone();
        tasks.push(tokio::spawn(async move {
            let client = connect(&spec.db_url).await?;
            let insert = client.prepare(INSERT_RANGE_SQL).await?;
            let start = tokio::time::Instant::now() + period.mul_f64(w as f64 / writers as f64);
            let mut ticker = tokio::time::interval_at(start, period);
            let mut events = 0u64;
            let mut tx = w;
            while tx < txs {
                ticker.tick().await;
                let first = (spec.first + tx * spec.per_tx) as i64;
                let last = first + spec.per_tx as i64 - 1;
                client
                    .execute(&insert, &[&first, &last])
                    .await
                    .context("writer INSERT")?;
                events += spec.per_tx;
                tx += writers;
            }
            anyhow::Ok(events)
        }));
    }
    let mut events = 0;
    for t in tasks {
        events += t.await.context("writer task")??;
    }
    Ok(WriterTally {
        events,
        elapsed: started.elapsed(),
    })
}
