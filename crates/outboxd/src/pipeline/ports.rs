//! The pipeline core's two sides as small interfaces: [`EventSink`] (the transactional writer of records,
//! dead letters and checkpoints) and [`EventSource`] (the replication stream's handle), started per attempt by
//! [`Endpoints`], and the backfill's row reader ([`BackfillRows`]). outboxd runs on [`LiveEndpoints`]: outboxd-kafka's [`Sink`] and outboxd-wal's [`Source`]; the
//! core's unit tests run on in-memory implementations of these same traits (`memory.rs`), with no service.

use super::error::AttemptFailure;
use super::PipelineConfig;
use outboxd_core::{BackfillProgress, Commit, Lsn, SlotOrigin, TxBegin, TxEvent};
use outboxd_kafka::{Committed, DlqReason, ReadyRecord, Sink, SinkError, SinkIdentity, SinkStats, Written};
use outboxd_wal::{BackfillChunk, BackfillReader, SlotBusy, Source, SourceHandle, WalError};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The transactional writer, driven per Postgres transaction: [`EventSink::begin`], then
/// [`EventSink::produce`] / [`EventSink::dead_letter`] per record, then [`EventSink::end`]; between Postgres
/// transactions, [`EventSink::commit`], which writes the checkpoint in the same Kafka transaction.
pub(crate) trait EventSink: Send {
    /// `C`: every Postgres transaction whose end LSN is at or below it is already committed.
    fn resume_after(&self) -> Lsn;
    /// A Postgres transaction starts.
    fn begin(&mut self, begin: &TxBegin) -> Result<(), SinkError>;
    /// Writes a record into the open transaction, or refuses it (the caller dead-letters the event).
    fn produce(&mut self, record: &ReadyRecord) -> impl Future<Output = Result<Written, SinkError>> + Send;
    /// Writes a dead letter into the open transaction.
    fn dead_letter(
        &mut self,
        record: &ReadyRecord,
        reason: DlqReason,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
    /// The Postgres transaction ends.
    fn end(&mut self, commit: &Commit) -> Result<(), SinkError>;
    /// True while a Postgres transaction is open.
    fn in_pg_transaction(&self) -> bool;
    /// True when the open transaction holds only whole Postgres transactions and can be committed.
    fn committable(&self) -> bool;
    /// True when it should be committed now (a batch limit).
    /// `waiting`: more received events are queued (see [`Sink::commit_due`]).
    fn commit_due(&self, waiting: bool) -> bool;
    /// When the linger time of a committable transaction runs out.
    fn commit_deadline(&self) -> Option<Instant>;
    /// Writes the checkpoint and commits; only then may its end LSN be confirmed. `None`: nothing was open.
    fn commit(&mut self) -> impl Future<Output = Result<Option<Committed>, SinkError>> + Send;
    /// Waits until everything queued reached the broker, uncommitted (fault injection).
    fn flush(&self) -> impl Future<Output = Result<(), SinkError>> + Send;
    /// Aborts the open transaction, if any.
    fn abort(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send;
    /// One abort attempt within `timeout`, after a failure.
    fn abort_best_effort(&mut self, timeout: Duration) -> impl Future<Output = Result<(), SinkError>> + Send;
    /// The slot's origin the next checkpoint carries (recorded, or set since).
    fn origin(&self) -> Option<&SlotOrigin>;
    /// The backfill's progress the next checkpoint carries.
    fn backfill(&self) -> Option<&BackfillProgress>;
    /// Records the slot's origin from the next commit on.
    fn set_origin(&mut self, origin: SlotOrigin);
    /// Records the backfill's progress in the next commit (with the rows of the open transaction).
    fn set_backfill(&mut self, progress: BackfillProgress);
}

/// Reads the rows that predate the slot, in chunks, in order, after a resume key.
pub(crate) trait BackfillRows: Send {
    /// The next chunk after `after` (`None`: from the start).
    fn next_chunk(
        &mut self,
        after: Option<&[String]>,
    ) -> impl Future<Output = Result<BackfillChunk, AttemptFailure>> + Send;
}

/// The replication stream of one attempt (its events arrive on the channel [`Endpoints::start_source`] returns).
pub(crate) trait EventSource: Send {
    /// Everything ending at or below `end_lsn` is committed in Kafka: it may be confirmed to Postgres.
    fn confirm(&self, end_lsn: Lsn);
    /// Updates, deletes and truncates of the outbox ignored so far.
    fn ignored(&self) -> [u64; 3];
    /// Stops reading and sends the last confirmed position.
    fn shutdown(self) -> impl Future<Output = Result<(), WalError>> + Send;
    /// Resolves when the reader stopped, with its reason.
    fn join(&mut self) -> impl Future<Output = Result<(), WalError>> + Send;
}

/// Starts the two sides of an attempt, sink first (its checkpoint says where the source starts).
pub(crate) trait Endpoints: Sync {
    /// The sink type.
    type Sink: EventSink;
    /// The source type.
    type Source: EventSource;
    /// The backfill reader type.
    type Backfill: BackfillRows;
    /// Starts the sink: creates the slot when it is missing, then `init_transactions`, then the checkpoint.
    /// Returns with it the origin of the slot when this process created it (until it is recorded, the
    /// checkpoint does not know it).
    fn start_sink(
        &self,
    ) -> impl Future<Output = Result<(Self::Sink, Option<SlotOrigin>), AttemptFailure>> + Send;
    /// Opens the backfill reader of the rows that predate the slot with this origin.
    fn open_backfill(
        &self,
        origin: &SlotOrigin,
    ) -> impl Future<Output = Result<Self::Backfill, AttemptFailure>> + Send;
    /// Starts replication, skipping every transaction ending at or below `skip_through`.
    fn start_source(
        &self,
        skip_through: Lsn,
    ) -> impl Future<Output = Result<(Self::Source, mpsc::Receiver<TxEvent>), AttemptFailure>> + Send;
}

/// The real endpoints: Apache Kafka through outboxd-kafka, Postgres through outboxd-wal.
#[derive(Debug)]
pub(crate) struct LiveEndpoints<'a> {
    pub config: &'a PipelineConfig,
    pub stats: &'a Arc<SinkStats>,
    /// The origin of the slot this process created, kept across attempts until a checkpoint records it.
    pub created: Mutex<Option<SlotOrigin>>,
}

impl Endpoints for LiveEndpoints<'_> {
    type Sink = Sink;
    type Source = SourceHandle;
    type Backfill = BackfillReader;

