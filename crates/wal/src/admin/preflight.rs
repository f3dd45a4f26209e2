//! `outboxd check`: every precondition of the WAL source, checked read-only, each with what is wrong and how
//! to fix it. Checks run independently; when there is no connection, the ones that need it are skipped.

use super::{checks, publication};
use crate::config::SourceConfig;
use crate::connect::PgTarget;
use crate::error::ConnectFailure;
use crate::WalError;
use std::fmt;
use tokio_postgres::Client;

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CheckStatus {
    /// Fine.
    Ok,
    /// Works, but something deserves attention.
    Warn,
    /// Will not work until fixed.
    Fail,
    /// Not run: an earlier check failed (no valid configuration, no connection).
    Skipped,
}

impl CheckStatus {
    /// `ok`, `warn`, `FAIL`, `skip`.
    pub fn label(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skipped => "skip",
        }
    }
}

/// One named check: its outcome, what was found, and (when not Ok) how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// What was checked (one of the `Check::*` names).
    pub name: &'static str,
    /// The outcome.
    pub status: CheckStatus,
    /// What was found.
    pub detail: String,
    /// How to fix it: a statement to run or a setting to change.
    pub fix: Option<String>,
}

impl Check {
    /// `source` settings that can be checked without a server.
    pub const CONFIG: &'static str = "config";
    /// The server answers at `host:port` (TLS included).
    pub const CONNECTION: &'static str = "connection";
    /// The user may log in to the database.
    pub const LOGIN: &'static str = "login";
    /// PostgreSQL 14 or newer.
    pub const SERVER_VERSION: &'static str = "server version";
    /// `wal_level = logical`.
    pub const WAL_LEVEL: &'static str = "wal_level";
    /// The user is a superuser or has the REPLICATION attribute.
    pub const REPLICATION_ROLE: &'static str = "replication role";
    /// A replication slot is free for outboxd's (unless it exists).
    pub const MAX_REPLICATION_SLOTS: &'static str = "max_replication_slots";
    /// A walsender is free for outboxd's stream.
    pub const MAX_WAL_SENDERS: &'static str = "max_wal_senders";
    /// The outbox table exists, is logged, and has every mapped column.
    pub const OUTBOX_TABLE: &'static str = "outbox table";
    /// The publication exists (or will be created) and publishes exactly the outbox table's inserts.
    pub const PUBLICATION: &'static str = "publication";
    /// The slot exists (or will be created), is outboxd's kind, and is free.
    pub const REPLICATION_SLOT: &'static str = "replication slot";

    /// The checks that need a connection, in the order they run.
    const AFTER_LOGIN: [&'static str; 8] = [
        Check::SERVER_VERSION,
        Check::WAL_LEVEL,
        Check::REPLICATION_ROLE,
        Check::MAX_REPLICATION_SLOTS,
        Check::MAX_WAL_SENDERS,
        Check::OUTBOX_TABLE,
        Check::PUBLICATION,
        Check::REPLICATION_SLOT,
    ];

    pub(crate) fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: CheckStatus::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    pub(crate) fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            status: CheckStatus::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn skipped(name: &'static str, why: &str) -> Check {
        Check {
            name,
            status: CheckStatus::Skipped,
            detail: format!("skipped: {why}"),
            fix: None,
        }
    }

    /// A check that could not run its query.
    pub(crate) fn error(name: &'static str, e: &WalError) -> Check {
        Check {
            name,
            status: CheckStatus::Fail,
            detail: e.to_string(),
            fix: None,
        }
    }
}

impl fmt::Display for Check {
    /// `[ok]   name: detail`, then `       fix: ...` on a line of its own.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<6} {}: {}",
            format!("[{}]", self.status.label()),
            self.name,
            self.detail
        )?;
        if let Some(fix) = &self.fix {
            write!(f, "\n       fix: {fix}")?;
        }
        Ok(())
    }
}

/// True when no check failed (warnings pass).
pub fn preflight_passed(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.status != CheckStatus::Fail)
}

