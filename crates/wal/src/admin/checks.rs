//! The preflight checks that need a session (the publication's in [`super::publication`]): one small
//! read-only query each, so that one failing query fails only its own check.

use super::preflight::{Check, CheckStatus};
use crate::config::{OutboxMode, SlotBusy, SourceConfig};
use crate::setup::{self, parse_lsn};
use crate::WalError;
use outboxd_core::Lsn;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

/// What every check reads from.
pub(crate) struct CheckCtx<'a> {
    pub(crate) client: &'a Client,
    pub(crate) config: &'a SourceConfig,
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl CheckCtx<'_> {
    pub(crate) async fn row(&self, what: &str, sql: &str, params: Params<'_>) -> Result<Row, WalError> {
        self.client
            .query_one(sql, params)
            .await
            .map_err(WalError::pg(what))
    }

    pub(crate) async fn opt(
        &self,
        what: &str,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, WalError> {
        self.client
            .query_opt(sql, params)
            .await
            .map_err(WalError::pg(what))
    }

    pub(crate) fn table(&self) -> (String, String) {
        // validate() ran before any check: the name has a valid form.
        self.config
            .table_name()
            .unwrap_or_else(|_| ("public".into(), self.config.table.clone()))
    }
}

pub(crate) async fn server_version(ctx: &CheckCtx<'_>) -> Result<Check, WalError> {
    let name = Check::SERVER_VERSION;
    let sql = "SELECT current_setting('server_version_num')::int, current_setting('server_version')";
    let r = ctx.row("reading server_version", sql, &[]).await?;
    let (num, version): (i32, String) = (r.get(0), r.get(1));
    Ok(if num >= 140_000 {
        Check::ok(name, format!("PostgreSQL {version}"))
    } else {
        Check::fail(
            name,
            format!("PostgreSQL {version}: outboxd needs 14 or newer"),
            "upgrade Postgres to 14 or newer",
        )
    })
}

pub(crate) async fn wal_level(ctx: &CheckCtx<'_>) -> Result<Check, WalError> {
    let name = Check::WAL_LEVEL;
    let level: String = ctx
        .row("reading wal_level", "SELECT current_setting('wal_level')", &[])
        .await?
        .get(0);
    Ok(if level == "logical" {
        Check::ok(name, "logical")
    } else {
        Check::fail(
            name,
            format!("wal_level = {level}: logical decoding needs wal_level = logical"),
            "run `ALTER SYSTEM SET wal_level = logical;` as a superuser, then restart Postgres (a reload is \
             not enough); on a managed service, turn on its logical replication setting (e.g. \
             rds.logical_replication = 1 on RDS)",
        )
    })
}

pub(crate) async fn replication_role(ctx: &CheckCtx<'_>) -> Result<Check, WalError> {
    let name = Check::REPLICATION_ROLE;
    let sql = "SELECT current_user::text, r.rolsuper, r.rolreplication, EXISTS (SELECT 1 FROM pg_roles g \
               WHERE g.rolname = 'rds_replication' AND pg_has_role(current_user, g.oid, 'member')) \
               FROM pg_roles r WHERE r.rolname = current_user";
    let r = ctx.row("reading the user's attributes", sql, &[]).await?;
    let (user, superuser, replication, rds): (String, bool, bool, bool) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    Ok(match (superuser, replication, rds) {
        (true, _, _) => Check::ok(name, format!("{user:?} is a superuser")),
        (_, true, _) => Check::ok(name, format!("{user:?} has the REPLICATION attribute")),
        (_, _, true) => Check::ok(name, format!("{user:?} is a member of rds_replication")),
        _ => Check::fail(
            name,
            format!(
                "{user:?} is neither a superuser nor has the REPLICATION attribute: it cannot stream from a \
                 replication slot"
            ),
            format!(
                "as a superuser: ALTER ROLE {user} WITH REPLICATION; (on RDS: GRANT rds_replication TO \
                 {user};)"
            ),
        ),
    })
}

/// The slot as the slot checks need it (read once).
pub(crate) struct SlotState(Result<Option<SlotStatusRow>, WalError>);

pub(crate) struct SlotStatusRow {
    slot_type: String,
    plugin: Option<String>,
    database: Option<String>,
    active_pid: Option<i32>,
    confirmed_flush: Option<Lsn>,
    wal_status: Option<String>,
    retained: Option<i64>,
    current_database: String,
}

impl SlotState {
    pub(crate) async fn read(ctx: &CheckCtx<'_>) -> SlotState {
        let row = ctx
            .opt(
                "reading pg_replication_slots",
                "SELECT s.slot_type::text, s.plugin::text, s.database::text, s.active_pid, \
                 s.confirmed_flush_lsn::text, s.wal_status, pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN \
                 pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, s.restart_lsn)::int8, \
                 current_database()::text FROM pg_replication_slots s WHERE s.slot_name = $1",
                &[&ctx.config.slot],
            )
            .await;
        SlotState(row.and_then(|row| {
            row.map(|r| {
                Ok(SlotStatusRow {
                    slot_type: r.get(0),
                    plugin: r.get(1),
                    database: r.get(2),
                    active_pid: r.get(3),
                    confirmed_flush: parse_lsn(r.get(4))?,
                    wal_status: r.get(5),
                    retained: r.get(6),
                    current_database: r.get(7),
                })
            })
            .transpose()
        }))
    }

