//! The WAL source: checks and set-up, then a reader task that streams the slot through the [`Assembler`] into
//! a bounded channel, and reports confirmed positions back to Postgres.

use crate::assembler::{Assembler, AssemblerConfig};
use crate::config::{OutboxMode, SourceConfig};
use crate::connect::PgTarget;
use crate::error::sqlstate_of;
use crate::progress::{Counters, Progress};
use crate::reader::WalReader;
use crate::{setup, WalError};
use outboxd_core::{Lsn, SlotOrigin, TxEvent};
use pgwire_replication::{PgWireError, ReplicationClient, ReplicationConfig, ReplicationMetrics};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

/// Session settings for the walsender, so that values print the same everywhere: bytea as `\x<hex>`,
/// timestamps in ISO format and UTC.
const SESSION_OPTIONS: &str = "-c bytea_output=hex -c DateStyle=ISO -c TimeZone=UTC -c extra_float_digits=3";

/// Installs rustls' ring crypto provider as the process default, unless one is installed already. Both ring
/// and aws-lc-rs end up linked into outboxd, and rustls refuses to pick one by itself.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Entry point of the WAL stage.
#[derive(Debug)]
pub struct Source;

impl Source {
    /// Waits until no other process streams from the slot (or fails at once with `on_slot_busy = "exit"`,
    /// naming the holder), without taking it and without creating anything. With `on_slot_busy = "exit"` the
    /// pipeline calls this before it starts its Kafka producer, so that a second instance leaves a running one
    /// (same transactional id) alone instead of fencing it. A slot that does not exist yet is free.
    pub async fn wait_for_free_slot(config: &SourceConfig) -> Result<(), WalError> {
        config.validate()?;
        install_crypto_provider();
        let client = PgTarget::new(config)?.connect().await?;
        if setup::slot_row(&client, &config.slot).await?.is_none() {
            return Ok(());
        }
        let deadline = config
            .slot_busy_timeout_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        setup::wait_until_slot_free(&client, config, deadline)
            .await
            .map(|_| ())
    }

    /// Checks the server and the table, and creates the publication and the slot when configured, without
    /// taking the slot: the pipeline calls this first, before anything slower (its Kafka producer's
    /// `init_transactions`), so that rows committed while it starts are in the slot's stream. When the slot
    /// is created now, returns its origin, with the rows the table held then: they predate the slot and are
    /// not in its stream (the pipeline backfills them or says that it skips them).
    pub async fn prepare(config: &SourceConfig) -> Result<SlotPrepared, WalError> {
        Ok(Self::set_up(config).await?.1)
    }

    /// What [`Source::prepare`] and [`Source::start`] both do first; returns the session for `start`.
    async fn set_up(config: &SourceConfig) -> Result<(tokio_postgres::Client, SlotPrepared), WalError> {
        config.validate()?;
        install_crypto_provider();
        let client = PgTarget::new(config)?.connect().await?;
        setup::check_server(&client).await?;
        if config.mode == OutboxMode::Table {
            setup::check_table(&client, config).await?;
        }
        setup::ensure_publication(&client, config).await?;
        let origin = setup::ensure_slot(&client, config).await?;
        Ok((client, SlotPrepared { origin }))
    }

