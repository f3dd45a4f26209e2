//! Counters worth exporting as metrics. Shared (`Arc`) and lock-free on the hot path; they survive restarts
//! of the sink within one pipeline run. Counts are of COMMITTED work: an aborted transaction adds only to
//! `txns_aborted`.

use outboxd_core::Lsn;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Live counters of one sink (or of successive sinks of one pipeline).
#[derive(Debug, Default)]
pub struct SinkStats {
    events_produced: AtomicU64,
    bytes_produced: AtomicU64,
    dead_letters: AtomicU64,
    txns_committed: AtomicU64,
    txns_aborted: AtomicU64,
    pg_txns_committed: AtomicU64,
    commit_micros_total: AtomicU64,
    commit_micros_last: AtomicU64,
    commit_micros_max: AtomicU64,
    checkpoint_end_lsn: AtomicU64,
    delivery_errors: AtomicU64,
    dead_letters_by_reason: Mutex<BTreeMap<&'static str, u64>>,
}

/// A point-in-time copy of [`SinkStats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Event records committed to their topics (dead letters and checkpoints excluded).
    pub events_produced: u64,
    /// Bytes (key + value + headers) of those event records.
    pub bytes_produced: u64,
    /// Records committed to the dead-letter topic.
    pub dead_letters: u64,
    /// Dead letters by reason code.
    pub dead_letters_by_reason: BTreeMap<&'static str, u64>,
    /// Kafka transactions committed.
    pub txns_committed: u64,
    /// Kafka transactions aborted (each one means a restart from the checkpoint).
    pub txns_aborted: u64,
    /// Postgres transactions carried by committed Kafka transactions.
    pub pg_txns_committed: u64,
    /// Total time spent in `commit_transaction`.
    pub commit_time_total: Duration,
    /// Duration of the last commit.
    pub commit_time_last: Duration,
    /// Longest commit seen.
    pub commit_time_max: Duration,
    /// End LSN named by the last committed checkpoint (read at start or written since).
    pub checkpoint_end_lsn: Lsn,
    /// Delivery reports with an error (each one aborts its transaction).
    pub delivery_errors: u64,
}

/// What one committed Kafka transaction adds to the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CommittedCounts {
    pub events: u64,
    pub bytes: u64,
    pub pg_txns: u64,
    pub end_lsn: Lsn,
    pub duration: Duration,
}

impl SinkStats {
    /// Copies every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let micros = |a: &AtomicU64| Duration::from_micros(a.load(Relaxed));
        StatsSnapshot {
            events_produced: self.events_produced.load(Relaxed),
            bytes_produced: self.bytes_produced.load(Relaxed),
            dead_letters: self.dead_letters.load(Relaxed),
            dead_letters_by_reason: self
                .dead_letters_by_reason
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default(),
            txns_committed: self.txns_committed.load(Relaxed),
            txns_aborted: self.txns_aborted.load(Relaxed),
            pg_txns_committed: self.pg_txns_committed.load(Relaxed),
            commit_time_total: micros(&self.commit_micros_total),
            commit_time_last: micros(&self.commit_micros_last),
            commit_time_max: micros(&self.commit_micros_max),
            checkpoint_end_lsn: Lsn(self.checkpoint_end_lsn.load(Relaxed)),
            delivery_errors: self.delivery_errors.load(Relaxed),
        }
    }

    pub(crate) fn committed(&self, c: CommittedCounts, dead_letters: &BTreeMap<&'static str, u64>) {
        self.events_produced.fetch_add(c.events, Relaxed);
        self.bytes_produced.fetch_add(c.bytes, Relaxed);
        self.pg_txns_committed.fetch_add(c.pg_txns, Relaxed);
        self.txns_committed.fetch_add(1, Relaxed);
        let us = u64::try_from(c.duration.as_micros()).unwrap_or(u64::MAX);
        self.commit_micros_total.fetch_add(us, Relaxed);
        self.commit_micros_last.store(us, Relaxed);
        self.commit_micros_max.fetch_max(us, Relaxed);
        self.checkpoint_end_lsn.fetch_max(c.end_lsn.as_u64(), Relaxed);
        if !dead_letters.is_empty() {
            self.dead_letters.fetch_add(dead_letters.values().sum(), Relaxed);
            if let Ok(mut m) = self.dead_letters_by_reason.lock() {
                for (reason, n) in dead_letters {
                    *m.entry(reason).or_default() += n;
                }
            }
        }
    }

    pub(crate) fn aborted(&self) {
        self.txns_aborted.fetch_add(1, Relaxed);
    }

    pub(crate) fn checkpoint_read(&self, end_lsn: Lsn) {
        self.checkpoint_end_lsn.fetch_max(end_lsn.as_u64(), Relaxed);
    }

    /// Counts a failed delivery; returns the total so far.
    pub(crate) fn delivery_error(&self) -> u64 {
        self.delivery_errors.fetch_add(1, Relaxed) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_accumulate_and_checkpoint_only_advances() {
        let s = SinkStats::default();
        let dl = BTreeMap::from([("too_large", 2u64)]);
        let c = CommittedCounts {
            events: 10,
            bytes: 100,
            pg_txns: 2,
            end_lsn: Lsn(50),
            duration: Duration::from_millis(3),
        };
        s.committed(c, &dl);
        s.committed(
            CommittedCounts {
                end_lsn: Lsn(40),
                duration: Duration::from_millis(1),
                ..c
            },
            &BTreeMap::new(),
        );
        s.aborted();
        let snap = s.snapshot();
        assert_eq!(
            (snap.events_produced, snap.bytes_produced, snap.pg_txns_committed),
            (20, 200, 4)
        );
        assert_eq!((snap.txns_committed, snap.txns_aborted), (2, 1));
        assert_eq!(snap.dead_letters, 2);
        assert_eq!(snap.dead_letters_by_reason.get("too_large"), Some(&2));
        assert_eq!(snap.checkpoint_end_lsn, Lsn(50));
        assert_eq!(snap.commit_time_max, Duration::from_millis(3));
        assert_eq!(snap.commit_time_last, Duration::from_millis(1));
        assert_eq!(snap.commit_time_total, Duration::from_millis(4));
    }
}
