//! The WAL stage's errors, split by what the caller must do: reconnect and start again, or halt.

use crate::pgoutput::DecodeError;
use pgwire_replication::PgWireError;

/// Everything that can stop the WAL source. [`WalError::is_retriable`] tells the pipeline whether to start
/// again from the top (abort the Kafka transaction, reconnect) or to stop and let an operator fix something.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The configuration is invalid or does not match the database (fatal).
    #[error("WAL source configuration: {0}")]
    Config(String),

    /// The outbox table lacks a column the mapping needs (fatal).
    #[error(
        "outbox table {table} has no column \"{column}\" (mapped to the event's {field}): add it (see \
         config/outbox.sql), or map another column with [source.columns] {field} = \"...\", or pick the \
         preset that matches the table (\"outboxd\" or \"debezium\"); the aggregate type is needed only \
         while kafka.routing.topic_template uses {{aggregate_type}} (route by {{event_type.0}}, the first part \
         of a dotted event type, to do without it)"
    )]
    MissingColumn {
        /// The outbox table (`schema.name`).
        table: String,
        /// The missing column.
        column: String,
        /// The event field it was to fill.
        field: &'static str,
    },

    /// The server does not run with `wal_level = logical` (fatal).
    #[error(
        "Postgres runs with wal_level = {actual}, logical decoding needs wal_level = logical: run \
         `ALTER SYSTEM SET wal_level = logical;` as a superuser, then restart Postgres"
    )]
    WalLevel {
        /// The current setting.
        actual: String,
    },

    /// The server is older than Postgres 14 (fatal).
    #[error("Postgres {version} is not supported: outboxd needs Postgres 14 or newer")]
    ServerVersion {
        /// The server's `server_version`.
        version: String,
    },

    /// Another process streams from the slot, and the configuration says not to wait, or waiting timed out
    /// (fatal: the slot is never taken from its holder).
    #[error(
        "replication slot {slot} is in use by another process (pid {pid}{client}). Another outboxd \
         instance is probably running: stop it, or set on_slot_busy = \"wait\" to take over when it stops. \
         To end that session: SELECT pg_terminate_backend({pid});"
    )]
    SlotBusy {
        /// The slot name.
        slot: String,
        /// The walsender holding it.
        pid: i32,
        /// Where that walsender's client connects from, as ", client 10.0.0.5 (app outboxd)", or empty.
        client: String,
    },

    /// A pgoutput message could not be decoded (fatal: the same bytes would come again).
    #[error("malformed replication stream: {0}")]
    Decode(#[from] DecodeError),

    /// The stream broke an invariant of the protocol (fatal).
    #[error("inconsistent replication stream: {0}")]
    Stream(String),

    /// No session with Postgres: the server could not be reached, the TLS handshake or the login failed.
    /// Retriable only when the server may come back by itself ([`ConnectFailure::is_transient`]).
    #[error("cannot connect to Postgres at {server} as user {user:?}: {detail}. Fix: {fix}")]
    Connect {
        /// `host:port` from `pg_url`.
        server: String,
        /// The user from `pg_url`.
        user: String,
        /// What failed.
        failure: ConnectFailure,
        /// The driver's or the server's message.
        detail: String,
        /// What to check or change.
        fix: String,
    },

    /// `slot create` found the slot already there (fatal: its position is kept, never replaced).
    #[error(
        "replication slot {slot} already exists: `outboxd slot status` shows its position; outboxd uses it \
         as is. Drop it first (`outboxd slot drop`) only if its position may be lost"
    )]
    SlotExists {
        /// The slot name.
        slot: String,
    },

    /// `slot drop` (or status) found no such slot (fatal).
    #[error("replication slot {slot} does not exist (on this server): check source.slot")]
    SlotMissing {
        /// The slot name.
        slot: String,
    },

    /// `slot drop` refused: a process streams from the slot (fatal: a slot in use is never dropped).
    #[error(
        "replication slot {slot} is in use by pid {pid}{client}: refusing to drop a slot that is streaming. \
         Stop that outboxd first (or end the session with SELECT pg_terminate_backend({pid});), then drop"
    )]
    SlotInUse {
        /// The slot name.
        slot: String,
        /// The walsender holding it.
        pid: i32,
        /// Where that walsender's client connects from, as ", client 10.0.0.5 (application_name outboxd)".
        client: String,
    },

    /// A query on the setup connection failed; retriable when the connection was lost.
    #[error("{context}: {source}")]
    Postgres {
        /// What was being done.
        context: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// The replication connection failed; retriable when the connection was lost.
    #[error("replication connection to Postgres: {source}")]
    Replication {
        /// The replication client's error.
        #[source]
        source: PgWireError,
    },

    /// The server ended the replication stream without an error (retriable).
    #[error("the replication stream ended: {0}")]
    Disconnected(String),
}

