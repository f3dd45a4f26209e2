//! In-memory [`Endpoints`] for the pipeline core's unit tests: a WAL of whole transactions and a transactional
//! "broker" that keep their state across attempts (as Postgres and Kafka do), and a log of every operation in
//! the order the pipeline made it. These implement our own interfaces ([`EventSink`], [`EventSource`]), not
//! Kafka's or Postgres's: exactly-once against the real services is proven by the service-backed suites.

use super::error::AttemptFailure;
use super::ports::{BackfillRows, Endpoints, EventSink, EventSource};
use outboxd_core::{BackfillProgress, Commit, Lsn, OutboxEvent, SlotOrigin, TxBegin, TxEvent};
use outboxd_kafka::{Checkpoint, Committed, DlqReason, ReadyRecord, SinkError, Written};
use outboxd_wal::{BackfillChunk, WalError};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// One thing the pipeline did, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// An attempt started its sink (at this tokio instant).
    StartSink(tokio::time::Instant),
    /// An attempt started replication, skipping through this LSN.
    StartSource(Lsn),
    /// A record for this event id went into the open transaction.
    Produce(String),
    /// A dead letter for this event id, for this reason.
    DeadLetter(String, &'static str),
    /// A Kafka transaction committed, with a checkpoint at this end LSN.
    Commit(Lsn),
    /// The open Kafka transaction was aborted.
    Abort,
    /// This end LSN was confirmed to Postgres.
    Confirm(Lsn),
}

/// A committed Kafka transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CommittedTxn {
    /// Its records, in order: (topic, event id header).
    pub records: Vec<(String, String)>,
    /// Its checkpoint's end LSN.
    pub checkpoint: Lsn,
    /// Its checkpoint's slot origin.
    pub origin: Option<SlotOrigin>,
    /// Its checkpoint's backfill progress.
    pub backfill: Option<BackfillProgress>,
}

/// What Postgres and the broker hold, across attempts.
#[derive(Debug, Default)]
pub(crate) struct World {
    /// The WAL: transactions in commit order (Begin, events, Commit).
    pub wal: Vec<Vec<TxEvent>>,
    /// When false, the source hands out the transactions the checkpoint covers too (the pipeline must skip
    /// them itself).
    pub source_skips: bool,
    /// The broker's committed transactions.
    pub committed: Vec<CommittedTxn>,
    /// Every operation, in order.
    pub log: Vec<Op>,
    /// Commit calls (1-based, counted over the whole run) that fail with an abortable error.
    pub failing_commits: BTreeSet<usize>,
    /// Commit calls so far.
    pub commit_calls: usize,
    /// Postgres transactions per Kafka transaction.
    pub txns_per_commit: usize,
    /// The origin of the slot, as the first start creates it (handed out until a checkpoint holds one).
    pub created: Option<SlotOrigin>,
    /// The rows that predate the slot: (order key, event), in key order.
    pub before_slot: Vec<(String, OutboxEvent)>,
    /// Rows per backfill chunk.
    pub chunk_rows: usize,
    /// How many times a commit yields to the scheduler before it completes (a commit in flight).
    pub commit_yields: usize,
}

/// The shared world, and a counter of its changes (for tests to wait on).
#[derive(Clone, Debug)]
pub(crate) struct Memory {
    world: Arc<Mutex<World>>,
    changes: Arc<watch::Sender<u64>>,
}

impl Memory {
    /// A world with this WAL (see [`wal`]), committing every Postgres transaction on its own.
    pub fn new(wal: Vec<Vec<TxEvent>>) -> Memory {
        let world = World {
            wal,
            source_skips: true,
            txns_per_commit: 1,
            chunk_rows: 2,
            ..World::default()
        };
        Memory {
            world: Arc::new(Mutex::new(world)),
            changes: Arc::new(watch::channel(0).0),
        }
    }

    /// The world, locked.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    /// Resolves once `done` holds for the world (checked after each operation).
    pub async fn until(&self, done: impl Fn(&World) -> bool) {
        let mut rx = self.changes.subscribe();
        loop {
            if done(&self.world()) {
                return;
            }
            let _ = rx.changed().await;
        }
    }

    /// Resolves once the log holds `op`.
    pub async fn logged(&self, op: Op) {
        self.until(|w| w.log.contains(&op)).await;
    }

    fn log(&self, op: Op) {
        self.world().log.push(op);
        self.changes.send_modify(|n| *n += 1);
    }
}

