//! Start-up checks and set-up on an ordinary (tokio-postgres) connection: server version and `wal_level`,
//! the outbox table's columns, the publication, the slot and who holds it.

use crate::config::{OutboxMode, SlotBusy, SourceConfig};
use crate::connect::PgTarget;
use crate::error::sqlstate_of;
use crate::WalError;
use outboxd_core::{format_runs, Lsn, PgSnapshot, SlotOrigin};
use pgwire_replication::{PgWireError, ReplicationClient};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// Server version >= 14 and `wal_level = logical`.
pub(crate) async fn check_server(client: &Client) -> Result<(), WalError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, current_setting('server_version'), \
             current_setting('wal_level')",
            &[],
        )
        .await
        .map_err(WalError::pg("reading server settings"))?;
    let (num, version, wal_level): (i32, String, String) = (row.get(0), row.get(1), row.get(2));
    if num < 140_000 {
        return Err(WalError::ServerVersion { version });
    }
    if wal_level != "logical" {
        return Err(WalError::WalLevel { actual: wal_level });
    }
    Ok(())
}

/// The outbox table exists and has every column the mapping needs.
pub(crate) async fn check_table(client: &Client, config: &SourceConfig) -> Result<(), WalError> {
    let (schema, name) = config.table_name()?;
    let columns = table_columns(client, &schema, &name).await?;
    if columns.is_empty() {
        return Err(WalError::Config(format!(
            "outbox table {schema}.{name} does not exist in this database: create it (see config/outbox.sql) \
             or set table = \"schema.table\""
        )));
    }
    resolve_mapping(config, &schema, &name, &columns)
}

/// Resolves the configured mapping against the table's columns (fails naming a missing column).
pub(crate) fn resolve_mapping(
    config: &SourceConfig,
    schema: &str,
    name: &str,
    columns: &[(String, u32)],
) -> Result<(), WalError> {
    let columns: Vec<(&str, u32)> = columns.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    config
        .columns
        .resolve(&format!("{schema}.{name}"), &columns)
        .map(|_| ())
}