impl WalError {
    /// True when starting again (reconnecting) may succeed: the connection was lost or the server is
    /// restarting. False when something must be changed first (configuration, server settings, the slot's
    /// other user, a malformed stream).
    pub fn is_retriable(&self) -> bool {
        match self {
            WalError::Postgres { source, .. } => match source.code() {
                None => true,
                Some(code) => sqlstate_is_transient(code.code()),
            },
            WalError::Replication { source } => match source {
                PgWireError::Server(message) => sqlstate_of(message).is_none_or(sqlstate_is_transient),
                other => other.is_transient(),
            },
            WalError::Disconnected(_) => true,
            WalError::Connect { failure, .. } => failure.is_transient(),
            WalError::SlotExists { .. } | WalError::SlotMissing { .. } | WalError::SlotInUse { .. } => false,
            WalError::Config(_)
            | WalError::MissingColumn { .. }
            | WalError::WalLevel { .. }
            | WalError::ServerVersion { .. }
            | WalError::SlotBusy { .. }
            | WalError::Decode(_)
            | WalError::Stream(_) => false,
        }
    }

    pub(crate) fn pg(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> WalError {
        let context = context.into();
        move |source| WalError::Postgres { context, source }
    }
}

/// Why a connection to Postgres failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Refused, timed out, name not resolved, or not a Postgres server at that address.
    Unreachable,
    /// The TLS handshake failed: the server has no TLS, or its certificate was not accepted.
    Tls,
    /// The login was refused: wrong password, unknown role, or no `pg_hba.conf` entry.
    Authentication,
    /// The server refused the session for another reason, with this SQLSTATE (missing database, too many
    /// connections, starting up).
    Rejected(String),
}

impl ConnectFailure {
    /// True when trying again later may succeed without a change.
    pub fn is_transient(&self) -> bool {
        match self {
            ConnectFailure::Unreachable => true,
            ConnectFailure::Tls | ConnectFailure::Authentication => false,
            ConnectFailure::Rejected(code) => sqlstate_is_transient(code),
        }
    }
}

impl From<PgWireError> for WalError {
    fn from(source: PgWireError) -> Self {
        WalError::Replication { source }
    }
}

/// Connection exceptions, operator intervention (shutdown, crash recovery), insufficient resources and
/// serialization failures are worth a retry; everything else needs a change first.
fn sqlstate_is_transient(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P") || code.starts_with("53") || code == "40001"
}

/// The SQLSTATE that pgwire-replication puts into a server error's text ("... (SQLSTATE 55006)").
pub(crate) fn sqlstate_of(message: &str) -> Option<&str> {
    let at = message.find("SQLSTATE ")? + "SQLSTATE ".len();
    message.get(at..at + 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retriable_split() {
        let server = |m: &str| WalError::Replication {
            source: PgWireError::Server(m.into()),
        };
        assert!(
            server("terminating connection due to administrator command (SQLSTATE 57P01)").is_retriable()
        );
        assert!(!server("replication slot \"s\" is active for PID 7 (SQLSTATE 55006)").is_retriable());
        assert!(!server("publication \"p\" does not exist (SQLSTATE 42704)").is_retriable());
        assert!(server("no code at all").is_retriable());
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(WalError::from(PgWireError::from(io)).is_retriable());
        assert!(!WalError::from(PgWireError::Auth("bad password".into())).is_retriable());
        assert!(WalError::Disconnected("eof".into()).is_retriable());
        assert!(!WalError::WalLevel {
            actual: "replica".into()
        }
        .is_retriable());
        assert!(!WalError::Stream("x".into()).is_retriable());
        let connect = |failure| WalError::Connect {
            server: "db:5432".into(),
            user: "app".into(),
            failure,
            detail: "d".into(),
            fix: "f".into(),
        };
        assert!(connect(ConnectFailure::Unreachable).is_retriable());
        assert!(connect(ConnectFailure::Rejected("57P03".into())).is_retriable());
        assert!(!connect(ConnectFailure::Rejected("3D000".into())).is_retriable());
        assert!(!connect(ConnectFailure::Authentication).is_retriable());
        assert!(!connect(ConnectFailure::Tls).is_retriable());
        let text = connect(ConnectFailure::Tls).to_string();
        assert!(
            text.contains("db:5432") && text.contains("\"app\"") && text.contains("Fix: f"),
            "{text}"
        );
        let in_use = WalError::SlotInUse {
            slot: "s".into(),
            pid: 7,
            client: String::new(),
        };
        assert!(!in_use.is_retriable() && in_use.to_string().contains("pid 7"));
        let busy = WalError::SlotBusy {
            slot: "s".into(),
            pid: 42,
            client: ", client 10.0.0.5".into(),
        };
        assert!(!busy.is_retriable());
        assert!(busy.to_string().contains("pid 42, client 10.0.0.5"), "{busy}");
    }

    #[test]
    fn messages_carry_fix_it_hints() {
        let e = WalError::WalLevel {
            actual: "replica".into(),
        };
        assert!(
            e.to_string().contains("ALTER SYSTEM SET wal_level = logical"),
            "{e}"
        );
        let e = WalError::MissingColumn {
            table: "public.outbox".into(),
            column: "payload".into(),
            field: "payload",
        };
        assert!(
            e.to_string().contains("public.outbox") && e.to_string().contains("\"payload\""),
            "{e}"
        );
        assert_eq!(sqlstate_of("x (SQLSTATE 55006)"), Some("55006"));
        assert_eq!(sqlstate_of("x (SQLSTATE 55"), None);
    }
}
