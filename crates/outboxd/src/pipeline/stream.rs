//! One attempt of the pipeline, in the order exactly-once needs: the sink starts (`init_transactions`, then
//! the checkpoint `C`), then a new slot's origin is recorded and any backfill runs (`backfill.rs`, `C` does
//! not move), then replication starts with `skip_through = C`, then transactions stream until
//! shutdown, a fault, or a failure. Only after `commit_transaction` returns is an end LSN confirmed. While a
//! commit is in flight the next events are received and decided ahead (`ahead.rs`), and written after it.

use super::ahead::{Queue, Queued};
use super::error::AttemptFailure;
use super::event::{EventContext, Handled};
use super::fault::{FaultAction, FaultPlan, FaultPoint};
use super::ports::{Endpoints, EventSink, EventSource};
use super::shutdown::Shutdown;
use super::PipelineConfig;
use crate::http::Health;
use crate::metrics as m;
use crate::registry_wait::Patience;
use outboxd_core::{Lsn, SlotOrigin, TxEvent};
use outboxd_kafka::{Committed, SinkError};
use outboxd_record::{PayloadEncoder, Stage};
use outboxd_wal::WalError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How many queued events are handled between two looks at the shutdown future.
const SHUTDOWN_CHECK_EVERY: u32 = 256;

/// How an attempt ended without an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Shutdown was requested; the last complete transaction was committed and confirmed.
    Shutdown,
    /// An injected fault stopped it (in-process tests).
    Fault(FaultPoint),
}

/// What an attempt shares with the run.
#[derive(Debug)]
pub(crate) struct RunContext<'a, P, E> {
    pub config: &'a PipelineConfig,
    pub stage: &'a Stage<E>,
    pub endpoints: &'a P,
    pub faults: &'a FaultPlan,
    pub health: &'a Arc<Health>,
    /// What retention may delete, once an attempt knows the slot's origin.
    pub basis: &'a tokio::sync::watch::Sender<Option<outboxd_wal::RetentionBasis>>,
}

/// A running attempt: the sink, the source and what has been committed.
pub(crate) struct Attempt<'a, P: Endpoints, E> {
    pub(super) ctx: &'a RunContext<'a, P, E>,
    pub(super) sink: P::Sink,
    source: Option<P::Source>,
    /// The source's events (a closed channel until the stream starts, after any backfill).
    rx: mpsc::Receiver<TxEvent>,
    /// Events received and not yet handled, some decided ahead during a commit.
    queue: Queue,
    /// The origin of a slot this process created, until a checkpoint records it.
    pub(super) created: Option<SlotOrigin>,
    /// The checkpoint read at start: transactions ending at or below it are already in Kafka.
    pub(super) skip_through: Lsn,
    /// True while a transaction at or below `skip_through` is being skipped.
    skipping: bool,
    /// True once this attempt committed something (resets the restart backoff).
    pub committed: bool,
    /// The commit time of the Postgres transaction being streamed (µs since the epoch).
    commit_time_us: i64,
    /// Commit times (µs since the epoch) of the Postgres transactions in the open Kafka transaction, for the
    /// end-to-end latency histogram.
    commit_times: Vec<i64>,
    /// The source's ignore counters already copied to the metrics.
    ignored_seen: [u64; 3],
}

impl<P: Endpoints, E> std::fmt::Debug for Attempt<'_, P, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempt")
            .field("skip_through", &self.skip_through)
            .finish_non_exhaustive()
    }
}