/// The table's columns (name, type OID) in attribute order, as pgoutput sends them; empty when the table
/// does not exist.
pub(crate) async fn table_columns(
    client: &Client,
    schema: &str,
    name: &str,
) -> Result<Vec<(String, u32)>, WalError> {
    let rows = client
        .query(
            "SELECT a.attname::text, a.atttypid FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped \
               AND a.attgenerated = '' ORDER BY a.attnum",
            &[&schema, &name],
        )
        .await
        .map_err(WalError::pg("reading the outbox table's columns"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub(crate) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

const DUPLICATE_OBJECT: &str = "42710";

fn is_duplicate(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code() == DUPLICATE_OBJECT)
}

/// The statement that creates the publication as outboxd wants it: the outbox table only (no table in
/// logical-message mode), inserts only.
pub(crate) fn create_publication_sql(config: &SourceConfig) -> Result<String, WalError> {
    let target = match config.mode {
        OutboxMode::Table => {
            let (schema, name) = config.table_name()?;
            format!(" FOR TABLE {}.{}", quote_ident(&schema), quote_ident(&name))
        }
        OutboxMode::LogicalMessage { .. } => String::new(),
    };
    // publish_via_partition_root: a partitioned outbox's inserts then carry the table's own name (it changes
    // nothing for a plain table).
    let options = match config.mode {
        OutboxMode::Table => "publish = 'insert', publish_via_partition_root = true",
        OutboxMode::LogicalMessage { .. } => "publish = 'insert'",
    };
    Ok(format!(
        "CREATE PUBLICATION {}{target} WITH ({options})",
        quote_ident(&config.publication)
    ))
}

/// The publication exists (created when allowed), publishes inserts and, in table mode, the outbox table.
/// Returns true when this call created it.
pub(crate) async fn ensure_publication(client: &Client, config: &SourceConfig) -> Result<bool, WalError> {
    let publication = &config.publication;
    let (schema, name) = config.table_name()?;
    let table_mode = matches!(config.mode, OutboxMode::Table);
    let exists = client
        .query_opt(
            "SELECT pubinsert FROM pg_publication WHERE pubname = $1",
            &[publication],
        )
        .await
        .map_err(WalError::pg("looking up the publication"))?;
    let mut created = false;
    let publishes_inserts: bool = match exists {
        Some(row) => row.get(0),
        None if config.create_publication => {
            match client.batch_execute(&create_publication_sql(config)?).await {
                Ok(()) => {
                    tracing::info!(%publication, "created publication");
                    created = true;
                }
                Err(e) if is_duplicate(&e) => {} // another instance created it meanwhile
                Err(e) => return Err(WalError::pg(format!("creating publication {publication}"))(e)),
            }
            true
        }
        None => {
            return Err(WalError::Config(format!(
                "publication {publication} does not exist and create_publication = false: create it with \
                 CREATE PUBLICATION {publication} FOR TABLE {schema}.{name} WITH (publish = 'insert');"
            )))
        }
    };
    if !publishes_inserts {
        return Err(WalError::Config(format!(
            "publication {publication} does not publish inserts: ALTER PUBLICATION {publication} SET (publish = 'insert');"
        )));
    }
    if table_mode {
        let listed = client
            .query_opt(
                "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3",
                &[publication, &schema, &name],
            )
            .await
            .map_err(WalError::pg("checking the publication's tables"))?;
        if listed.is_none() {
            return Err(WalError::Config(format!(
                "publication {publication} does not include {schema}.{name}: \
                 ALTER PUBLICATION {publication} ADD TABLE {schema}.{name};"
            )));
        }
    }
    Ok(created)
}

/// What `pg_replication_slots` says about the slot.
pub(crate) struct SlotRow {
    pub(crate) plugin: Option<String>,
    pub(crate) database: Option<String>,
    pub(crate) active_pid: Option<i32>,
    pub(crate) confirmed_flush: Option<String>,
}

pub(crate) async fn slot_row(client: &Client, slot: &str) -> Result<Option<SlotRow>, WalError> {
    let row = client
        .query_opt(
            "SELECT plugin::text, database::text, active_pid, confirmed_flush_lsn::text \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(WalError::pg("looking up the replication slot"))?;
    Ok(row.map(|r| SlotRow {
        plugin: r.get(0),
        database: r.get(1),
        active_pid: r.get(2),
        confirmed_flush: r.get(3),
    }))
}

pub(crate) fn parse_lsn(text: Option<String>) -> Result<Option<Lsn>, WalError> {
    text.map(|t| t.parse::<Lsn>().map_err(|e| WalError::Stream(e.to_string())))
        .transpose()
}

/// The slot's `confirmed_flush_lsn`, or `None` when the slot does not exist.
pub async fn slot_confirmed_flush_lsn(pg_url: &str, slot: &str) -> Result<Option<Lsn>, WalError> {
    let config = SourceConfig {
        pg_url: pg_url.to_string(),
        ..SourceConfig::default()
    };
    let client = PgTarget::new(&config)?.connect().await?;
    match slot_row(&client, slot).await? {
        Some(row) => parse_lsn(row.confirmed_flush),
        None => Ok(None),
    }
}

/// Creates a pgoutput slot on a replication session, exporting its snapshot, and reads the snapshot back on
/// `client` (with the table's row count in it): the slot's [`SlotOrigin`]. `None` when the slot exists
/// already. The exported snapshot is what makes a backfill exact: a transaction is in the slot's stream
/// exactly when it is not visible in it.
pub(crate) async fn create_slot(
    client: &Client,
    config: &SourceConfig,
) -> Result<Option<SlotOrigin>, WalError> {
    let slot = &config.slot;
    let mut repl =
        ReplicationClient::connect_gated(crate::source::replication_config(config, Lsn::ZERO)?).await?;
    let created = repl
        .simple_query(&format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput (SNAPSHOT 'export')",
            quote_ident(slot)
        ))
        .await;
    let rows = match created {
        Ok(rows) => rows,
        Err(PgWireError::Server(m)) if sqlstate_of(&m) == Some(DUPLICATE_OBJECT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let column = |i: usize| {
        rows.first()
            .and_then(|r| r.get(i).cloned().flatten())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .ok_or_else(|| {
                WalError::Stream(format!(
                    "CREATE_REPLICATION_SLOT {slot}: no column {i} in its answer"
                ))
            })
    };
    let lsn: Lsn = column(1)?.parse().map_err(|e| WalError::Stream(format!("{e}")))?;
    let snapshot_name = column(2)?;
    tracing::info!(%slot, consistent_point = %lsn, "created replication slot");
    // The exported snapshot lives until the replication session's next command: read it now.
    let origin = read_origin(client, config, &snapshot_name, lsn).await;
    // Dropping a session that never started replication ends it (shutdown would wait for a stream).
    drop(repl);
    origin.map(Some)
}

async fn read_origin(
    client: &Client,
    config: &SourceConfig,
    snapshot_name: &str,
    lsn: Lsn,
) -> Result<SlotOrigin, WalError> {
    let pg = || WalError::pg("reading the new slot's snapshot");
    let name = snapshot_name.replace('\'', "");
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{name}'"
        ))
        .await
        .map_err(pg())?;
    let result = origin_in_snapshot(client, config, lsn).await;
    let _ = client.batch_execute("COMMIT").await;
    result
}

/// Inside the exported snapshot: the snapshot itself, the clock, the table's rows and the `xmin`s it sees
/// between the snapshot's bounds (see [`SlotOrigin::committed`]).
async fn origin_in_snapshot(
    client: &Client,
    config: &SourceConfig,
    lsn: Lsn,
) -> Result<SlotOrigin, WalError> {
    let pg = || WalError::pg("reading the new slot's snapshot");
    let row = client
        .query_one(
            "SELECT pg_current_snapshot()::text, \
             to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            &[],
        )
        .await
        .map_err(pg())?;
    let (snapshot_text, time): (String, String) = (row.get(0), row.get(1));
    let snapshot: PgSnapshot = snapshot_text
        .parse()
        .map_err(|e| WalError::Stream(format!("{e}")))?;
    let mut origin = SlotOrigin {
        snapshot: snapshot_text,
        committed: String::new(),
        lsn,
        time,
        rows: 0,
    };
    let OutboxMode::Table = config.mode else {
        return Ok(origin);
    };
    let (schema, table) = config.table_name()?;
    let (xmin, xmax) = snapshot.bounds();
    let in_range = if xmin == xmax {
        "false".to_string()
    } else {
        let (lo, hi) = (xmin % (1 << 32), (xmax - 1) % (1 << 32));
        let op = if lo <= hi { "AND" } else { "OR" };
        format!("xmin::text::bigint >= {lo} {op} xmin::text::bigint <= {hi}")
    };
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), coalesce(array_agg(DISTINCT xmin::text) FILTER (WHERE {in_range}), '{{}}') \
                 FROM {}.{}",
                quote_ident(&schema),
                quote_ident(&table)
            ),
            &[],
        )
        .await
        .map_err(pg())?;
    let rows: i64 = row.get(0);
    let xids: Vec<String> = row.get(1);
    let mut committed: Vec<u64> = xids
        .iter()
        .filter_map(|x| x.parse::<u32>().ok())
        .map(|x| snapshot.widen(x))
        .collect();
    committed.sort_unstable();
    committed.dedup();
    origin.committed = format_runs(&committed);
    origin.rows = u64::try_from(rows).unwrap_or(0);
    Ok(origin)
}

