//! The WAL source's configuration (the `[source]` table of outboxd's config file). Defaults live in one
//! place: [`SourceConfig::default`].

use crate::backfill::BackfillConfig;
use crate::conninfo::split_tls_params;
use crate::mapping::ColumnMapping;
use crate::retention::RetentionConfig;
use crate::tls::TlsSettings;
use crate::WalError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Where the outbox events come from and how the slot is handled. `Debug` hides the password (in `password`
/// and in `pg_url`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// Postgres connection URL (`postgres://user:password@host:port/db`); the user needs the REPLICATION
    /// attribute (and CREATE on the database to create the publication).
    pub pg_url: String,
    /// Password for the Postgres user, overriding any in `pg_url` (so it can come from a secret file
    /// instead of the URL).
    pub password: Option<String>,
    /// PEM file of the root certificate(s) that the server's TLS certificate must chain to (libpq's
    /// `sslrootcert`, which `pg_url` may also carry; this wins). Absent: the Mozilla roots. TLS itself is
    /// chosen by `sslmode` in `pg_url` (default `prefer`); given without any `sslmode`, this means
    /// `verify-full`, and with `sslmode=require` it means `verify-ca`.
    pub ssl_root_cert: Option<PathBuf>,
    /// Longest wait for a connection to Postgres (TCP, TLS and login), in milliseconds.
    pub connect_timeout_ms: u64,
    /// Logical replication slot name (`[a-z0-9_]`, at most 63 characters).
    pub slot: String,
    /// Publication name (`[a-z0-9_]`, at most 63 characters).
    pub publication: String,
    /// The outbox table, as `schema.table` (`public` when the schema is left out).
    pub table: String,
    /// Which table column fills which event field (table mode only).
    pub columns: ColumnMapping,
    /// Read events from the table's inserts, or from transactional logical messages.
    pub mode: OutboxMode,
    /// Create the slot (plugin pgoutput) when it does not exist.
    pub create_slot: bool,
    /// Create the publication (the outbox table only, inserts only) when it does not exist.
    pub create_publication: bool,
    /// What to do when another process streams from the slot: wait until it is free, or exit.
    pub on_slot_busy: SlotBusy,
    /// With `on_slot_busy = "wait"`: give up after this many milliseconds (absent: wait without limit).
    pub slot_busy_timeout_ms: Option<u64>,
    /// Capacity of the channel to the next stage, in events: a slow sink slows the reading down.
    pub channel_capacity: usize,
    /// Longest interval between standby status updates (confirmed positions) sent to Postgres, in ms.
    pub status_interval_ms: u64,
    /// How long `shutdown` waits for the last confirmation to be sent, in ms.
    pub shutdown_timeout_ms: u64,
    /// `application_name` of the replication session (shown in `pg_stat_replication`).
    pub application_name: String,
    /// Relaying the rows that predate the slot (table mode).
    pub backfill: BackfillConfig,
    /// Deleting relayed rows older than an age (table mode).
    pub retention: RetentionConfig,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            pg_url: "postgres://postgres@localhost:5432/postgres".into(),
            password: None,
            ssl_root_cert: None,
            connect_timeout_ms: 10_000,
            slot: "outboxd".into(),
            publication: "outboxd".into(),
            table: "public.outbox".into(),
            columns: ColumnMapping::default(),
            mode: OutboxMode::Table,
            create_slot: true,
            create_publication: true,
            on_slot_busy: SlotBusy::Wait,
            slot_busy_timeout_ms: None,
            channel_capacity: 4096,
            status_interval_ms: 1000,
            shutdown_timeout_ms: 15_000,
            application_name: "outboxd".into(),
            backfill: BackfillConfig::default(),
            retention: RetentionConfig::default(),
        }
    }
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConfig")
            .field("pg_url", &outboxd_core::redact::redact_url(&self.pg_url))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ssl_root_cert", &self.ssl_root_cert)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("slot", &self.slot)
            .field("publication", &self.publication)
            .field("table", &self.table)
            .field("columns", &self.columns)
            .field("mode", &self.mode)
            .field("create_slot", &self.create_slot)
            .field("create_publication", &self.create_publication)
            .field("on_slot_busy", &self.on_slot_busy)
            .field("slot_busy_timeout_ms", &self.slot_busy_timeout_ms)
            .field("channel_capacity", &self.channel_capacity)
            .field("status_interval_ms", &self.status_interval_ms)
            .field("shutdown_timeout_ms", &self.shutdown_timeout_ms)
            .field("application_name", &self.application_name)
            .field("backfill", &self.backfill)
            .field("retention", &self.retention)
            .finish()
    }
}