/// Runs every check against the configured server, read-only (nothing is created), within about
/// `connect_timeout_ms` for the connection plus one round trip per check.
pub async fn preflight(config: &SourceConfig) -> Vec<Check> {
    let mut out = Vec::with_capacity(3 + Check::AFTER_LOGIN.len());
    let target = config
        .validate()
        .and_then(|()| PgTarget::new(config))
        .and_then(|target| target.tls.rustls_config().map(|_| target));
    let target = match target {
        Ok(target) => {
            out.push(Check::ok(
                Check::CONFIG,
                format!(
                    "slot {}, publication {}, table {}, sslmode {}",
                    config.slot, config.publication, config.table, target.tls.mode
                ),
            ));
            target
        }
        Err(e) => {
            out.push(Check::fail(
                Check::CONFIG,
                e.to_string(),
                "correct the [source] settings named above",
            ));
            for name in [Check::CONNECTION, Check::LOGIN]
                .iter()
                .chain(&Check::AFTER_LOGIN)
            {
                out.push(Check::skipped(name, "invalid configuration"));
            }
            return out;
        }
    };
    let Some(client) = connect(&target, &mut out).await else {
        for name in Check::AFTER_LOGIN {
            out.push(Check::skipped(name, "no connection"));
        }
        return out;
    };
    let ctx = checks::CheckCtx {
        client: &client,
        config,
    };
    let run = |name, result: Result<Check, WalError>| result.unwrap_or_else(|e| Check::error(name, &e));
    out.push(run(Check::SERVER_VERSION, checks::server_version(&ctx).await));
    out.push(run(Check::WAL_LEVEL, checks::wal_level(&ctx).await));
    out.push(run(Check::REPLICATION_ROLE, checks::replication_role(&ctx).await));
    let slot = checks::SlotState::read(&ctx).await;
    out.push(run(
        Check::MAX_REPLICATION_SLOTS,
        checks::max_replication_slots(&ctx, &slot).await,
    ));
    out.push(run(Check::MAX_WAL_SENDERS, checks::max_wal_senders(&ctx).await));
    out.push(run(Check::OUTBOX_TABLE, checks::outbox_table(&ctx).await));
    out.push(run(Check::PUBLICATION, publication::publication(&ctx).await));
    out.push(run(
        Check::REPLICATION_SLOT,
        checks::replication_slot(&ctx, slot).await,
    ));
    out
}

/// Connects, pushing the `connection` and `login` checks; `None` when there is no session.
async fn connect(target: &PgTarget, out: &mut Vec<Check>) -> Option<Client> {
    let server = target.server();
    match target.connect().await {
        Ok(client) => {
            let tls = tls_in_use(&client).await;
            out.push(Check::ok(
                Check::CONNECTION,
                format!("reached {server}, {tls} (sslmode {})", target.tls.mode),
            ));
            out.push(Check::ok(
                Check::LOGIN,
                format!(
                    "logged in as {:?} to database {:?}",
                    target.user(),
                    target.database()
                ),
            ));
            Some(client)
        }
        Err(WalError::Connect {
            failure,
            detail,
            fix,
            user,
            ..
        }) => {
            match failure {
                ConnectFailure::Authentication | ConnectFailure::Rejected(_) => {
                    out.push(Check::ok(Check::CONNECTION, format!("reached {server}")));
                    out.push(Check::fail(
                        Check::LOGIN,
                        format!("as user {user:?}: {detail}"),
                        fix,
                    ));
                }
                ConnectFailure::Unreachable | ConnectFailure::Tls => {
                    out.push(Check::fail(Check::CONNECTION, format!("{server}: {detail}"), fix));
                    out.push(Check::skipped(Check::LOGIN, "no connection"));
                }
            }
            None
        }
        Err(other) => {
            out.push(Check::error(Check::CONNECTION, &other));
            out.push(Check::skipped(Check::LOGIN, "no connection"));
            None
        }
    }
}

/// "TLS on (TLSv1.3)" or "TLS off", from `pg_stat_ssl`.
async fn tls_in_use(client: &Client) -> String {
    let row = client
        .query_opt(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await;
    match row {
        Ok(Some(r)) if r.get::<_, bool>(0) => {
            format!("TLS on ({})", r.get::<_, Option<String>>(1).unwrap_or_default())
        }
        Ok(Some(_)) => "TLS off".into(),
        _ => "TLS unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_verdict() {
        let ok = Check::ok(Check::WAL_LEVEL, "logical");
        assert_eq!(ok.to_string(), "[ok]   wal_level: logical");
        let fail = Check::fail(
            Check::WAL_LEVEL,
            "replica",
            "ALTER SYSTEM SET wal_level = logical",
        );
        assert_eq!(
            fail.to_string(),
            "[FAIL] wal_level: replica\n       fix: ALTER SYSTEM SET wal_level = logical"
        );
        let warn = Check {
            status: CheckStatus::Warn,
            ..Check::fail(Check::PUBLICATION, "publishes deletes", "ALTER PUBLICATION")
        };
        assert!(preflight_passed(&[ok.clone(), warn.clone()]));
        assert!(!preflight_passed(&[ok, warn, fail]));
    }

    #[tokio::test]
    async fn an_invalid_config_skips_everything_else() {
        let checks = preflight(&SourceConfig {
            slot: "Bad-Name".into(),
            ..SourceConfig::default()
        })
        .await;
        assert_eq!(checks.len(), 11);
        assert_eq!(
            (checks[0].name, checks[0].status),
            (Check::CONFIG, CheckStatus::Fail)
        );
        assert!(checks[0].detail.contains("slot"), "{}", checks[0].detail);
        assert!(checks[1..].iter().all(|c| c.status == CheckStatus::Skipped));

        let checks = preflight(&SourceConfig {
            pg_url: "postgres://u@db/app?sslmode=verify-ca".into(),
            ssl_root_cert: Some("/nonexistent/ca.pem".into()),
            ..SourceConfig::default()
        })
        .await;
        assert_eq!(checks[0].status, CheckStatus::Fail);
        assert!(checks[0].detail.contains("/nonexistent/ca.pem"), "{}", checks[0]);
        assert_eq!(checks[1].status, CheckStatus::Skipped);
    }
}
