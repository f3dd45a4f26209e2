//! Retention: deleting outbox rows that are old enough and already committed in Kafka, in small batches.
//!
//! Each batch is one `REPEATABLE READ` transaction. Its snapshot `X` is taken by its first statement, which
//! also reads the WAL insert position `W`: every transaction visible in `X` committed before `X` was taken,
//! so its commit record lies before `W`. The batch then waits until the slot's `confirmed_flush_lsn` reaches
//! `W`; outboxd confirms a position only after the Kafka transaction holding everything before it committed,
//! so from then on every stream row visible in `X` is in Kafka (on its topic or the dead-letter topic). Only
//! then does it delete, and only rows visible in `X` (the transaction's own snapshot):
//!
//! - rows created (`created_at`, set by the database) at or after the slot's creation time: their
//!   transaction began after the slot existed, so they are stream rows;
//! - once the backfill is complete, the rows matching its predicate: it relayed them.
//!
//! Rows that predate the slot and were not backfilled are never deleted. A relay that is stopped confirms
//! nothing, so a batch then deletes nothing.

use crate::backfill::BackfillConfig;
use crate::connect::PgTarget;
use crate::mapping::Field;
use crate::setup::{parse_lsn, quote_ident, slot_row};
use crate::{SourceConfig, WalError};
use outboxd_core::{Lsn, SlotOrigin};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// `[source.retention]`: delete relayed rows older than an age.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Delete relayed rows whose `created_at` is older than this many seconds. Absent: keep every row.
    pub max_age_s: Option<u64>,
    /// Pause between sweeps, in ms.
    pub interval_ms: u64,
    /// Rows deleted per transaction.
    pub batch_rows: usize,
    /// How long a sweep waits for the relay to confirm its snapshot's WAL position before giving up (it
    /// deletes nothing then), in ms.
    pub confirm_timeout_ms: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_age_s: None,
            interval_ms: 60_000,
            batch_rows: 1_000,
            confirm_timeout_ms: 30_000,
        }
    }
}

/// What the rows' state allows a sweep to delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionBasis {
    /// The slot's origin (its creation time bounds the stream rows).
    pub origin: SlotOrigin,
    /// True once the backfill is complete (its predicate's rows are relayed).
    pub backfill_done: bool,
}

/// The delete statement of one batch: rows older than the age that are known to be relayed.
pub(crate) fn delete_sql(
    table: &(String, String),
    created_at: &str,
    backfill: Option<&BackfillConfig>,
    batch: usize,
) -> String {
    let col = quote_ident(created_at);
    let mut relayed = format!("{col} >= $2::text::timestamptz");
    if let Some(b) = backfill {
        relayed = match &b.predicate {
            Some(p) => format!("{relayed} OR ({p})"),
            None => "true".into(),
        };
    }
    let t = format!("{}.{}", quote_ident(&table.0), quote_ident(&table.1));
    format!(
        "DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} \
         WHERE {col} < now() - make_interval(secs => $1::text::float8) AND ({relayed}) LIMIT {batch}))"
    )
}

/// Deletes relayed rows, batch after batch.
#[derive(Debug)]
pub struct Retention {
    client: Client,
    slot: String,
    sql: String,
    age_s: String,
    confirm_timeout: Duration,
    batch: usize,
}

impl Retention {
    /// Connects and prepares the delete statement. Fails when the mapping has no `created_at` column.
    pub async fn open(config: &SourceConfig, basis: &RetentionBasis) -> Result<Retention, WalError> {
        let retention = &config.retention;
        let max_age = retention
            .max_age_s
            .ok_or_else(|| WalError::Config("source.retention.max_age_s is not set".into()))?;
        let created_at = config.columns.column_of(Field::CreatedAt).ok_or_else(|| {
            WalError::Config("source.retention needs a created_at column: map columns.created_at".into())
        })?;
        let client = PgTarget::new(config)?.connect().await?;
        let table = config.table_name()?;
        let backfill = basis.backfill_done.then_some(&config.backfill);
        Ok(Retention {
            client,
            slot: config.slot.clone(),
            sql: delete_sql(&table, &created_at, backfill, retention.batch_rows.max(1)),
            age_s: max_age.to_string(),
            confirm_timeout: Duration::from_millis(retention.confirm_timeout_ms),
            batch: retention.batch_rows.max(1),
        })
    }

    /// Rows one batch deletes at most.
    pub fn batch_rows(&self) -> usize {
        self.batch
    }

    /// One batch in its own transaction: waits for the relay to confirm the snapshot's position, then deletes
    /// up to [`Retention::batch_rows`] relayed rows. Returns the rows deleted (0 when the relay did not confirm
    /// in time).
    pub async fn delete_batch(&mut self, basis: &RetentionBasis) -> Result<u64, WalError> {
        let pg = |what: &'static str| WalError::pg(what);
        let c = &self.client;
        c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            .await
            .map_err(pg("starting a retention sweep"))?;
        let result = self.delete_when_confirmed(basis).await;
        let end = match result {
            Ok(n) if n > 0 => "COMMIT",
            _ => "ROLLBACK",
        };
        c.batch_execute(end)
            .await
            .map_err(pg("ending a retention sweep"))?;
        result
    }

    async fn delete_when_confirmed(&self, basis: &RetentionBasis) -> Result<u64, WalError> {
        let pg = |what: &'static str| WalError::pg(what);
        // The snapshot is taken by this first statement; the insert position is read after it.
        let row = self
            .client
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .map_err(pg("reading the WAL position"))?;
        let position = parse_lsn(row.get(0))?.unwrap_or(Lsn::ZERO);
        if !self.confirmed_past(position).await? {
            tracing::debug!(%position, "retention: the relay has not confirmed the sweep's position yet; nothing deleted");
            return Ok(0);
        }
        self.client
            .execute(&self.sql, &[&self.age_s, &basis.origin.time])
            .await
            .map_err(pg("deleting relayed outbox rows"))
    }

    /// Waits (up to the timeout) until the slot's confirmed position reaches `position`.
    async fn confirmed_past(&self, position: Lsn) -> Result<bool, WalError> {
        let deadline = Instant::now() + self.confirm_timeout;
        loop {
            let confirmed = match slot_row(&self.client, &self.slot).await? {
                Some(row) => parse_lsn(row.confirmed_flush)?.unwrap_or(Lsn::ZERO),
                None => return Ok(false),
            };
            if confirmed >= position {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delete_keeps_to_stream_rows_until_the_backfill_is_done() {
        let table = ("public".to_string(), "outbox".to_string());
        let stream_only = delete_sql(&table, "created_at", None, 500);
        assert_eq!(
            stream_only,
            "DELETE FROM \"public\".\"outbox\" WHERE ctid = ANY(ARRAY(SELECT ctid FROM \"public\".\"outbox\" \
             WHERE \"created_at\" < now() - make_interval(secs => $1::text::float8) \
             AND (\"created_at\" >= $2::text::timestamptz) LIMIT 500))"
        );
        let pending = BackfillConfig {
            predicate: Some("status = 'PENDING'".into()),
            ..BackfillConfig::default()
        };
        let done = delete_sql(&table, "created_at", Some(&pending), 500);
        assert!(
            done.contains("AND (\"created_at\" >= $2::text::timestamptz OR (status = 'PENDING'))"),
            "{done}"
        );
        let all = delete_sql(&table, "created_at", Some(&BackfillConfig::default()), 500);
        assert!(all.contains("AND (true)"), "{all}");
    }
}
