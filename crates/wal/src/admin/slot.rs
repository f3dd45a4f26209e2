//! `outboxd slot status|create|drop`: the slot as Postgres sees it, created with the source's own set-up
//! steps, and dropped only when nobody streams from it.

use crate::config::{OutboxMode, SourceConfig};
use crate::connect::PgTarget;
use crate::setup::{self, parse_lsn};
use crate::WalError;
use outboxd_core::Lsn;
use std::fmt;
use tokio_postgres::Client;

/// The slot and the server's WAL position, as `outboxd slot status` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotStatus {
    /// The slot name (from the configuration).
    pub slot: String,
    /// `host:port` connected to.
    pub server: String,
    /// The database connected to.
    pub database: String,
    /// The server's current WAL position (`pg_current_wal_lsn()`, or the replay position on a standby).
    pub current_lsn: Lsn,
    /// The slot, or `None` when it does not exist.
    pub details: Option<SlotDetails>,
}

/// One row of `pg_replication_slots`, with the client of its walsender from `pg_stat_replication`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotDetails {
    /// `logical` or `physical`.
    pub slot_type: String,
    /// The output plugin (`pgoutput` for outboxd); `None` for a physical slot.
    pub plugin: Option<String>,
    /// The database the slot decodes; `None` for a physical slot.
    pub database: Option<String>,
    /// A temporary slot (gone at the end of its session).
    pub temporary: bool,
    /// A process streams from it.
    pub active: bool,
    /// That process (a walsender).
    pub active_pid: Option<i32>,
    /// Where the walsender's client connects from (`None`: a Unix socket, or not visible to this user).
    pub client_addr: Option<String>,
    /// The walsender client's `application_name`.
    pub application_name: Option<String>,
    /// Everything up to here is confirmed by the consumer: streaming resumes after it.
    pub confirmed_flush_lsn: Option<Lsn>,
    /// The oldest WAL the slot still needs.
    pub restart_lsn: Option<Lsn>,
    /// WAL kept on the server for this slot: `current_lsn - restart_lsn`, in bytes.
    pub retained_wal_bytes: Option<i64>,
    /// WAL written since the last confirmation: `current_lsn - confirmed_flush_lsn`, in bytes.
    pub unconfirmed_wal_bytes: Option<i64>,
    /// `reserved`, `extended`, `unreserved` (about to lose WAL) or `lost` (unusable).
    pub wal_status: Option<String>,
    /// Bytes that may still be written before the slot is in danger (`None`: no limit is set).
    pub safe_wal_size: Option<i64>,
}

impl SlotStatus {
    /// True when the slot exists.
    pub fn exists(&self) -> bool {
        self.details.is_some()
    }
}

/// The result of `slot create`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotCreated {
    /// The slot name.
    pub slot: String,
    /// Where decoding starts: transactions committed after this position will be streamed.
    pub consistent_point: Lsn,
    /// The publication name.
    pub publication: String,
    /// True when the publication was created too (it did not exist and `create_publication` is set).
    pub publication_created: bool,
}

/// The result of `slot drop`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotDropped {
    /// The slot name.
    pub slot: String,
    /// Its last confirmed position, now given up.
    pub confirmed_flush_lsn: Option<Lsn>,
}

const SLOT_SQL: &str = "SELECT s.slot_type::text, s.plugin::text, s.database::text, s.temporary, s.active, \
    s.active_pid, s.confirmed_flush_lsn::text, s.restart_lsn::text, s.wal_status, \
    pg_wal_lsn_diff($2::text::pg_lsn, s.restart_lsn)::int8, \
    pg_wal_lsn_diff($2::text::pg_lsn, s.confirmed_flush_lsn)::int8, s.safe_wal_size::int8, \
    host(r.client_addr), r.application_name \
    FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid \
    WHERE s.slot_name = $1";

