//! The reader task: receives the replication stream, runs it through the [`Assembler`] into the bounded
//! channel, applies the sink's confirmations, and makes sure the last one reaches Postgres before closing.

use crate::assembler::{Assembler, Input};
use crate::pgoutput::{self, Begin, CommitMessage, LogicalMessage};
use crate::source::Shared;
use crate::WalError;
use outboxd_core::{Lsn, TxEvent};
use pgwire_replication::{ReplicationClient, ReplicationEvent};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

enum Flow {
    Continue,
    /// Shutdown requested, or nobody listens any more.
    Stop,
}

pub(crate) struct WalReader {
    pub(crate) repl: ReplicationClient,
    pub(crate) assembler: Assembler,
    pub(crate) out: mpsc::Sender<TxEvent>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) batch: Vec<TxEvent>,
    /// Last position handed to the replication client as applied.
    pub(crate) reported: Lsn,
    pub(crate) shutdown_timeout: Duration,
}

impl WalReader {
    pub(crate) async fn run(mut self) -> Result<(), WalError> {
        let result = self.stream().await;
        if let Err(e) = &result {
            tracing::error!(error = %e, retriable = e.is_retriable(), "WAL reader stopped");
        }
        self.finish().await;
        result
    }

    async fn stream(&mut self) -> Result<(), WalError> {
        loop {
            let event = tokio::select! {
                biased;
                _ = self.stop.changed() => return Ok(()),
                _ = self.shared.wake.notified() => {
                    self.apply_confirmations();
                    continue;
                }
                event = self.repl.recv() => event?,
            };
            let Some(event) = event else {
                return Err(WalError::Disconnected(
                    "the server closed the replication stream".into(),
                ));
            };
            if let Flow::Stop = self.on_event(event).await? {
                return Ok(());
            }
        }
    }

    async fn on_event(&mut self, event: ReplicationEvent) -> Result<Flow, WalError> {
        let lsn = |l: pgwire_replication::Lsn| Lsn(l.as_u64());
        match &event {
            ReplicationEvent::KeepAlive { wal_end, .. } => self
                .assembler
                .handle(Input::KeepAlive(lsn(*wal_end)), &mut self.batch)?,
            ReplicationEvent::Begin {
                final_lsn,
                xid,
                commit_time_micros,
            } => self.assembler.handle(
                Input::Begin(Begin {
                    final_lsn: lsn(*final_lsn),
                    commit_time_pg_us: *commit_time_micros,
                    xid: *xid,
                }),
                &mut self.batch,
            )?,
            ReplicationEvent::Commit {
                lsn: commit_lsn,
                end_lsn,
                commit_time_micros,
            } => self.assembler.handle(
                Input::Commit(CommitMessage {
                    commit_lsn: lsn(*commit_lsn),
                    end_lsn: lsn(*end_lsn),
                    commit_time_pg_us: *commit_time_micros,
                }),
                &mut self.batch,
            )?,
            ReplicationEvent::Message {
                transactional,
                lsn: at,
                prefix,
                content,
            } => self.assembler.handle(
                Input::Message(LogicalMessage {
                    transactional: *transactional,
                    lsn: lsn(*at),
                    prefix,
                    content,
                }),
                &mut self.batch,
            )?,
            ReplicationEvent::XLogData { wal_start, data, .. } => {
                let message = pgoutput::decode(data)?;
                self.assembler
                    .handle(Input::Change(message, lsn(*wal_start)), &mut self.batch)?
            }
            ReplicationEvent::StoppedAt { reached } => {
                return Err(WalError::Disconnected(format!("the stream stopped at {reached}")));
            }
        }
        let mut batch = std::mem::take(&mut self.batch);
        let mut flow = Flow::Continue;
        for event in batch.drain(..) {
            if let Flow::Stop = self.send(event).await {
                flow = Flow::Stop;
                break;
            }
        }
        self.batch = batch;
        self.report();
        Ok(flow)
    }

    /// Sends one event, waiting for room (backpressure) while still applying the sink's confirmations.
    async fn send(&mut self, event: TxEvent) -> Flow {
        if let Ok(permit) = self.out.try_reserve() {
            permit.send(event);
            return Flow::Continue;
        }
        loop {
            tokio::select! {
                biased;
                _ = self.stop.changed() => return Flow::Stop,
                _ = self.shared.wake.notified() => {}
                permit = self.out.reserve() => match permit {
                    Ok(permit) => {
                        permit.send(event);
                        return Flow::Continue;
                    }
                    Err(_) => return Flow::Stop,
                },
            }
            // Woken by the sink: apply its confirmation, then wait for room again.
            self.apply_confirmations();
        }
    }

    fn apply_confirmations(&mut self) {
        let lsn = Lsn(self.shared.sink_confirmed.load(Ordering::Acquire));
        self.assembler.sink_confirmed(lsn);
        self.report();
    }

    /// Publishes positions, and hands a newly confirmable position to the replication client.
    fn report(&mut self) {
        let tracker = self.assembler.positions().tracker();
        self.shared
            .received
            .store(tracker.received().0, Ordering::Release);
        self.shared
            .confirmed
            .store(tracker.confirmed().0, Ordering::Release);
        if tracker.confirmed() > self.reported {
            self.reported = tracker.confirmed();
            self.repl
                .update_applied_lsn(pgwire_replication::Lsn(self.reported.0));
        }
    }

    /// Makes sure the last confirmed position reached Postgres, then closes the connection.
    async fn finish(&mut self) {
        self.apply_confirmations();
        let target = self.reported;
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        let mut pause = Duration::from_millis(5);
        while self.repl.is_running() && self.shared.metrics.last_applied_lsn().as_u64() < target.0 {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    %target,
                    reported = %self.shared.metrics.last_applied_lsn(),
                    "the last confirmed position was not sent in time; Postgres will resend from the older one \
                     (those transactions are skipped by the checkpoint)"
                );
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        tracing::info!(confirmed = %target, "closing the replication connection");
        if let Err(e) = self.repl.shutdown().await {
            tracing::debug!(error = %e, "replication connection closed with an error");
        }
    }
}