/// Where outbox events are written by the application.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "kind")]
pub enum OutboxMode {
    /// Inserts into the outbox table (`table`, mapped by `columns`).
    #[default]
    Table,
    /// `pg_logical_emit_message(true, prefix, '{"id": ..., ...}')` calls: no table at all.
    LogicalMessage {
        /// The message prefix to read; other prefixes are ignored.
        prefix: String,
    },
}

/// What to do when the slot is held by another process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotBusy {
    /// Poll until the slot is free (a standby instance), logging who holds it.
    #[default]
    Wait,
    /// Fail at once with [`WalError::SlotBusy`].
    Exit,
}

impl SourceConfig {
    /// `pg_url` parsed, with `password` applied. Its `sslmode` is the nearest that tokio-postgres knows
    /// (`verify-*` become `require`): see [`SourceConfig::tls_settings`] for the TLS that is really used.
    pub fn pg_config(&self) -> Result<tokio_postgres::Config, WalError> {
        let (url, tls) = split_tls_params(&self.pg_url)?;
        let mut pg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| WalError::Config(format!("pg_url is not a valid Postgres URL or conninfo: {e}")))?;
        if let Some(password) = &self.password {
            pg.password(password.as_str());
        }
        pg.ssl_mode(
            TlsSettings::resolve(tls, self.ssl_root_cert.as_deref())
                .mode
                .for_tokio_postgres(),
        );
        Ok(pg)
    }

    /// The TLS settings of both connections: `sslmode` and `sslrootcert` from `pg_url`, `ssl_root_cert`.
    pub fn tls_settings(&self) -> Result<TlsSettings, WalError> {
        let (_, tls) = split_tls_params(&self.pg_url)?;
        Ok(TlsSettings::resolve(tls, self.ssl_root_cert.as_deref()))
    }

    /// The connect timeout as a duration (at least 100 ms).
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms.max(100))
    }

    /// The status interval as a duration (at least 10 ms).
    pub fn status_interval(&self) -> Duration {
        Duration::from_millis(self.status_interval_ms.max(10))
    }

    /// The outbox table as (schema, name).
    pub fn table_name(&self) -> Result<(String, String), WalError> {
        let (schema, name) = self
            .table
            .split_once('.')
            .unwrap_or(("public", self.table.as_str()));
        for part in [schema, name] {
            if part.is_empty() || part.contains('"') || part.contains('.') {
                return Err(WalError::Config(format!(
                    "table = {:?} is not of the form schema.table (unquoted names, no dots inside)",
                    self.table
                )));
            }
        }
        Ok((schema.to_string(), name.to_string()))
    }

    /// Checks what can be checked without a database.
    pub fn validate(&self) -> Result<(), WalError> {
        check_name("slot", &self.slot)?;
        check_name("publication", &self.publication)?;
        self.table_name()?;
        if self.channel_capacity == 0 {
            return Err(WalError::Config("channel_capacity must be at least 1".into()));
        }
        if let OutboxMode::LogicalMessage { prefix } = &self.mode {
            if prefix.is_empty() {
                return Err(WalError::Config("mode.prefix must not be empty".into()));
            }
        }
        if self.backfill.enabled && self.mode != OutboxMode::Table {
            return Err(WalError::Config(
                "backfill.enabled needs mode = table: logical messages are not kept anywhere to read back"
                    .into(),
            ));
        }
        if self.retention.max_age_s.is_some() && self.mode != OutboxMode::Table {
            return Err(WalError::Config(
                "retention.max_age_s needs mode = table: logical messages leave no rows to delete".into(),
            ));
        }
        self.columns.check_names()
    }
}