/// The slot's state and the server's WAL position.
pub async fn slot_status(config: &SourceConfig) -> Result<SlotStatus, WalError> {
    let target = PgTarget::new(config)?;
    let client = target.connect().await?;
    let (current_lsn, database) = server_position(&client).await?;
    let row = client
        .query_opt(SLOT_SQL, &[&config.slot, &current_lsn.to_string()])
        .await
        .map_err(WalError::pg("reading pg_replication_slots"))?;
    let details = match row {
        None => None,
        Some(r) => Some(SlotDetails {
            slot_type: r.get(0),
            plugin: r.get(1),
            database: r.get(2),
            temporary: r.get(3),
            active: r.get(4),
            active_pid: r.get(5),
            confirmed_flush_lsn: parse_lsn(r.get(6))?,
            restart_lsn: parse_lsn(r.get(7))?,
            wal_status: r.get(8),
            retained_wal_bytes: r.get(9),
            unconfirmed_wal_bytes: r.get(10),
            safe_wal_size: r.get(11),
            client_addr: r.get(12),
            application_name: r.get(13),
        }),
    };
    Ok(SlotStatus {
        slot: config.slot.clone(),
        server: target.server(),
        database,
        current_lsn,
        details,
    })
}

/// The server's current WAL position and the database connected to.
pub(crate) async fn server_position(client: &Client) -> Result<(Lsn, String), WalError> {
    let row = client
        .query_one(
            "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() \
             END)::text, current_database()::text",
            &[],
        )
        .await
        .map_err(WalError::pg("reading the server's WAL position"))?;
    Ok((parse_lsn(row.get(0))?.unwrap_or(Lsn::ZERO), row.get(1)))
}

/// Creates the slot (plugin pgoutput) after the same checks as the source's start: server version and
/// `wal_level`, the outbox table's columns (table mode), and the publication (created first when
/// `create_publication` is set: a slot must not start decoding before its publication exists). Fails with
/// [`WalError::SlotExists`] when the slot is already there; `create_slot` in the config is not consulted.
pub async fn create_slot(config: &SourceConfig) -> Result<SlotCreated, WalError> {
    config.validate()?;
    let client = PgTarget::new(config)?.connect().await?;
    setup::check_server(&client).await?;
    if config.mode == OutboxMode::Table {
        setup::check_table(&client, config).await?;
    }
    let exists = || WalError::SlotExists {
        slot: config.slot.clone(),
    };
    if setup::slot_row(&client, &config.slot).await?.is_some() {
        return Err(exists());
    }
    let publication_created = setup::ensure_publication(&client, config).await?;
    let consistent_point = setup::create_slot(&client, config).await?.ok_or_else(exists)?.lsn;
    Ok(SlotCreated {
        slot: config.slot.clone(),
        consistent_point,
        publication: config.publication.clone(),
        publication_created,
    })
}

/// Drops the slot. Refuses ([`WalError::SlotInUse`], naming the pid and client) while a process streams
/// from it: a slot in use is never taken or dropped. Refuses a slot of another database, or a physical
/// slot. The CLI must have the operator confirm [`DROP_SLOT_WARNING`](super::DROP_SLOT_WARNING) first.
pub async fn drop_slot(config: &SourceConfig) -> Result<SlotDropped, WalError> {
    let slot = &config.slot;
    let client = PgTarget::new(config)?.connect().await?;
    let missing = || WalError::SlotMissing { slot: slot.clone() };
    let row = setup::slot_row(&client, slot).await?.ok_or_else(missing)?;
    if let Some(pid) = row.active_pid {
        return Err(in_use(&client, slot, pid).await);
    }
    let (_, database) = server_position(&client).await?;
    match row.database.as_deref() {
        Some(db) if db == database => {}
        Some(other) => {
            return Err(WalError::Config(format!(
                "replication slot {slot} decodes database {other:?}, but source.pg_url connects to \
                 {database:?}: not dropping another database's slot (check source.slot and source.pg_url)"
            )))
        }
        None => {
            return Err(WalError::Config(format!(
                "replication slot {slot} is a physical slot (a standby's), not outboxd's: not dropping it"
            )))
        }
    }
    match client
        .execute("SELECT pg_drop_replication_slot($1)", &[slot])
        .await
    {
        Ok(_) => {
            tracing::info!(%slot, "dropped replication slot");
            Ok(SlotDropped {
                slot: slot.clone(),
                confirmed_flush_lsn: parse_lsn(row.confirmed_flush)?,
            })
        }
        // Taken between the look and the drop: Postgres refuses (it never drops an active slot).
        Err(e) if e.code().is_some_and(|c| c.code() == "55006") => {
            match setup::slot_row(&client, slot).await?.and_then(|r| r.active_pid) {
                Some(pid) => Err(in_use(&client, slot, pid).await),
                None => Err(WalError::pg(format!("dropping replication slot {slot}"))(e)),
            }
        }
        Err(e) if e.code().is_some_and(|c| c.code() == "42704") => Err(missing()),
        Err(e) => Err(WalError::pg(format!("dropping replication slot {slot}"))(e)),
    }
}

