//! Opening the set-up connection (tokio-postgres, TLS by rustls) with a deadline, and turning a failure into
//! a [`WalError::Connect`] that names the server, the user, what failed and what to check.

use crate::config::SourceConfig;
use crate::error::ConnectFailure;
use crate::tls::TlsSettings;
use crate::WalError;
use std::time::Duration;
use tokio_postgres::config::Host;
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Where and how to connect: the parsed URL, the TLS settings, the deadline.
#[derive(Clone, Debug)]
pub(crate) struct PgTarget {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) tls: TlsSettings,
    pub(crate) timeout: Duration,
}

impl PgTarget {
    /// From the source configuration (fails on an unparsable `pg_url` or `sslmode`).
    pub(crate) fn new(config: &SourceConfig) -> Result<PgTarget, WalError> {
        let mut pg = config.pg_config()?;
        let timeout = config.connect_timeout();
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(timeout);
        }
        Ok(PgTarget {
            pg,
            tls: config.tls_settings()?,
            timeout,
        })
    }

    /// `host:port` of the first host (a socket directory for Unix sockets).
    pub(crate) fn server(&self) -> String {
        let port = self.pg.get_ports().first().copied().unwrap_or(5432);
        match self.pg.get_hosts().first() {
            Some(Host::Tcp(host)) if host.contains(':') => format!("[{host}]:{port}"),
            Some(Host::Tcp(host)) => format!("{host}:{port}"),
            Some(Host::Unix(dir)) => format!("{} (Unix socket, port {port})", dir.display()),
            None => format!("localhost:{port}"),
        }
    }

    /// The user named by `pg_url` (empty when none is).
    pub(crate) fn user(&self) -> &str {
        self.pg.get_user().unwrap_or_default()
    }

    /// The database named by `pg_url` (the user name when none is, as libpq does).
    pub(crate) fn database(&self) -> &str {
        self.pg.get_dbname().unwrap_or_else(|| self.user())
    }

    /// Connects and drives the connection on a task of its own.
    pub(crate) async fn connect(&self) -> Result<Client, WalError> {
        let tls = MakeRustlsConnect::new(self.tls.rustls_config()?);
        let connecting = self.pg.connect(tls);
        let (client, connection) = match tokio::time::timeout(self.timeout, connecting).await {
            Ok(Ok(opened)) => opened,
            Ok(Err(e)) => return Err(self.failure(&e)),
            Err(_) => {
                return Err(self.error(
                    ConnectFailure::Unreachable,
                    format!("no session within {} ms", self.timeout.as_millis()),
                    self.unreachable_fix(),
                ))
            }
        };
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "set-up connection ended");
            }
        });
        Ok(client)
    }

    fn error(&self, failure: ConnectFailure, detail: String, fix: String) -> WalError {
        WalError::Connect {
            server: self.server(),
            user: self.user().to_string(),
            failure,
            detail,
            fix,
        }
    }

    fn unreachable_fix(&self) -> String {
        format!(
            "is Postgres running and listening on {}? Check the host and port in source.pg_url (and any \
             firewall in between)",
            self.server()
        )
    }

    /// Sorts a driver error into what the operator must look at.
    fn failure(&self, e: &tokio_postgres::Error) -> WalError {
        let (user, database, mode) = (self.user(), self.database(), self.tls.mode);
        if let Some(db) = e.as_db_error() {
            let code = db.code().code();
            let detail = db.message().to_string();
            let (failure, fix) = match code {
                "28P01" | "28000" => (
                    ConnectFailure::Authentication,
                    format!(
                        "check user {user:?} and its password (in source.pg_url, or source.password), and \
                         that the server's pg_hba.conf lets {user:?} connect to database {database:?} from \
                         this host"
                    ),
                ),
                "3D000" => (
                    ConnectFailure::Rejected(code.to_string()),
                    format!("create database {database:?}, or name an existing one in source.pg_url"),
                ),
                "53300" => (
                    ConnectFailure::Rejected(code.to_string()),
                    "the server has no free connection slot: raise max_connections, or close idle sessions"
                        .to_string(),
                ),
                "57P03" => (
                    ConnectFailure::Rejected(code.to_string()),
                    "the server is starting up or shutting down: try again shortly".to_string(),
                ),
                _ => (
                    ConnectFailure::Rejected(code.to_string()),
                    format!("the server refused the session (SQLSTATE {code}): see its log"),
                ),
            };
            return self.error(failure, detail, fix);
        }
        let detail = error_chain(e);
        if let Some(tls_error) = find_rustls_error(e) {
            let fix = match tls_error {
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. },
                ) => "the server's certificate does not name the host in source.pg_url: connect by a name \
                      the certificate holds, or use sslmode=verify-ca (checks the chain, not the name)"
                    .to_string(),
                rustls::Error::InvalidCertificate(_) => format!(
                    "the server's certificate was not accepted with sslmode={mode}: set source.ssl_root_cert \
                     to the PEM file of the CA that signed it, or use sslmode=require to encrypt without \
                     checking the certificate"
                ),
                _ => format!("the TLS handshake failed with sslmode={mode}: see the server's log"),
            };
            return self.error(ConnectFailure::Tls, detail, fix);
        }
        if detail.contains("server does not support TLS") {
            return self.error(
                ConnectFailure::Tls,
                detail,
                format!(
                    "the server does not accept TLS, but source.pg_url sets sslmode={mode}: turn TLS on in \
                     the server (ssl = on, ssl_cert_file, ssl_key_file), or set sslmode=prefer or \
                     sslmode=disable in source.pg_url"
                ),
            );
        }
        self.error(ConnectFailure::Unreachable, detail, self.unreachable_fix())
    }
}

/// "error connecting to server: Connection refused (os error 111)": the error and its causes.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        cause = c.source();
    }
    text
}

/// The rustls error behind a failed handshake (tokio-rustls wraps it in an `io::Error`).
fn find_rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(found) = c.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(found) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(found);
        }
        cause = c.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_server_and_user() {
        let target = |url: &str| {
            PgTarget::new(&SourceConfig {
                pg_url: url.into(),
                ..SourceConfig::default()
            })
            .unwrap()
        };
        let t = target("postgres://app@db.example:6543/orders?connect_timeout=3");
        assert_eq!(
            (t.server(), t.user(), t.database()),
            ("db.example:6543".into(), "app", "orders")
        );
        assert_eq!(t.pg.get_connect_timeout(), Some(&Duration::from_secs(3)));
        let t = target("host=/run/pg user=bob");
        assert_eq!(
            (t.server(), t.database()),
            ("/run/pg (Unix socket, port 5432)".into(), "bob")
        );
        assert_eq!(t.pg.get_connect_timeout(), Some(&Duration::from_secs(10)));
        assert_eq!(target("postgres://u@[::1]/d").server(), "[::1]:5432");
    }

    #[test]
    fn finds_a_wrapped_rustls_error() {
        let inner = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, inner);
        assert!(matches!(
            find_rustls_error(&io),
            Some(rustls::Error::InvalidCertificate(_))
        ));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(find_rustls_error(&plain).is_none());
        assert_eq!(error_chain(&plain), "refused");
    }
}