    fn exists(&self) -> bool {
        matches!(self.0, Ok(Some(_)))
    }
}

/// Problems found by one check, folded into a single [`Check`] (the worst status wins).
pub(crate) struct Findings {
    name: &'static str,
    found: Vec<(CheckStatus, String, String)>,
}

impl Findings {
    pub(crate) fn new(name: &'static str) -> Findings {
        Findings {
            name,
            found: Vec::new(),
        }
    }

    pub(crate) fn warn(&mut self, detail: String, fix: String) {
        self.found.push((CheckStatus::Warn, detail, fix));
    }

    pub(crate) fn fail(&mut self, detail: String, fix: String) {
        self.found.push((CheckStatus::Fail, detail, fix));
    }

    pub(crate) fn into_check(self, ok: String) -> Check {
        let Some(status) = self.found.iter().map(|f| f.0).max() else {
            return Check::ok(self.name, ok);
        };
        let detail: Vec<&str> = self.found.iter().map(|f| f.1.as_str()).collect();
        let fix: Vec<&str> = self.found.iter().map(|f| f.2.as_str()).collect();
        Check {
            name: self.name,
            status,
            detail: detail.join("; "),
            fix: Some(fix.join(" ")),
        }
    }
}

const RESTART: &str = "(a restart is needed)";

pub(crate) async fn max_replication_slots(ctx: &CheckCtx<'_>, slot: &SlotState) -> Result<Check, WalError> {
    let name = Check::MAX_REPLICATION_SLOTS;
    let sql = "SELECT current_setting('max_replication_slots')::int, \
               (SELECT count(*) FROM pg_replication_slots)::int";
    let r = ctx.row("reading max_replication_slots", sql, &[]).await?;
    let (max, used): (i32, i32) = (r.get(0), r.get(1));
    let needed = i32::from(!slot.exists());
    Ok(if used + needed <= max {
        let more = if needed == 1 {
            ", outboxd's will be one more"
        } else {
            ""
        };
        Check::ok(name, format!("{used} of {max} in use{more}"))
    } else {
        Check::fail(
            name,
            format!("all {max} replication slots are in use, and outboxd needs one more"),
            format!(
                "drop slots nobody uses (SELECT slot_name, active FROM pg_replication_slots;), or raise \
                 max_replication_slots above {max} {RESTART}"
            ),
        )
    })
}

pub(crate) async fn max_wal_senders(ctx: &CheckCtx<'_>) -> Result<Check, WalError> {
    let name = Check::MAX_WAL_SENDERS;
    let sql =
        "SELECT current_setting('max_wal_senders')::int, (SELECT count(*) FROM pg_stat_replication)::int";
    let r = ctx.row("reading max_wal_senders", sql, &[]).await?;
    let (max, used): (i32, i32) = (r.get(0), r.get(1));
    Ok(if used < max {
        Check::ok(name, format!("{used} of {max} in use"))
    } else {
        Check::fail(
            name,
            format!("all {max} walsenders are in use: outboxd's stream would be refused"),
            format!("raise max_wal_senders above {max} {RESTART}"),
        )
    })
}

pub(crate) async fn outbox_table(ctx: &CheckCtx<'_>) -> Result<Check, WalError> {
    let name = Check::OUTBOX_TABLE;
    if let OutboxMode::LogicalMessage { prefix } = &ctx.config.mode {
        let detail = format!("not used: mode = logical_message (prefix {prefix:?})");
        return Ok(Check::ok(name, detail));
    }
    let (schema, table) = ctx.table();
    let qualified = format!("{schema}.{table}");
    let Some((kind, persistence)) = relation_kind(ctx, &schema, &table).await? else {
        return Ok(Check::fail(
            name,
            format!("table {qualified} does not exist in this database"),
            "create it (see config/outbox.sql), or set source.table to the outbox table (schema.table)",
        ));
    };
    if kind != "r" && kind != "p" {
        return Ok(Check::fail(
            name,
            format!("{qualified} is not a table (relkind {kind})"),
            "set source.table to the outbox table itself",
        ));
    }
    if persistence != "p" {
        return Ok(Check::fail(
            name,
            format!(
                "{qualified} is an unlogged or temporary table: its inserts are not written to the WAL, so \
                 they cannot be streamed"
            ),
            format!("ALTER TABLE {qualified} SET LOGGED;"),
        ));
    }
    let columns = setup::table_columns(ctx.client, &schema, &table).await?;
    Ok(
        match setup::resolve_mapping(ctx.config, &schema, &table, &columns) {
            Ok(()) => Check::ok(
                name,
                format!(
                    "{qualified} has every mapped column (preset {})",
                    format!("{:?}", ctx.config.columns.preset).to_lowercase()
                ),
            ),
            Err(WalError::MissingColumn { table, column, field }) => Check::fail(
                name,
                format!("{table} has no column {column:?} (mapped to the event's {field})"),
                format!(
                "add the column (see config/outbox.sql), or map another column with [source.columns] \
                 {field} = \"...\", or choose the preset that matches the table (\"outboxd\" or \"debezium\")"
            ),
            ),
            Err(e) => Check::error(name, &e),
        },
    )
}