impl<'a, P: Endpoints, E: PayloadEncoder> Attempt<'a, P, E> {
    /// Starts the sink (the slot when missing, init_transactions, then the checkpoint). [`Attempt::run`]
    /// then records the slot's origin, backfills when configured, and streams from the checkpoint.
    pub(crate) async fn start(ctx: &'a RunContext<'a, P, E>) -> Result<Attempt<'a, P, E>, AttemptFailure> {
        let (sink, created) = ctx.endpoints.start_sink().await?;
        let skip_through = sink.resume_after();
        Ok(Attempt {
            ctx,
            sink,
            source: None,
            rx: mpsc::channel(1).1,
            queue: Queue::new(),
            created,
            skip_through,
            skipping: false,
            committed: false,
            commit_time_us: 0,
            commit_times: Vec::new(),
            ignored_seen: [0; 3],
        })
    }

    /// Records the slot's origin and backfills (when due), then starts replication from the checkpoint.
    async fn start_stream(&mut self, shutdown: &mut Shutdown<'_>) -> Result<Option<Ended>, AttemptFailure> {
        if let Some(end) = self.before_stream(shutdown).await? {
            return Ok(Some(end));
        }
        let (source, rx) = self.ctx.endpoints.start_source(self.skip_through).await?;
        (self.source, self.rx) = (Some(source), rx);
        tracing::info!(skip_through = %self.skip_through, "pipeline streaming");
        self.ctx.health.set_ready(true);
        metrics::gauge!(m::SLOT_ACTIVE).set(1.0);
        Ok(None)
    }

    /// How long an event waits for a registry that cannot answer.
    pub(super) fn patience(&self) -> Patience {
        Patience {
            max_backoff: Duration::from_millis(self.ctx.config.restart.encode_max_backoff_ms.max(100)),
            give_up_at: None,
        }
    }

    /// Streams until shutdown (`Ok(Ended::Shutdown)`), an injected stop, or a failure.
    pub(crate) async fn run(&mut self, shutdown: &mut Shutdown<'_>) -> Result<Ended, AttemptFailure> {
        if let Some(end) = self.start_stream(shutdown).await? {
            return Ok(end);
        }
        let mut handled = 0u32;
        loop {
            if !self.queue.is_empty() {
                handled = handled.wrapping_add(1);
                if handled % SHUTDOWN_CHECK_EVERY == 0 && shutdown.requested() {
                    return self.finish().await;
                }
                if let Some(q) = self.queue.pop() {
                    if let Some(end) = self.on_event(q, shutdown).await? {
                        return Ok(end);
                    }
                }
                // The linger time is checked at each Postgres commit (`commit_due`), as the deadline
                // exists only between Postgres transactions.
                continue;
            }
            let deadline = self.sink.commit_deadline();
            let linger = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.wait() => return self.finish().await,
                // Take whatever the source has queued in one go: one wake-up per batch instead of per event.
                received = self.queue.receive(&mut self.rx) => {
                    if !received {
                        return Err(self.source_ended().await);
                    }
                }
                _ = linger => {
                    if let Some(end) = self.commit().await? {
                        return Ok(end);
                    }
                }
            }
        }
    }

    async fn on_event(
        &mut self,
        queued: Queued,
        shutdown: &mut Shutdown<'_>,
    ) -> Result<Option<Ended>, AttemptFailure> {
        let Queued { event, prepared, .. } = queued;
        match event {
            TxEvent::Begin(begin) => {
                // The WAL stage already skips what the checkpoint covers; this guards the invariant anyway.
                self.skipping = begin.final_lsn < self.skip_through;
                if self.skipping {
                    tracing::warn!(xid = begin.xid, final_lsn = %begin.final_lsn, "skipping a transaction the checkpoint covers");
                } else {
                    self.sink.begin(&begin)?;
                    self.commit_time_us = begin.commit_time_us;
                }
            }
            TxEvent::Event(event) if !self.skipping => {
                let mut cx = EventContext {
                    patience: self.patience(),
                    sink: &mut self.sink,
                    stage: self.ctx.stage,
                    shutdown,
                    commit_time_us: self.commit_time_us,
                };
                if cx.handle_decided(&event, prepared).await? == Handled::Interrupted {
                    return self.finish().await.map(Some);
                }
                if self.ctx.faults.hit(FaultPoint::MidTxn) == Some(FaultAction::Stop) {
                    return Ok(Some(self.stop_for_fault(FaultPoint::MidTxn).await));
                }
            }
            TxEvent::Event(_) => {}
            TxEvent::Commit(commit) => {
                if std::mem::take(&mut self.skipping) {
                    return Ok(None);
                }
                self.sink.end(&commit)?;
                self.commit_times.push(commit.commit_time_us);
                if self.sink.commit_due(!self.queue.is_empty()) {
                    return self.commit().await;
                }
            }
        }
        Ok(None)
    }

    /// Commits the open Kafka transaction, then (and only then) confirms its end LSN to Postgres.
    pub(super) async fn commit(&mut self) -> Result<Option<Ended>, AttemptFailure> {
        if !self.sink.committable() {
            return Ok(None);
        }
        if self.ctx.faults.watches(FaultPoint::BeforeCommit) {
            // Make the injected crash leave everything on the broker, uncommitted.
            self.sink.flush().await?;
        }
        if self.ctx.faults.hit(FaultPoint::BeforeCommit) == Some(FaultAction::Stop) {
            return Ok(Some(self.stop_for_fault(FaultPoint::BeforeCommit).await));
        }
        let Some(committed) = self.commit_deciding_ahead().await? else {
            return Ok(None);
        };
        self.committed = true;
        self.record_commit(committed.duration);
        if self.ctx.faults.hit(FaultPoint::AfterCommit) == Some(FaultAction::Stop) {
            return Ok(Some(self.stop_for_fault(FaultPoint::AfterCommit).await));
        }
        if let Some(source) = &self.source {
            source.confirm(committed.checkpoint.end_lsn);
        }
        Ok(None)
    }

    /// Commits the open Kafka transaction while receiving and deciding the next events (bounded; see
    /// `ahead.rs`). Nothing is written before the commit returns: the producer holds one transaction at a time.
    async fn commit_deciding_ahead(&mut self) -> Result<Option<Committed>, SinkError> {
        let Attempt {
            sink,
            queue,
            rx,
            ctx,
            commit_time_us,
            ..
        } = self;
        queue.start_ahead(*commit_time_us);
        let before = queue.decided_ahead;
        let commit = sink.commit();
        tokio::pin!(commit);
        let mut more = true;
        let committed = loop {
            tokio::select! {
                biased;
                committed = &mut commit => break committed,
                go = queue.step_ahead(rx, ctx.stage), if more => more = go,
            }
        };
        metrics::counter!(m::EVENTS_DECIDED_AHEAD).increment(queue.decided_ahead - before);
        committed
    }

    /// Records the commit's duration, each committed Postgres transaction's end-to-end latency, and the
    /// source's ignored-change counters.
    fn record_commit(&mut self, duration: Duration) {
        metrics::histogram!(m::COMMIT_DURATION).record(duration.as_secs_f64());
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let latency = metrics::histogram!(m::END_TO_END_LATENCY);
        for t in self.commit_times.drain(..) {
            latency.record(now_us.saturating_sub(t).max(0) as f64 / 1e6);
        }
        if let Some(source) = &self.source {
            let now = source.ignored();
            for ((kind, seen), n) in ["update", "delete", "truncate"]
                .into_iter()
                .zip(&mut self.ignored_seen)
                .zip(now)
            {
                if n > *seen {
                    metrics::counter!(m::EVENTS_IGNORED, "kind" => kind).increment(n - *seen);
                    *seen = n;
                }
            }
        }
    }

    /// Graceful stop: commit when between Postgres transactions, else abort; then flush the confirmation.
    pub(super) async fn finish(&mut self) -> Result<Ended, AttemptFailure> {
        if self.sink.in_pg_transaction() {
            tracing::info!("shutdown inside a Postgres transaction: aborting the open Kafka transaction");
            self.sink.abort().await?;
        } else if let Some(end) = self.commit().await? {
            return Ok(end);
        }
        if let Some(source) = self.source.take() {
            source.shutdown().await?;
        }
        Ok(Ended::Shutdown)
    }

    /// Injected stop: like a crash, leave any open Kafka transaction to the next `init_transactions` and
    /// drop the replication connection without confirming anything more.
    async fn stop_for_fault(&mut self, point: FaultPoint) -> Ended {
        if let Some(source) = self.source.take() {
            // Its reader sends only what was confirmed before (not the transaction just committed).
            let _ = source.shutdown().await;
        }
        Ended::Fault(point)
    }

    /// The event channel closed: the reader stopped; its error says whether to restart.
    async fn source_ended(&mut self) -> AttemptFailure {
        let result = match self.source.as_mut() {
            Some(source) => source.join().await,
            None => Ok(()),
        };
        match result {
            Err(e) => AttemptFailure::from(e),
            Ok(()) => AttemptFailure::from(WalError::Disconnected(
                "the WAL reader stopped without an error".into(),
            )),
        }
    }

    /// After a failure: abort the open transaction (best effort) and close the replication connection. It
    /// confirms nothing new: only what was confirmed after earlier commits.
    pub(crate) async fn close(mut self) {
        if let Err(e) = self.sink.abort_best_effort(Duration::from_secs(5)).await {
            tracing::debug!(error = %e, "abort after a failure");
        }
        if let Some(source) = self.source.take() {
            if let Err(e) = source.shutdown().await {
                tracing::debug!(error = %e, "replication shutdown after a failure");
            }
        }
    }
}
