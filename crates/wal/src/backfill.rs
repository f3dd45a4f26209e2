//! Backfill: reading the rows that predate the slot, in chunks, in a stable order, from a resume position.
//!
//! The rows to relay are those whose inserting transaction is visible in the snapshot the slot exported
//! when outboxd created it ([`SlotOrigin`]): exactly the transactions the slot's stream does not carry. The
//! reader reads the table as it is now, in `order_by` order after the last key read, and keeps a row when
//! its `xmin` is visible in that snapshot and it matches the predicate; it maps rows with the same column
//! mapping as the stream (every column as text, as pgoutput sends them). Memory is one chunk.

use crate::connect::PgTarget;
use crate::mapping::{ColumnMapping, Field, ResolvedMapping};
use crate::pgoutput::{ColumnValue, TupleData};
use crate::setup::{quote_ident, table_columns};
use crate::{SourceConfig, WalError};
use outboxd_core::{Lsn, OutboxEvent, PgSnapshot, SlotOrigin};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

/// `[source.backfill]`: relay the rows that predate the slot before streaming.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackfillConfig {
    /// Relay the rows that were in the outbox table when outboxd created the slot (at a pipeline's first
    /// start), then stream. Off: they are counted, reported and not relayed.
    pub enabled: bool,
    /// An SQL condition on the table's columns selecting which of those rows to relay (e.g.
    /// `status = 'PENDING'`), evaluated when each row is read. Absent: all of them.
    pub predicate: Option<String>,
    /// The columns giving the relay order and the resume position; together they must be unique (end with
    /// the primary key). Empty: the mapped `created_at` column, when the table has it, then the `id` column.
    pub order_by: Vec<String>,
    /// Rows read per chunk; each chunk is relayed in one Kafka transaction, with the progress.
    pub chunk_rows: usize,
}

impl Default for BackfillConfig {
    fn default() -> Self {
        BackfillConfig {
            enabled: false,
            predicate: None,
            order_by: Vec::new(),
            chunk_rows: 2_000,
        }
    }
}

/// One order column: its name, how it is compared (type, and a fill for NULLs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyColumn {
    pub name: String,
    /// `format_type` of the column, for casting the resume position back.
    pub type_name: String,
    /// The column may be NULL: compared as `COALESCE(col, '-infinity')` (time types only).
    pub nullable: bool,
}

impl KeyColumn {
    fn expr(&self) -> String {
        let col = quote_ident(&self.name);
        if self.nullable {
            format!("COALESCE({col}, '-infinity'::{})", self.type_name)
        } else {
            col
        }
    }
}

/// The chunk query: `$1..$k` are the last key read (as text); the first chunk has no key.
pub(crate) fn chunk_sql(
    table: &(String, String),
    columns: &[String],
    key: &[KeyColumn],
    predicate: Option<&str>,
    resume: bool,
    limit: usize,
) -> String {
    let mut select = vec!["xmin::text".to_string()];
    select.extend(key.iter().map(|k| format!("({})::text", k.expr())));
    select.extend(columns.iter().map(|c| format!("{}::text", quote_ident(c))));
    let mut conditions = Vec::new();
    if let Some(p) = predicate {
        conditions.push(format!("({p})"));
    }
    if resume {
        let exprs: Vec<String> = key.iter().map(KeyColumn::expr).collect();
        let params: Vec<String> = key
            .iter()
            .enumerate()
            .map(|(i, k)| format!("${}::text::{}", i + 1, k.type_name))
            .collect();
        conditions.push(format!("({}) > ({})", exprs.join(", "), params.join(", ")));
    }
    let filter = match conditions.is_empty() {
        true => String::new(),
        false => format!(" WHERE {}", conditions.join(" AND ")),
    };
    let order: Vec<String> = key.iter().map(KeyColumn::expr).collect();
    format!(
        "SELECT {} FROM {}.{}{filter} ORDER BY {} LIMIT {limit}",
        select.join(", "),
        quote_ident(&table.0),
        quote_ident(&table.1),
        order.join(", ")
    )
}