    /// Checks the server, creates the publication and slot when configured, waits for the slot to be free
    /// (or fails, per `on_slot_busy`), and starts streaming. `skip_through` is the sink's checkpoint: every
    /// transaction ending at or below it is not emitted again.
    pub async fn start(
        config: SourceConfig,
        skip_through: Lsn,
    ) -> Result<(SourceHandle, mpsc::Receiver<TxEvent>), WalError> {
        let (client, _) = Self::set_up(&config).await?;
        let deadline = config
            .slot_busy_timeout_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        let (repl, start) = loop {
            let start = setup::wait_until_slot_free(&client, &config, deadline).await?;
            let mut repl = ReplicationClient::connect(replication_config(&config, start)?).await?;
            match repl.wait_started().await {
                Ok(()) => break (repl, start),
                // Taken between our look and START_REPLICATION: look again (wait, or fail naming the holder).
                Err(PgWireError::Server(m)) if sqlstate_of(&m) == Some("55006") => continue,
                Err(e) => return Err(e.into()),
            }
        };
        drop(client);
        tracing::info!(slot = %config.slot, %start, %skip_through, "replication started");

        let counters = Arc::new(Counters::default());
        let assembler = Assembler::with_counters(
            AssemblerConfig {
                table: config.table_name()?,
                columns: config.columns.clone(),
                mode: config.mode.clone(),
                skip_through,
                start,
            },
            Arc::clone(&counters),
        );
        let shared = Arc::new(Shared {
            sink_confirmed: AtomicU64::new(0),
            received: AtomicU64::new(start.0),
            confirmed: AtomicU64::new(start.0),
            wake: Notify::new(),
            counters,
            metrics: repl.metrics(),
        });
        let (tx, rx) = mpsc::channel(config.channel_capacity);
        let (stop_tx, stop_rx) = watch::channel(false);
        let reader = WalReader {
            repl,
            assembler,
            out: tx,
            shared: Arc::clone(&shared),
            stop: stop_rx,
            batch: Vec::with_capacity(2),
            reported: start,
            shutdown_timeout: Duration::from_millis(config.shutdown_timeout_ms),
        };
        let task = tokio::spawn(reader.run());
        Ok((
            SourceHandle {
                shared,
                stop: stop_tx,
                task: Some(task),
            },
            rx,
        ))
    }
}

pub(crate) fn replication_config(config: &SourceConfig, start: Lsn) -> Result<ReplicationConfig, WalError> {
    use tokio_postgres::config::Host;
    let pg = config.pg_config()?;
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(path)) => path.to_string_lossy().into_owned(),
        None => "localhost".into(),
    };
    let user = pg
        .get_user()
        .ok_or_else(|| WalError::Config("pg_url names no user".into()))?;
    let password = String::from_utf8_lossy(pg.get_password().unwrap_or_default()).into_owned();
    let database = pg.get_dbname().unwrap_or(user);
    let tls = config.tls_settings()?.for_replication(&host);
    let options = match pg.get_options() {
        Some(user_options) => format!("{SESSION_OPTIONS} {user_options}"),
        None => SESSION_OPTIONS.to_string(),
    };
    Ok(ReplicationConfig::new(
        host,
        user,
        password,
        database,
        config.slot.as_str(),
        config.publication.as_str(),
    )
    .with_port(pg.get_ports().first().copied().unwrap_or(5432))
    .with_tls(tls)
    .with_ack_lsn(pgwire_replication::Lsn(start.0))
    .with_status_interval(config.status_interval())
    .with_wakeup_interval(config.status_interval().max(Duration::from_secs(1)))
    .with_buffer_size(config.channel_capacity)
    .with_options(options)
    .with_application_name(config.application_name.as_str()))
}

/// State shared by the reader task and the handle.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Highest end LSN the sink confirmed (to be applied by the reader).
    pub(crate) sink_confirmed: AtomicU64,
    /// Published by the reader: the tracker's received position.
    pub(crate) received: AtomicU64,
    /// Published by the reader: the tracker's confirmed position.
    pub(crate) confirmed: AtomicU64,
    /// Wakes the reader when the sink confirms.
    pub(crate) wake: Notify,
    pub(crate) counters: Arc<Counters>,
    pub(crate) metrics: Arc<ReplicationMetrics>,
}

/// What [`Source::prepare`] found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotPrepared {
    /// When the slot did not exist and was created now: its origin (exported snapshot, consistent point, and
    /// the rows the outbox table held then, which predate the slot).
    pub origin: Option<SlotOrigin>,
}

