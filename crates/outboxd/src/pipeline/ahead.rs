//! The attempt's queue of received events, and deciding them ahead while a Kafka commit is in flight.
//!
//! A Kafka producer holds one transaction at a time, so the records of the next transaction cannot be written
//! before `commit_transaction` returns. What can be done meanwhile is the CPU work: receive the next events
//! from the WAL reader and let the stage decide them (`Stage::prepare`: routing, checks, Avro, headers). The
//! pipeline then writes them, in order, as soon as the commit is done, so a short linger (frequent commits)
//! no longer stops the stream for the length of every commit.
//!
//! ```text
//!  WAL reader ──▶ channel ──▶ Queue [ decided … │ undecided … ] ──▶ the attempt, front first
//!                                 ▲ during a commit: receive, then decide, front to back (bounded)
//! ```
//!
//! Guarantees: the order of the stream is kept (the queue is consumed front first, decided or not); nothing
//! is written or confirmed here (an event decided ahead is written by the attempt exactly as one decided in
//! place; an attempt that ends drops its queue, and the next one reads those events again from Postgres);
//! an event the stage could not decide ahead (registry away, or an error) is left undecided and decided in
//! place, with the usual patience and errors. Memory is bounded by [`AHEAD_EVENTS`] and [`AHEAD_BYTES`].

use outboxd_core::TxEvent;
use outboxd_record::{PayloadEncoder, Prepared, Stage};
use std::collections::VecDeque;
use tokio::sync::mpsc;

/// The most events taken from the source channel at once. Events left in the queue when an attempt ends
/// were never confirmed: the next attempt reads them again from Postgres.
pub(super) const RECV_BATCH: usize = 512;

/// The most events the queue holds before a commit stops receiving ahead.
pub(super) const AHEAD_EVENTS: usize = 4096;

/// The most bytes of decided records the queue holds before a commit stops deciding ahead.
pub(super) const AHEAD_BYTES: usize = 8 << 20;

/// One received event, with the stage's decision when it was taken ahead.
#[derive(Debug)]
pub(crate) struct Queued {
    pub event: TxEvent,
    pub prepared: Option<Prepared>,
    /// The bytes of the decided record counted in [`Queue::bytes`].
    bytes: usize,
}

/// Received events in stream order; the front `decided` ones were looked at ahead.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    items: VecDeque<Queued>,
    /// How many items at the front the look-ahead has passed (decided, or not an event, or left undecided).
    decided: usize,
    /// Bytes of the decided records held.
    bytes: usize,
    /// The commit time (µs) of the Postgres transaction the look-ahead is in.
    time_us: i64,
    /// `recv_many`'s buffer.
    inbox: Vec<TxEvent>,
    /// Events decided ahead since the attempt started.
    pub decided_ahead: u64,
}

impl Queue {
    pub(crate) fn new() -> Queue {
        Queue {
            inbox: Vec::with_capacity(RECV_BATCH),
            ..Queue::default()
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The next event in stream order.
    pub(crate) fn pop(&mut self) -> Option<Queued> {
        let q = self.items.pop_front()?;
        self.decided = self.decided.saturating_sub(1);
        self.bytes -= q.bytes;
        Some(q)
    }

    /// Waits for events from the source and queues them; `false` when the channel is closed (the reader
    /// stopped). Cancel-safe.
    pub(crate) async fn receive(&mut self, rx: &mut mpsc::Receiver<TxEvent>) -> bool {
        if rx.recv_many(&mut self.inbox, RECV_BATCH).await == 0 {
            return false;
        }
        self.items.extend(self.inbox.drain(..).map(|event| Queued {
            event,
            prepared: None,
            bytes: 0,
        }));
        true
    }

    /// Starts a look-ahead: `time_us` is the commit time of the Postgres transaction the attempt is in
    /// (used until the look-ahead passes a Begin of its own).
    pub(crate) fn start_ahead(&mut self, time_us: i64) {
        if self.decided == 0 {
            self.time_us = time_us;
        }
    }

    /// One step of the look-ahead: decides the first undecided event, or receives more when every queued
    /// one is decided. `false` when there is nothing more to do (bounds reached, or the channel closed).
    /// Cancel-safe: an event whose decision was interrupted stays undecided.
    pub(crate) async fn step_ahead<E: PayloadEncoder>(
        &mut self,
        rx: &mut mpsc::Receiver<TxEvent>,
        stage: &Stage<E>,
    ) -> bool {
        if self.decided == self.items.len() {
            if self.items.len() >= AHEAD_EVENTS || self.bytes >= AHEAD_BYTES {
                return false;
            }
            return self.receive(rx).await;
        }
        if self.bytes >= AHEAD_BYTES {
            return false;
        }
        let at = self.decided;
        let prepared = match &self.items[at].event {
            TxEvent::Begin(begin) => {
                self.time_us = begin.commit_time_us;
                None
            }
            // Any error is left for the attempt to meet in place, in order, with its patience.
            TxEvent::Event(event) => stage.prepare(event, self.time_us).await.ok(),
            TxEvent::Commit(_) => None,
        };
        if let Some(p) = prepared {
            let bytes = match &p {
                Prepared::Ready(r) => r.size(),
                Prepared::Rejected(_) => 0,
            };
            let item = &mut self.items[at];
            item.prepared = Some(p);
            item.bytes = bytes;
            self.bytes += bytes;
            self.decided_ahead += 1;
        }
        self.decided += 1;
        true
    }
}