/// WAL transactions: for each, the event ids it holds; transaction `i` ends at LSN `(i + 1) * 100`.
pub(crate) fn wal(txns: &[&[&str]]) -> Vec<Vec<TxEvent>> {
    txns.iter()
        .enumerate()
        .map(|(i, ids)| {
            let end = Lsn((i as u64 + 1) * 100);
            let mut events = vec![TxEvent::Begin(TxBegin {
                xid: i as u32 + 1,
                final_lsn: Lsn(end.0 - 10),
                commit_time_us: 1_714_566_896_000_000,
            })];
            for (n, id) in ids.iter().enumerate() {
                events.push(TxEvent::Event(event(id, Lsn(end.0 - 50 + n as u64))));
            }
            events.push(TxEvent::Commit(Commit {
                xid: i as u32 + 1,
                commit_lsn: Lsn(end.0.saturating_sub(10)),
                end_lsn: end,
                commit_time_us: 1_714_566_896_000_000,
                events: ids.len() as u64,
            }));
            events
        })
        .collect()
}

/// An outbox event; an id starting with `bad` has a payload its schema rejects.
pub(crate) fn event(id: &str, lsn: Lsn) -> OutboxEvent {
    let payload = if id.starts_with("bad") {
        r#"{"bad":1}"#
    } else {
        r#"{"ok":1}"#
    };
    OutboxEvent {
        id: Some(id.into()),
        aggregate_type: Some("order".into()),
        aggregate_id: Some("42".into()),
        event_type: Some("OrderCreated".into()),
        payload: Some(payload.as_bytes().to_vec()),
        lsn,
        ..OutboxEvent::default()
    }
}