async fn in_use(client: &Client, slot: &str, pid: i32) -> WalError {
    WalError::SlotInUse {
        slot: slot.to_string(),
        pid,
        client: setup::holder(client, pid).await,
    }
}

/// `12345 bytes (12.1 KiB)`.
fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = None;
    for u in UNITS {
        if value.abs() < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = Some(u);
    }
    match unit {
        None => format!("{n} bytes"),
        Some(u) => format!("{n} bytes ({value:.1} {u})"),
    }
}

fn or_dash<T: fmt::Display>(value: &Option<T>) -> String {
    value.as_ref().map_or_else(|| "-".to_string(), T::to_string)
}

impl fmt::Display for SlotStatus {
    /// One `key: value` per line, keys aligned.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines: Vec<(&str, String)> = vec![
            ("slot", self.slot.clone()),
            ("server", format!("{} (database {})", self.server, self.database)),
            ("current WAL position", self.current_lsn.to_string()),
        ];
        match &self.details {
            None => lines.push(("exists", "no".into())),
            Some(d) => {
                let active = match d.active_pid {
                    Some(pid) => {
                        let client = d.client_addr.as_deref().unwrap_or("local socket or not visible");
                        match d.application_name.as_deref().filter(|a| !a.is_empty()) {
                            Some(app) => format!("yes, pid {pid} (client {client}, application_name {app})"),
                            None => format!("yes, pid {pid} (client {client})"),
                        }
                    }
                    None if d.active => "yes".into(),
                    None => "no".into(),
                };
                let temporary = if d.temporary { " (temporary)" } else { "" };
                lines.extend([
                    ("exists", format!("yes, {} slot{temporary}", d.slot_type)),
                    ("plugin", or_dash(&d.plugin)),
                    ("database", or_dash(&d.database)),
                    ("active", active),
                    ("confirmed_flush_lsn", or_dash(&d.confirmed_flush_lsn)),
                    ("restart_lsn", or_dash(&d.restart_lsn)),
                    (
                        "retained WAL",
                        d.retained_wal_bytes.map_or_else(|| "-".into(), bytes),
                    ),
                    (
                        "unconfirmed WAL",
                        d.unconfirmed_wal_bytes.map_or_else(|| "-".into(), bytes),
                    ),
                    ("wal_status", or_dash(&d.wal_status)),
                    (
                        "safe_wal_size",
                        d.safe_wal_size
                            .map_or_else(|| "no limit (max_slot_wal_keep_size = -1)".into(), bytes),
                    ),
                ]);
            }
        }
        let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
        for (key, value) in lines {
            writeln!(f, "{:<width$} {value}", format!("{key}:"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(details: Option<SlotDetails>) -> SlotStatus {
        SlotStatus {
            slot: "outboxd".into(),
            server: "db:5432".into(),
            database: "app".into(),
            current_lsn: Lsn(0x1_0000_2000),
            details,
        }
    }

    #[test]
    fn display_is_one_key_per_line() {
        let text = status(None).to_string();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(text.contains("exists:               no"), "{text}");
        let text = status(Some(SlotDetails {
            slot_type: "logical".into(),
            plugin: Some("pgoutput".into()),
            database: Some("app".into()),
            temporary: false,
            active: true,
            active_pid: Some(4242),
            client_addr: Some("10.0.0.5".into()),
            application_name: Some("outboxd".into()),
            confirmed_flush_lsn: Some(Lsn(0x1_0000_1000)),
            restart_lsn: Some(Lsn(0x1_0000_0000)),
            retained_wal_bytes: Some(8192),
            unconfirmed_wal_bytes: Some(4096),
            wal_status: Some("reserved".into()),
            safe_wal_size: None,
        }))
        .to_string();
        for expected in [
            "current WAL position: 1/2000",
            "active:               yes, pid 4242 (client 10.0.0.5, application_name outboxd)",
            "confirmed_flush_lsn:  1/1000",
            "retained WAL:         8192 bytes (8.0 KiB)",
            "wal_status:           reserved",
            "safe_wal_size:        no limit",
        ] {
            assert!(text.contains(expected), "{expected:?} missing in\n{text}");
        }
        assert!(text.lines().all(|l| l.contains(": ")), "{text}");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(512), "512 bytes");
        assert_eq!(bytes(3 * 1024 * 1024), "3145728 bytes (3.0 MiB)");
    }
}
