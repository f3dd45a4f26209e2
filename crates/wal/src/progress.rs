//! Which WAL position may be confirmed to Postgres, and the stage's counters.
//!
//! Two kinds of positions exist. An *emitted* transaction's end LSN is confirmable only once the sink says it
//! committed it. A *quiet* position (the end of a transaction that carried no outbox event, or was skipped as
//! already delivered; a keepalive's `wal_end` outside any transaction) holds no outbox data of its own: it is
//! confirmable as soon as every emitted transaction before it is confirmed. [`Positions`] keeps, for each run
//! of quiet positions, the highest one and the emitted end it waits for, so memory is bounded by the number of
//! emitted transactions in flight.

use outboxd_core::{Lsn, LsnTracker};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

/// Confirmable-position bookkeeping on top of [`LsnTracker`].
#[derive(Clone, Debug)]
pub struct Positions {
    tracker: LsnTracker,
    /// (emitted end LSN it waits for, highest quiet position), oldest first.
    quiet: VecDeque<(Lsn, Lsn)>,
}

impl Positions {
    /// Starts at the slot's confirmed position.
    pub fn starting_at(lsn: Lsn) -> Self {
        Positions {
            tracker: LsnTracker::starting_at(lsn),
            quiet: VecDeque::new(),
        }
    }

    /// An emitted transaction ending at `end_lsn` was handed to the sink.
    pub fn emitted(&mut self, end_lsn: Lsn) {
        self.tracker.receive(end_lsn);
    }

    /// A position with no outbox data of its own was passed.
    pub fn quiet(&mut self, lsn: Lsn) {
        if lsn <= self.tracker.confirmed() {
            return;
        }
        let waits_for = self.tracker.received();
        match self.quiet.back_mut() {
            Some((w, highest)) if *w == waits_for => *highest = (*highest).max(lsn),
            _ => self.quiet.push_back((waits_for, lsn)),
        }
        self.settle();
    }

    /// The sink durably committed everything up to `lsn`.
    pub fn sink_confirmed(&mut self, lsn: Lsn) {
        self.tracker.confirm(lsn);
        self.settle();
    }

    fn settle(&mut self) {
        while let Some(&(waits_for, lsn)) = self.quiet.front() {
            if self.tracker.confirmed() < waits_for {
                break;
            }
            if lsn <= self.tracker.received() {
                self.tracker.confirm(lsn);
            } else {
                // Nothing was emitted after `waits_for`, which is confirmed: the tracker is idle.
                self.tracker.confirm_idle(lsn);
            }
            self.quiet.pop_front();
        }
    }

    /// What may be reported to Postgres as flushed.
    pub fn confirmed(&self) -> Lsn {
        self.tracker.confirmed()
    }

    /// The received/confirmed pair.
    pub fn tracker(&self) -> LsnTracker {
        self.tracker
    }
}

/// Live counters, shared between the reader and [`crate::SourceHandle::progress`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) transactions: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) defects: AtomicU64,
    pub(crate) quiet_transactions: AtomicU64,
    pub(crate) skipped_transactions: AtomicU64,
    pub(crate) skipped_events: AtomicU64,
    pub(crate) ignored_updates: AtomicU64,
    pub(crate) ignored_deletes: AtomicU64,
    pub(crate) ignored_truncates: AtomicU64,
    pub(crate) ignored_other_tables: AtomicU64,
    pub(crate) ignored_messages: AtomicU64,
    pub(crate) keepalives: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            transactions: get(&self.transactions),
            events: get(&self.events),
            defects: get(&self.defects),
            quiet_transactions: get(&self.quiet_transactions),
            skipped_transactions: get(&self.skipped_transactions),
            skipped_events: get(&self.skipped_events),
            ignored_updates: get(&self.ignored_updates),
            ignored_deletes: get(&self.ignored_deletes),
            ignored_truncates: get(&self.ignored_truncates),
            ignored_other_tables: get(&self.ignored_other_tables),
            ignored_messages: get(&self.ignored_messages),
            keepalives: get(&self.keepalives),
        }
    }
}

