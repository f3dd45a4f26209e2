//! Counters an embedding program (or a test) reads directly; the same events also go to the `metrics`
//! facade under the names of [`crate::metrics`].

use std::sync::atomic::{AtomicU64, Ordering};

/// Totals since start.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    applied: AtomicU64,
    duplicates: AtomicU64,
    dead_lettered: AtomicU64,
    retries: AtomicU64,
}

/// A copy of [`ConsumerStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsumerStatsSnapshot {
    /// Events whose handler succeeded and whose id was recorded.
    pub applied: u64,
    /// Redeliveries skipped because the store had the id.
    pub duplicates: u64,
    /// Events written to the dead-letter topic.
    pub dead_lettered: u64,
    /// Handler attempts that failed and were retried.
    pub retries: u64,
}

impl ConsumerStats {
    /// The totals now.
    pub fn snapshot(&self) -> ConsumerStatsSnapshot {
        ConsumerStatsSnapshot {
            applied: self.applied.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add_applied(&self) {
        self.applied.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_dead_letter(&self) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
}