/// Controls a running source.
#[derive(Debug)]
pub struct SourceHandle {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Result<(), WalError>>>,
}

impl SourceHandle {
    /// The sink durably committed every transaction ending at or below `end_lsn`: that position may now be
    /// confirmed to Postgres. Cheap and non-blocking; positions never move backwards.
    pub fn confirm(&self, end_lsn: Lsn) {
        self.shared.sink_confirmed.fetch_max(end_lsn.0, Ordering::AcqRel);
        self.shared.wake.notify_one();
    }

    /// Positions and counters so far.
    pub fn progress(&self) -> Progress {
        Progress {
            received: Lsn(self.shared.received.load(Ordering::Acquire)),
            confirmed: Lsn(self.shared.confirmed.load(Ordering::Acquire)),
            reported: Lsn(self.shared.metrics.last_applied_lsn().as_u64()),
            server_wal_end: Lsn(self.shared.metrics.last_wal_end().as_u64()),
            stats: self.shared.counters.snapshot(),
        }
    }

    /// Stops reading, sends the last confirmed position to Postgres (waiting up to `shutdown_timeout_ms` for
    /// it to go out), then closes the replication connection.
    pub async fn shutdown(mut self) -> Result<(), WalError> {
        let _ = self.stop.send(true);
        self.join().await
    }

    /// Resolves when the reader stops: `Ok` after a shutdown or when the event receiver was dropped, the
    /// reason otherwise. Resolves at once with `Ok` when already joined.
    pub async fn join(&mut self) -> Result<(), WalError> {
        match self.task.as_mut() {
            None => Ok(()),
            Some(task) => {
                let result = task.await;
                self.task = None;
                result.unwrap_or_else(|e| Err(WalError::Stream(format!("the WAL reader task failed: {e}"))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_config_follows_pg_url() {
        let config = SourceConfig {
            pg_url: "postgres://alice:s3cret@db.example:6543/app?sslmode=disable&options=-c%20work_mem%3D8MB"
                .into(),
            slot: "s".into(),
            publication: "p".into(),
            status_interval_ms: 250,
            channel_capacity: 64,
            ..SourceConfig::default()
        };
        let r = replication_config(&config, Lsn(0x10)).unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.user.as_str(), r.password.as_str()),
            ("db.example", 6543, "alice", "s3cret")
        );
        assert_eq!(
            (r.database.as_str(), r.slot.as_str(), r.publication.to_string()),
            ("app", "s", "p".into())
        );
        assert_eq!(
            (r.ack_lsn, r.start_lsn),
            (Some(pgwire_replication::Lsn(0x10)), pgwire_replication::Lsn(0))
        );
        assert_eq!(
            (r.status_interval, r.buffer_events),
            (Duration::from_millis(250), 64)
        );
        assert_eq!(r.tls.mode, pgwire_replication::SslMode::Disable);
        let options = r.options.unwrap_or_default();
        assert!(
            options.contains("bytea_output=hex") && options.ends_with("-c work_mem=8MB"),
            "{options}"
        );
        assert_eq!(r.application_name.as_deref(), Some("outboxd"));

        let unix = SourceConfig {
            pg_url: "host=/run/pg user=bob password=old".into(),
            password: Some("from-a-file".into()),
            ..SourceConfig::default()
        };
        let r = replication_config(&unix, Lsn(0)).unwrap();
        assert_eq!((r.host.as_str(), r.database.as_str()), ("/run/pg", "bob"));
        assert_eq!(r.password, "from-a-file", "password overrides the URL's");
        assert_eq!(
            r.tls.mode,
            pgwire_replication::SslMode::Prefer,
            "libpq's default sslmode is prefer"
        );
        let bad = SourceConfig {
            pg_url: "postgres://h/db?sslmode=bogus".into(),
            ..SourceConfig::default()
        };
        assert!(matches!(
            replication_config(&bad, Lsn(0)),
            Err(WalError::Config(_))
        ));
    }
}