/// What the WAL stage has seen since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Transactions emitted (they carried outbox events).
    pub transactions: u64,
    /// Outbox events emitted.
    pub events: u64,
    /// Emitted events with a `defect` (bound for the dead-letter topic).
    pub defects: u64,
    /// Transactions with no outbox event (not emitted; their end is a quiet position).
    pub quiet_transactions: u64,
    /// Transactions at or below `skip_through` (already delivered; not emitted).
    pub skipped_transactions: u64,
    /// Outbox events inside skipped transactions.
    pub skipped_events: u64,
    /// Updates of outbox rows (ignored).
    pub ignored_updates: u64,
    /// Deletes of outbox rows (ignored).
    pub ignored_deletes: u64,
    /// Truncates of the outbox table (ignored).
    pub ignored_truncates: u64,
    /// Changes to other tables that the publication sent (ignored).
    pub ignored_other_tables: u64,
    /// Logical messages that are not outbox events: other prefixes, non-transactional, or table mode.
    pub ignored_messages: u64,
    /// Keepalives received.
    pub keepalives: u64,
}

/// A snapshot of the source's positions and counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Highest end LSN handed to the next stage (or passed as a quiet position).
    pub received: Lsn,
    /// Highest position that may be confirmed: sink confirmations plus quiet positions behind them.
    pub confirmed: Lsn,
    /// Last position actually reported to Postgres in a standby status update.
    pub reported: Lsn,
    /// Last server WAL end seen on the stream.
    pub server_wal_end: Lsn,
    /// Counters.
    pub stats: Stats,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_positions_confirm_at_once_when_idle() {
        let mut p = Positions::starting_at(Lsn(100));
        p.quiet(Lsn(150));
        assert_eq!(p.confirmed(), Lsn(150));
        p.quiet(Lsn(120));
        assert_eq!(p.confirmed(), Lsn(150), "never backwards");
    }

    #[test]
    fn quiet_positions_wait_for_earlier_emitted_transactions() {
        let mut p = Positions::starting_at(Lsn(100));
        p.emitted(Lsn(200));
        p.quiet(Lsn(250));
        p.quiet(Lsn(260));
        p.emitted(Lsn(300));
        p.quiet(Lsn(350));
        assert_eq!(p.confirmed(), Lsn(100), "nothing confirmed by the sink yet");
        p.sink_confirmed(Lsn(200));
        assert_eq!(
            p.confirmed(),
            Lsn(260),
            "the quiet run after 200 is confirmable, not past 300"
        );
        p.sink_confirmed(Lsn(300));
        assert_eq!(p.confirmed(), Lsn(350));
        assert!(p.tracker().is_idle());
        p.quiet(Lsn(400));
        assert_eq!(p.confirmed(), Lsn(400));
    }

    #[test]
    fn sink_confirmations_are_clamped_and_forward_only() {
        let mut p = Positions::starting_at(Lsn(100));
        p.emitted(Lsn(200));
        p.sink_confirmed(Lsn(999));
        assert_eq!(p.confirmed(), Lsn(200), "clamped to what was handed out");
        p.sink_confirmed(Lsn(150));
        assert_eq!(p.confirmed(), Lsn(200));
        assert_eq!(p.quiet.len(), 0);
    }

    #[test]
    fn memory_is_bounded_by_emitted_transactions_in_flight() {
        let mut p = Positions::starting_at(Lsn(0));
        for i in 1..=1000u64 {
            p.emitted(Lsn(i * 10));
            p.quiet(Lsn(i * 10 + 1));
            p.quiet(Lsn(i * 10 + 2));
        }
        assert_eq!(p.quiet.len(), 1000);
        p.sink_confirmed(Lsn(5000));
        assert_eq!((p.confirmed(), p.quiet.len()), (Lsn(5002), 500));
        p.sink_confirmed(Lsn(10_000));
        assert_eq!((p.confirmed(), p.quiet.len()), (Lsn(10_002), 0));
    }
}
