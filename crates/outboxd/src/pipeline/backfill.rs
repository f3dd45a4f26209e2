//! Before streaming: record the slot's origin, then relay the rows that predate the slot (when configured).
//!
//! The origin (the snapshot the slot exported, see `outboxd_core::SlotOrigin`) is committed in the first
//! checkpoint after the slot was created, in an otherwise empty Kafka transaction. The backfill then reads
//! the rows whose inserting transaction is visible in that snapshot (exactly those the stream does not carry),
//! one chunk per Kafka transaction, and commits each chunk's progress (the last key read) in the same
//! transaction as its rows: a crash anywhere resumes after the last committed chunk, without loss or
//! duplicate. The checkpoint's LSN does not move during the backfill, so the stream then starts where it
//! would have, and the two sets cannot overlap.

use super::error::AttemptFailure;
use super::event::{EventContext, Handled};
use super::ports::{BackfillRows, Endpoints, EventSink};
use super::shutdown::Shutdown;
use super::stream::{Attempt, Ended};
use super::PipelineError;
use crate::metrics as m;
use outboxd_core::{BackfillProgress, Commit, SlotOrigin, TxBegin};
use outboxd_record::PayloadEncoder;
use outboxd_wal::RetentionBasis;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl<P: Endpoints, E: PayloadEncoder> Attempt<'_, P, E> {
    /// Records a new slot's origin, then backfills when configured and not done. `Some` when it stopped.
    pub(super) async fn before_stream(
        &mut self,
        shutdown: &mut Shutdown<'_>,
    ) -> Result<Option<Ended>, AttemptFailure> {
        if let Some(end) = self.record_origin().await? {
            return Ok(Some(end));
        }
        let config = &self.ctx.config.source.backfill;
        let Some(origin) = self.sink.origin().cloned() else {
            if self.ctx.config.source.retention.max_age_s.is_some() {
                tracing::warn!(
                    "source.retention is set, but the checkpoint holds no slot origin (outboxd did not create the \
                     slot): retention deletes nothing"
                );
            }
            if config.enabled {
                return Err(AttemptFailure::Halt(PipelineError::Config(format!(
                    "source.backfill.enabled, but outboxd did not create slot {:?} (or stopped before it recorded \
                     the slot's snapshot), so it cannot tell which rows predate the stream: drop the slot and start \
                     again (`outboxd slot drop`), letting outboxd create it",
                    self.ctx.config.source.slot
                ))));
            }
            return Ok(None);
        };
        metrics::gauge!(m::ROWS_BEFORE_SLOT).set(origin.rows as f64);
        let progress = self.sink.backfill().cloned();
        self.publish_basis(&origin, progress.as_ref());
        if let Some(p) = &progress {
            metrics::gauge!(m::BACKFILL_PROGRESS).set(p.rows as f64);
            metrics::gauge!(m::BACKFILL_DONE).set(if p.done { 1.0 } else { 0.0 });
        }
        match progress {
            Some(p) if p.done => Ok(None),
            Some(p) if !config.enabled => {
                tracing::warn!(
                    relayed = p.rows,
                    "source.backfill is off but the backfill had not finished: the rows after its last chunk are \
                     not relayed (turn it on again to finish it)"
                );
                Ok(None)
            }
            _ if !config.enabled => Ok(None),
            p => self.backfill(origin, p.unwrap_or_default(), shutdown).await,
        }
    }

    /// Commits the origin of a slot this process created, unless a checkpoint already holds it.
    async fn record_origin(&mut self) -> Result<Option<Ended>, AttemptFailure> {
        let Some(created) = self.created.take() else {
            return Ok(None);
        };
        if let Some(recorded) = self.sink.origin() {
            if recorded.lsn >= created.lsn {
                return Ok(None);
            }
            tracing::warn!(recorded = %recorded.lsn, created = %created.lsn, "the slot was created anew since the last checkpoint");
        }
        let backfill = &self.ctx.config.source.backfill;
        if created.rows == 0 {
            tracing::info!(consistent_point = %created.lsn, "slot created; the outbox table was empty");
        } else if backfill.enabled {
            tracing::info!(
                rows = created.rows,
                predicate = backfill.predicate.as_deref().unwrap_or("all rows"),
                "slot created: the rows already in the outbox table predate it; backfilling them"
            );
        } else {
            tracing::warn!(
                rows = created.rows,
                "slot created: the rows already in the outbox table predate it and are not relayed \
                 (set source.backfill.enabled to relay them)"
            );
        }
        self.sink.set_origin(created);
        self.begin_chunk()?;
        let end = self.end_chunk(0).await;
        if end.as_ref().is_ok_and(Option::is_none) {
            tracing::info!("slot origin recorded in the checkpoint");
        }
        end
    }

    /// A Kafka transaction for checkpoint-only content: a Postgres transaction that ends where the checkpoint
    /// already is, so the checkpoint's LSN does not move.
    fn begin_chunk(&mut self) -> Result<i64, outboxd_kafka::SinkError> {
        let now = now_us();
        let begin = TxBegin {
            xid: 0,
            final_lsn: self.skip_through,
            commit_time_us: now,
        };
        self.sink.begin(&begin)?;
        Ok(now)
    }

    async fn end_chunk(&mut self, events: u64) -> Result<Option<Ended>, AttemptFailure> {
        let at = self.skip_through;
        let commit = Commit {
            xid: 0,
            commit_lsn: at,
            end_lsn: at,
            commit_time_us: now_us(),
            events,
        };
        self.sink.end(&commit)?;
        self.commit().await
    }

    /// Relays the rows that predate the slot, chunk by chunk, each with its progress.
    async fn backfill(
        &mut self,
        origin: SlotOrigin,
        mut progress: BackfillProgress,
        shutdown: &mut Shutdown<'_>,
    ) -> Result<Option<Ended>, AttemptFailure> {
        let mut rows = self.ctx.endpoints.open_backfill(&origin).await?;
        tracing::info!(
            relayed = progress.rows,
            of_at_most = origin.rows,
            "backfill started"
        );
        metrics::gauge!(m::BACKFILL_DONE).set(0.0);
        let mut logged = Instant::now();
        while !progress.done {
            if shutdown.fired() {
                return self.finish().await.map(Some);
            }
            let chunk = rows.next_chunk(progress.after.as_deref()).await?;
            let commit_time_us = self.begin_chunk()?;
            for event in &chunk.events {
                let mut cx = EventContext {
                    patience: self.patience(),
                    sink: &mut self.sink,
                    stage: self.ctx.stage,
                    shutdown,
                    commit_time_us,
                };
                if cx.handle(event).await? == Handled::Interrupted {
                    return self.finish().await.map(Some);
                }
            }
            let relayed = chunk.events.len() as u64;
            progress = BackfillProgress {
                after: chunk.last_key.or(progress.after),
                rows: progress.rows + relayed,
                done: chunk.end,
            };
            self.sink.set_backfill(progress.clone());
            if let Some(end) = self.end_chunk(relayed).await? {
                return Ok(Some(end));
            }
            metrics::counter!(m::BACKFILL_ROWS).increment(relayed);
            metrics::gauge!(m::BACKFILL_PROGRESS).set(progress.rows as f64);
            if progress.done || logged.elapsed().as_secs() >= 5 {
                tracing::info!(
                    relayed = progress.rows,
                    of_at_most = origin.rows,
                    "backfill progress"
                );
                logged = Instant::now();
            }
        }
        metrics::gauge!(m::BACKFILL_DONE).set(1.0);
        tracing::info!(relayed = progress.rows, "backfill complete; streaming");
        self.publish_basis(&origin, Some(&progress));
        Ok(None)
    }

    /// Tells retention what it may delete: the committed origin and whether the backfill is complete.
    fn publish_basis(&self, origin: &SlotOrigin, progress: Option<&BackfillProgress>) {
        let basis = RetentionBasis {
            origin: origin.clone(),
            backfill_done: progress.is_some_and(|p| p.done),
        };
        self.ctx.basis.send_if_modified(|b| {
            let changed = b.as_ref() != Some(&basis);
            *b = Some(basis);
            changed
        });
    }
}