fn id_of(record: &ReadyRecord) -> String {
    record
        .headers
        .iter()
        .find(|(k, _)| k == "id")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

impl Endpoints for Memory {
    type Sink = MemorySink;
    type Source = MemorySource;
    type Backfill = MemoryBackfill;

    async fn start_sink(&self) -> Result<(MemorySink, Option<SlotOrigin>), AttemptFailure> {
        self.log(Op::StartSink(tokio::time::Instant::now()));
        let world = self.world();
        let last = world.committed.last();
        let sink = MemorySink {
            memory: self.clone(),
            resume_after: last.map_or(Lsn::ZERO, |t| t.checkpoint),
            origin: last.and_then(|t| t.origin.clone()),
            backfill: last.and_then(|t| t.backfill.clone()),
            open: None,
            pg_open: false,
            last_end: None,
            txns: 0,
        };
        Ok((sink, world.created.clone()))
    }

    async fn open_backfill(&self, _origin: &SlotOrigin) -> Result<MemoryBackfill, AttemptFailure> {
        let world = self.world();
        Ok(MemoryBackfill {
            rows: world.before_slot.clone(),
            chunk: world.chunk_rows.max(1),
        })
    }

    async fn start_source(
        &self,
        skip_through: Lsn,
    ) -> Result<(MemorySource, mpsc::Receiver<TxEvent>), AttemptFailure> {
        self.log(Op::StartSource(skip_through));
        let world = self.world();
        let events: Vec<TxEvent> = world
            .wal
            .iter()
            .filter(|txn| {
                let end = match txn.last() {
                    Some(TxEvent::Commit(c)) => c.end_lsn,
                    _ => Lsn(u64::MAX),
                };
                !world.source_skips || end > skip_through
            })
            .flatten()
            .cloned()
            .collect();
        let (tx, rx) = mpsc::channel(events.len().max(1));
        for e in events {
            tx.try_send(e).expect("the channel holds the whole WAL");
        }
        drop(world);
        // The sender stays with the source: the stream stays open, as a live one does.
        Ok((
            MemorySource {
                memory: self.clone(),
                _tx: tx,
            },
            rx,
        ))
    }
}

/// The in-memory sink: one open transaction at a time, committed into the world.
#[derive(Debug)]
pub(crate) struct MemorySink {
    memory: Memory,
    resume_after: Lsn,
    origin: Option<SlotOrigin>,
    backfill: Option<BackfillProgress>,
    /// The open Kafka transaction's records, when one is open.
    open: Option<Vec<(String, String)>>,
    pg_open: bool,
    last_end: Option<Lsn>,
    txns: usize,
}

impl MemorySink {
    fn write(&mut self, record: &ReadyRecord, op: Op) -> Result<(), SinkError> {
        let Some(open) = self.open.as_mut().filter(|_| self.pg_open) else {
            return Err(SinkError::Misuse("write outside a Postgres transaction"));
        };
        open.push((record.topic.to_string(), id_of(record)));
        self.memory.log(op);
        Ok(())
    }
}

impl EventSink for MemorySink {
    fn resume_after(&self) -> Lsn {
        self.resume_after
    }
    fn begin(&mut self, _begin: &TxBegin) -> Result<(), SinkError> {
        if self.pg_open {
            return Err(SinkError::Misuse("Begin while a Postgres transaction is open"));
        }
        self.pg_open = true;
        self.open.get_or_insert_with(Vec::new);
        Ok(())
    }
    async fn produce(&mut self, record: &ReadyRecord) -> Result<Written, SinkError> {
        self.write(record, Op::Produce(id_of(record)))?;
        Ok(Written::Queued)
    }
    async fn dead_letter(&mut self, record: &ReadyRecord, reason: DlqReason) -> Result<(), SinkError> {
        self.write(record, Op::DeadLetter(id_of(record), reason.code()))
    }
    fn end(&mut self, commit: &Commit) -> Result<(), SinkError> {
        if !std::mem::take(&mut self.pg_open) {
            return Err(SinkError::Misuse("Commit without a Begin"));
        }
        self.last_end = Some(commit.end_lsn);
        self.txns += 1;
        Ok(())
    }
    fn in_pg_transaction(&self) -> bool {
        self.pg_open
    }
    fn committable(&self) -> bool {
        self.open.is_some() && !self.pg_open && self.last_end.is_some()
    }
    // No linger here: only the size limit (Postgres transactions per commit), whatever is waiting.
    fn commit_due(&self, _waiting: bool) -> bool {
        self.committable() && self.txns >= self.memory.world().txns_per_commit
    }
    fn commit_deadline(&self) -> Option<Instant> {
        None
    }
    async fn commit(&mut self) -> Result<Option<Committed>, SinkError> {
        let (Some(records), Some(end)) = (self.open.take(), self.last_end.take()) else {
            return Ok(None);
        };
        let yields = self.memory.world().commit_yields;
        for _ in 0..yields {
            tokio::task::yield_now().await;
        }
        self.txns = 0;
        let failing = {
            let mut world = self.memory.world();
            world.commit_calls += 1;
            let failing = world.failing_commits.contains(&world.commit_calls);
            if !failing {
                world.committed.push(CommittedTxn {
                    records,
                    checkpoint: end,
                    origin: self.origin.clone(),
                    backfill: self.backfill.clone(),
                });
            }
            failing
        };
        if failing {
            self.memory.log(Op::Abort);
            return Err(SinkError::Aborted {
                op: "commit_transaction",
                source: KafkaError::MessageProduction(RDKafkaErrorCode::OperationTimedOut),
            });
        }
        self.memory.log(Op::Commit(end));
        let checkpoint = Checkpoint {
            pipeline_id: "memory".into(),
            commit_lsn: Lsn(end.0.saturating_sub(10)),
            end_lsn: end,
            events: 0,
            txns: 0,
            time: String::new(),
            origin: self.origin.clone(),
            backfill: self.backfill.clone(),
        };
        Ok(Some(Committed {
            checkpoint,
            duration: Duration::ZERO,
        }))
    }
    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
    async fn abort(&mut self) -> Result<(), SinkError> {
        self.pg_open = false;
        self.last_end = None;
        self.txns = 0;
        if self.open.take().is_some() {
            self.memory.log(Op::Abort);
        }
        Ok(())
    }
    async fn abort_best_effort(&mut self, _timeout: Duration) -> Result<(), SinkError> {
        self.abort().await
    }
    fn origin(&self) -> Option<&SlotOrigin> {
        self.origin.as_ref()
    }
    fn backfill(&self) -> Option<&BackfillProgress> {
        self.backfill.as_ref()
    }
    fn set_origin(&mut self, origin: SlotOrigin) {
        self.origin = Some(origin);
    }
    fn set_backfill(&mut self, progress: BackfillProgress) {
        self.backfill = Some(progress);
    }
}

/// The in-memory backfill reader: chunks of the world's rows that predate the slot, after a key.
#[derive(Debug)]
pub(crate) struct MemoryBackfill {
    rows: Vec<(String, OutboxEvent)>,
    chunk: usize,
}

impl BackfillRows for MemoryBackfill {
    async fn next_chunk(&mut self, after: Option<&[String]>) -> Result<BackfillChunk, AttemptFailure> {
        let after = after.and_then(|k| k.first()).cloned();
        let rows: Vec<&(String, OutboxEvent)> = self
            .rows
            .iter()
            .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a))
            .take(self.chunk)
            .collect();
        Ok(BackfillChunk {
            events: rows.iter().map(|(_, e)| e.clone()).collect(),
            last_key: rows.last().map(|(k, _)| vec![k.clone()]),
            end: rows.len() < self.chunk,
        })
    }
}

/// The in-memory replication stream: what it confirms goes into the log.
#[derive(Debug)]
pub(crate) struct MemorySource {
    memory: Memory,
    _tx: mpsc::Sender<TxEvent>,
}

impl EventSource for MemorySource {
    fn confirm(&self, end_lsn: Lsn) {
        self.memory.log(Op::Confirm(end_lsn));
    }
    fn ignored(&self) -> [u64; 3] {
        [0; 3]
    }
    async fn shutdown(self) -> Result<(), WalError> {
        Ok(())
    }
    async fn join(&mut self) -> Result<(), WalError> {
        Ok(())
    }
}