/// Rows in the outbox table now (for the rows that predate a slot just created).
pub(crate) async fn count_rows(client: &Client, config: &SourceConfig) -> Result<i64, WalError> {
    let (schema, name) = config.table_name()?;
    let sql = format!(
        "SELECT count(*) FROM {}.{}",
        quote_ident(&schema),
        quote_ident(&name)
    );
    Ok(client
        .query_one(&sql, &[])
        .await
        .map_err(WalError::pg("counting the outbox table's rows"))?
        .get(0))
}

/// The slot exists (created when allowed), is a pgoutput slot of this database. Its origin when it was
/// created now.
pub(crate) async fn ensure_slot(
    client: &Client,
    config: &SourceConfig,
) -> Result<Option<SlotOrigin>, WalError> {
    let slot = &config.slot;
    let mut created = None;
    let row = match slot_row(client, slot).await? {
        Some(row) => row,
        None if config.create_slot => {
            created = create_slot(client, config).await?;
            slot_row(client, slot)
                .await?
                .ok_or_else(|| WalError::Config(format!("slot {slot} vanished")))?
        }
        None => {
            return Err(WalError::Config(format!(
                "replication slot {slot} does not exist and create_slot = false: create it with \
                 SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput');"
            )))
        }
    };
    if row.plugin.as_deref() != Some("pgoutput") {
        return Err(WalError::Config(format!(
            "replication slot {slot} uses plugin {:?}, outboxd needs a logical slot with plugin pgoutput",
            row.plugin.unwrap_or_else(|| "none (physical slot)".into())
        )));
    }
    let db: String = client
        .query_one("SELECT current_database()::text", &[])
        .await
        .map_err(WalError::pg("reading the current database"))?
        .get(0);
    if row.database.as_deref() != Some(db.as_str()) {
        return Err(WalError::Config(format!(
            "replication slot {slot} belongs to database {:?}, but pg_url connects to {db:?}",
            row.database.unwrap_or_default()
        )));
    }
    Ok(created)
}

/// Waits until no other process holds the slot (or fails at once with `on_slot_busy = "exit"`), then returns
/// its `confirmed_flush_lsn`. Never takes the slot from its holder.
pub(crate) async fn wait_until_slot_free(
    client: &Client,
    config: &SourceConfig,
    deadline: Option<Instant>,
) -> Result<Lsn, WalError> {
    let slot = &config.slot;
    let mut pause = Duration::from_millis(100);
    let mut polls = 0u32;
    loop {
        let row = slot_row(client, slot)
            .await?
            .ok_or_else(|| WalError::Config(format!("slot {slot} was dropped")))?;
        let Some(pid) = row.active_pid else {
            return Ok(parse_lsn(row.confirmed_flush)?.unwrap_or(Lsn::ZERO));
        };
        let busy = WalError::SlotBusy {
            slot: slot.clone(),
            pid,
            client: holder(client, pid).await,
        };
        if config.on_slot_busy == SlotBusy::Exit || deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(busy);
        }
        if polls % 20 == 0 {
            tracing::warn!("{busy}; waiting for it to be released");
        }
        polls += 1;
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// ", client 10.0.0.5 (app outboxd)" for the slot holder's pid, when Postgres knows it.
pub(crate) async fn holder(client: &Client, pid: i32) -> String {
    let row = client
        .query_opt(
            "SELECT host(client_addr), application_name FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await
        .ok()
        .flatten();
    let Some(row) = row else { return String::new() };
    let addr: Option<String> = row.get(0);
    let app: Option<String> = row.get(1);
    let addr = addr.unwrap_or_else(|| "local socket".into());
    match app.filter(|a| !a.is_empty()) {
        Some(app) => format!(", client {addr} (application_name {app})"),
        None => format!(", client {addr}"),
    }
}