/// (relkind, relpersistence) of a table, `None` when it does not exist.
pub(crate) async fn relation_kind(
    ctx: &CheckCtx<'_>,
    schema: &str,
    table: &str,
) -> Result<Option<(String, String)>, WalError> {
    let sql = "SELECT c.relkind::text, c.relpersistence::text FROM pg_class c \
               JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2";
    let row = ctx
        .opt("looking up the outbox table", sql, &[&schema, &table])
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

pub(crate) async fn replication_slot(ctx: &CheckCtx<'_>, slot: SlotState) -> Result<Check, WalError> {
    let config = ctx.config;
    let s = &config.slot;
    let Some(row) = slot.0? else {
        return Ok(if config.create_slot {
            let mut detail = format!(
                "{s} does not exist yet; outboxd will create it at start (or run `outboxd slot create`)"
            );
            if config.mode == crate::OutboxMode::Table {
                let (schema, table) = ctx.table();
                if let Ok(n) = crate::setup::count_rows(ctx.client, config).await {
                    if n > 0 {
                        let fate = match &config.backfill {
                            b if b.enabled => format!(
                                "outboxd will backfill {} of them before streaming (source.backfill)",
                                b.predicate
                                    .as_deref()
                                    .map_or("all".into(), |p| format!("those matching {p}"))
                            ),
                            _ => "will not be relayed (set source.backfill.enabled to relay them)".into(),
                        };
                        detail.push_str(&format!(
                            "; the {n} row(s) already in {schema}.{table} predate it and {fate}"
                        ));
                    }
                }
            }
            Check::ok(Check::REPLICATION_SLOT, detail)
        } else {
            Check::fail(
                Check::REPLICATION_SLOT,
                format!("{s} does not exist and create_slot = false"),
                format!(
                    "run `outboxd slot create`, or \
                     SELECT pg_create_logical_replication_slot('{s}', 'pgoutput'); or set create_slot = true"
                ),
            )
        });
    };
    let mut found = Findings::new(Check::REPLICATION_SLOT);
    let other_name = "choose another source.slot name";
    if row.slot_type != "logical" {
        found.fail(
            format!("{s} is a {} slot, not a logical one", row.slot_type),
            other_name.into(),
        );
    } else if row.plugin.as_deref() != Some("pgoutput") {
        found.fail(
            format!(
                "{s} uses plugin {:?}, outboxd needs pgoutput",
                row.plugin.unwrap_or_default()
            ),
            format!("{other_name}, or drop it and let outboxd create it"),
        );
    }
    if let Some(db) = row.database.as_deref().filter(|db| *db != row.current_database) {
        found.fail(
            format!(
                "{s} decodes database {db:?}, but source.pg_url connects to {:?}",
                row.current_database
            ),
            format!("point source.pg_url at database {db:?}, or {other_name}"),
        );
    }
    match row.wal_status.as_deref() {
        Some("lost") => found.fail(
            format!("{s} has lost WAL it needs (wal_status = lost): it can no longer stream"),
            "drop it (outboxd slot drop) and create it again; outbox rows written meanwhile were not relayed"
                .into(),
        ),
        Some("unreserved") => found.warn(
            format!(
                "{s} retains more WAL than max_slot_wal_keep_size allows (wal_status = unreserved): it is \
                 about to be invalidated"
            ),
            "start outboxd so that it catches up, or raise max_slot_wal_keep_size".into(),
        ),
        _ => {}
    }
    if let Some(pid) = row.active_pid {
        let client = setup::holder(ctx.client, pid).await;
        let then = match config.on_slot_busy {
            SlotBusy::Wait => "this instance will wait until it is released",
            SlotBusy::Exit => "this instance will exit (on_slot_busy = exit)",
        };
        found.warn(
            format!("{s} is in use by pid {pid}{client}: another outboxd instance? {then}"),
            "stop the other process if it should not stream from this slot".into(),
        );
    }
    let position = row
        .confirmed_flush
        .map_or_else(|| "-".to_string(), |l| l.to_string());
    let retained = row.retained.map_or_else(|| "-".to_string(), |b| b.to_string());
    let status = row.wal_status.unwrap_or_else(|| "-".into());
    Ok(found.into_check(format!(
        "{s} exists, confirmed up to {position}, retains {retained} bytes of WAL (wal_status {status})"
    )))
}