/// Slot and publication names go into replication commands unquoted: keep them to what Postgres allows for
/// slot names.
fn check_name(what: &str, name: &str) -> Result<(), WalError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(WalError::Config(format!(
            "{what} = {name:?}: use 1 to 63 characters of lowercase letters, digits and underscores"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Preset;

    #[test]
    fn defaults_and_toml() {
        let c: SourceConfig = toml::from_str("").unwrap();
        assert_eq!(c, SourceConfig::default());
        assert!(c.validate().is_ok());
        let c: SourceConfig = toml::from_str(
            r#"
            slot = "s1"
            table = "app.events"
            on_slot_busy = "exit"
            mode = { kind = "logical_message", prefix = "outbox" }
            columns = { preset = "debezium", payload = "body" }
            "#,
        )
        .unwrap();
        assert_eq!(c.on_slot_busy, SlotBusy::Exit);
        assert_eq!(
            c.mode,
            OutboxMode::LogicalMessage {
                prefix: "outbox".into()
            }
        );
        assert_eq!(
            (c.columns.preset, c.columns.payload.as_deref()),
            (Preset::Debezium, Some("body"))
        );
        assert_eq!(c.table_name().unwrap(), ("app".to_string(), "events".to_string()));
        let e = toml::from_str::<SourceConfig>("slots = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn serializes_back_to_what_it_reads() {
        let c = SourceConfig {
            ssl_root_cert: Some("/etc/ca.pem".into()),
            mode: OutboxMode::LogicalMessage {
                prefix: "outbox".into(),
            },
            on_slot_busy: SlotBusy::Exit,
            ..SourceConfig::default()
        };
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("ssl_root_cert = \"/etc/ca.pem\""), "{text}");
        assert_eq!(toml::from_str::<SourceConfig>(&text).unwrap(), c);
        let defaults = toml::to_string(&SourceConfig::default()).unwrap();
        assert_eq!(
            toml::from_str::<SourceConfig>(&defaults).unwrap(),
            SourceConfig::default()
        );
    }

    #[test]
    fn debug_hides_passwords() {
        let c = SourceConfig {
            pg_url: "postgres://app:hunter2@db:5432/app".into(),
            password: Some("hunter3".into()),
            ..Default::default()
        };
        let text = format!("{c:?}");
        assert!(!text.contains("hunter2") && !text.contains("hunter3"), "{text}");
        assert!(text.contains("postgres://app:***@db:5432/app"), "{text}");
        let conninfo = SourceConfig {
            pg_url: "host=db password=hunter2 user=app".into(),
            ..Default::default()
        };
        assert!(format!("{conninfo:?}").contains("host=db password=*** user=app"));
    }

    #[test]
    fn rejects_bad_names() {
        let bad = |f: fn(&mut SourceConfig)| {
            let mut c = SourceConfig::default();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert!(bad(|c| c.slot = "My-Slot".into()).contains("slot"));
        assert!(bad(|c| c.publication = String::new()).contains("publication"));
        assert!(bad(|c| c.table = "a.b.c".into()).contains("schema.table"));
        assert!(bad(|c| c.channel_capacity = 0).contains("channel_capacity"));
        assert_eq!(
            SourceConfig {
                table: "outbox".into(),
                ..Default::default()
            }
            .table_name()
            .unwrap(),
            ("public".to_string(), "outbox".to_string())
        );
    }
}