    async fn start_sink(&self) -> Result<(Sink, Option<SlotOrigin>), AttemptFailure> {
        let identity = SinkIdentity {
            pipeline_id: self.config.pipeline_id(),
            transactional_id: self.config.transactional_id(),
        };
        // With on_slot_busy = "exit", a second instance must leave a running one alone: look at the slot
        // (read-only) before init_transactions, which would fence the running instance (same transactional
        // id). With "wait", the newcomer takes over: it fences the running instance, which exits 4 and
        // releases the slot. Either way init_transactions comes before the checkpoint is read and the slot
        // is taken, as the exactly-once argument requires.
        if self.config.source.on_slot_busy == SlotBusy::Exit {
            Source::wait_for_free_slot(&self.config.source).await?;
        }
        // The slot is created (not taken) before anything slower, so that on a first start the rows committed
        // during init_transactions are in its stream rather than silently before it.
        if let Some(origin) = Source::prepare(&self.config.source_config()).await?.origin {
            *self.created.lock().unwrap_or_else(|e| e.into_inner()) = Some(origin);
        }
        let sink = Sink::start(self.config.kafka.clone(), identity, Arc::clone(self.stats)).await?;
        let created = self.created.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Ok((sink, created))
    }

    async fn open_backfill(&self, origin: &SlotOrigin) -> Result<BackfillReader, AttemptFailure> {
        let source = self.config.source_config();
        Ok(BackfillReader::open(&source, &source.backfill, origin).await?)
    }

    async fn start_source(
        &self,
        skip_through: Lsn,
    ) -> Result<(SourceHandle, mpsc::Receiver<TxEvent>), AttemptFailure> {
        Ok(Source::start(self.config.source_config(), skip_through).await?)
    }
}

impl EventSink for Sink {
    fn resume_after(&self) -> Lsn {
        Sink::resume_after(self)
    }
    fn begin(&mut self, begin: &TxBegin) -> Result<(), SinkError> {
        Sink::begin(self, begin)
    }
    fn produce(&mut self, record: &ReadyRecord) -> impl Future<Output = Result<Written, SinkError>> + Send {
        Sink::produce(self, record)
    }
    fn dead_letter(
        &mut self,
        record: &ReadyRecord,
        reason: DlqReason,
    ) -> impl Future<Output = Result<(), SinkError>> + Send {
        Sink::dead_letter(self, record, reason)
    }
    fn end(&mut self, commit: &Commit) -> Result<(), SinkError> {
        Sink::end(self, commit)
    }
    fn in_pg_transaction(&self) -> bool {
        Sink::in_pg_transaction(self)
    }
    fn committable(&self) -> bool {
        Sink::committable(self)
    }
    fn commit_due(&self, waiting: bool) -> bool {
        Sink::commit_due(self, waiting)
    }
    fn commit_deadline(&self) -> Option<Instant> {
        Sink::commit_deadline(self)
    }
    fn commit(&mut self) -> impl Future<Output = Result<Option<Committed>, SinkError>> + Send {
        Sink::commit(self)
    }
    fn flush(&self) -> impl Future<Output = Result<(), SinkError>> + Send {
        Sink::flush(self)
    }
    fn abort(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        Sink::abort(self)
    }
    fn abort_best_effort(&mut self, timeout: Duration) -> impl Future<Output = Result<(), SinkError>> + Send {
        Sink::abort_best_effort(self, timeout)
    }
    fn origin(&self) -> Option<&SlotOrigin> {
        Sink::origin(self)
    }
    fn backfill(&self) -> Option<&BackfillProgress> {
        Sink::backfill(self)
    }
    fn set_origin(&mut self, origin: SlotOrigin) {
        Sink::set_origin(self, origin);
    }
    fn set_backfill(&mut self, progress: BackfillProgress) {
        Sink::set_backfill(self, progress);
    }
}

impl BackfillRows for BackfillReader {
    async fn next_chunk(&mut self, after: Option<&[String]>) -> Result<BackfillChunk, AttemptFailure> {
        Ok(BackfillReader::next_chunk(self, after).await?)
    }
}

impl EventSource for SourceHandle {
    fn confirm(&self, end_lsn: Lsn) {
        SourceHandle::confirm(self, end_lsn);
    }
    fn ignored(&self) -> [u64; 3] {
        let st = self.progress().stats;
        [st.ignored_updates, st.ignored_deletes, st.ignored_truncates]
    }
    fn shutdown(self) -> impl Future<Output = Result<(), WalError>> + Send {
        SourceHandle::shutdown(self)
    }
    fn join(&mut self) -> impl Future<Output = Result<(), WalError>> + Send {
        SourceHandle::join(self)
    }
}