/// The default order: the mapped `created_at` column when the table has it, then the `id` column.
pub(crate) fn default_order(mapping: &ColumnMapping, has: impl Fn(&str) -> bool) -> Vec<String> {
    let mut order = Vec::new();
    if let Some(c) = mapping.column_of(Field::CreatedAt).filter(|c| has(c)) {
        order.push(c);
    }
    order.extend(mapping.column_of(Field::Id));
    order
}

/// One chunk of the backfill.
#[derive(Debug, Default)]
pub struct BackfillChunk {
    /// The rows to relay, mapped, in order.
    pub events: Vec<OutboxEvent>,
    /// The key of the last row read (kept or not): where the next chunk starts.
    pub last_key: Option<Vec<String>>,
    /// True when this chunk reached the end of the table.
    pub end: bool,
}

/// Reads the backfill's chunks.
#[derive(Debug)]
pub struct BackfillReader {
    client: Client,
    snapshot: PgSnapshot,
    mapping: ResolvedMapping,
    first_sql: String,
    resume_sql: String,
    key_width: usize,
    limit: usize,
}

const SESSION: &str =
    "SET bytea_output = hex; SET DateStyle = ISO; SET TimeZone = UTC; SET extra_float_digits = 3";

impl BackfillReader {
    /// Connects and checks the table, the order columns and the predicate (by running the first chunk's
    /// query with `LIMIT 0`).
    pub async fn open(
        config: &SourceConfig,
        backfill: &BackfillConfig,
        origin: &SlotOrigin,
    ) -> Result<Self, WalError> {
        let snapshot: PgSnapshot = origin
            .snapshot
            .parse()
            .map_err(|e| WalError::Config(format!("the checkpoint's slot origin: {e}")))?;
        let client = PgTarget::new(config)?.connect().await?;
        client
            .batch_execute(SESSION)
            .await
            .map_err(WalError::pg("setting the backfill session's options"))?;
        let table = config.table_name()?;
        let columns = table_columns(&client, &table.0, &table.1).await?;
        let names: Vec<(&str, u32)> = columns.iter().map(|(n, t)| (n.as_str(), *t)).collect();
        let mapping = config
            .columns
            .resolve(&format!("{}.{}", table.0, table.1), &names)?;
        let order = match backfill.order_by.is_empty() {
            true => default_order(&config.columns, |c| names.iter().any(|(n, _)| *n == c)),
            false => backfill.order_by.clone(),
        };
        let key = key_columns(&client, &table, &order).await?;
        let all: Vec<String> = columns.into_iter().map(|(n, _)| n).collect();
        let limit = backfill.chunk_rows.max(1);
        let predicate = backfill.predicate.as_deref();
        let first_sql = chunk_sql(&table, &all, &key, predicate, false, limit);
        let resume_sql = chunk_sql(&table, &all, &key, predicate, true, limit);
        let probe = chunk_sql(&table, &all, &key, predicate, false, 0);
        client.query(&probe, &[]).await.map_err(|e| {
            WalError::Config(format!(
                "source.backfill: the chunk query fails ({e}); check source.backfill.predicate and order_by: {first_sql}"
            ))
        })?;
        Ok(BackfillReader {
            client,
            snapshot,
            mapping,
            first_sql,
            resume_sql,
            key_width: key.len(),
            limit,
        })
    }

    /// Reads the next chunk after `after` (the last key read; `None` at the start).
    pub async fn next_chunk(&mut self, after: Option<&[String]>) -> Result<BackfillChunk, WalError> {
        let rows = match after {
            None => self.client.query(&self.first_sql, &[]).await,
            Some(key) => {
                let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = key
                    .iter()
                    .map(|k| k as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                self.client.query(&self.resume_sql, &params).await
            }
        }
        .map_err(WalError::pg("reading a backfill chunk"))?;
        let mut chunk = BackfillChunk {
            end: rows.len() < self.limit,
            ..BackfillChunk::default()
        };
        for row in &rows {
            let xmin: String = row.get(0);
            let key: Vec<String> = (1..=self.key_width).map(|i| row.get(i)).collect();
            let visible = xmin.parse::<u32>().is_ok_and(|x| self.snapshot.visible(x));
            if visible {
                let values: Vec<Option<String>> =
                    (1 + self.key_width..row.len()).map(|i| row.get(i)).collect();
                let tuple = TupleData {
                    columns: values
                        .iter()
                        .map(|v| match v {
                            Some(t) => ColumnValue::Text(t.as_bytes()),
                            None => ColumnValue::Null,
                        })
                        .collect(),
                };
                chunk.events.push(self.mapping.map_row(&tuple, Lsn::ZERO));
            }
            chunk.last_key = Some(key);
        }
        Ok(chunk)
    }
}

/// Looks up the order columns' types and nullability; refuses a nullable column that cannot be filled.
async fn key_columns(
    client: &Client,
    table: &(String, String),
    order: &[String],
) -> Result<Vec<KeyColumn>, WalError> {
    if order.is_empty() {
        return Err(WalError::Config(
            "source.backfill.order_by is empty and the mapping names no id column: set order_by".into(),
        ));
    }
    let mut key = Vec::new();
    for name in order {
        let row = client
            .query_opt(
                "SELECT format_type(a.atttypid, a.atttypmod), NOT a.attnotnull FROM pg_attribute a \
                 JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3 AND a.attnum > 0 AND NOT a.attisdropped",
                &[&table.0, &table.1, name],
            )
            .await
            .map_err(WalError::pg("reading the backfill order columns"))?
            .ok_or_else(|| {
                WalError::Config(format!(
                    "source.backfill.order_by: {}.{} has no column {name:?}",
                    table.0, table.1
                ))
            })?;
        let (type_name, nullable): (String, bool) = (row.get(0), row.get(1));
        let fillable = type_name.starts_with("timestamp") || type_name == "date";
        if nullable && !fillable {
            return Err(WalError::Config(format!(
                "source.backfill.order_by: column {name:?} ({type_name}) may be NULL, and rows with a NULL key \
                 could not be resumed after: use NOT NULL columns (the primary key last)"
            )));
        }
        key.push(KeyColumn {
            name: name.clone(),
            type_name,
            nullable,
        });
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Vec<KeyColumn> {
        vec![
            KeyColumn {
                name: "created_at".into(),
                type_name: "timestamp with time zone".into(),
                nullable: true,
            },
            KeyColumn {
                name: "id".into(),
                type_name: "uuid".into(),
                nullable: false,
            },
        ]
    }

    #[test]
    fn chunk_queries_resume_after_the_last_key_in_order() {
        let table = ("public".to_string(), "outbox_events".to_string());
        let cols = vec!["id".to_string(), "payload".to_string()];
        let first = chunk_sql(&table, &cols, &key(), Some("status = 'PENDING'"), false, 500);
        assert_eq!(
            first,
            "SELECT xmin::text, (COALESCE(\"created_at\", '-infinity'::timestamp with time zone))::text, \
             (\"id\")::text, \"id\"::text, \"payload\"::text FROM \"public\".\"outbox_events\" \
             WHERE (status = 'PENDING') ORDER BY COALESCE(\"created_at\", '-infinity'::timestamp with time zone), \
             \"id\" LIMIT 500"
        );
        let resume = chunk_sql(&table, &cols, &key(), None, true, 500);
        assert!(
            resume.contains(
                "WHERE (COALESCE(\"created_at\", '-infinity'::timestamp with time zone), \"id\") > \
                 ($1::text::timestamp with time zone, $2::text::uuid) ORDER BY"
            ),
            "{resume}"
        );
    }

    #[test]
    fn default_order_is_created_at_then_id() {
        let mapping = ColumnMapping::default();
        assert_eq!(default_order(&mapping, |_| true), vec!["created_at", "id"]);
        assert_eq!(default_order(&mapping, |c| c != "created_at"), vec!["id"]);
    }
}
