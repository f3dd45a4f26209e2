//! Pure bookkeeping of the open Kafka transaction: which Postgres transactions it holds, how big it is, and
//! when it may and should be committed (only between two Postgres transactions).

use crate::config::BatchConfig;
use crate::SinkError;
use outboxd_core::{Commit, TxBegin};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The open Kafka transaction's content.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// When the Kafka transaction began (`None`: no Kafka transaction open).
    started: Option<Instant>,
    /// The Postgres transaction being streamed, if one is.
    pg_open: Option<TxBegin>,
    /// The last Postgres transaction fully added (what the checkpoint will name).
    last_commit: Option<Commit>,
    /// Content counters.
    pub counts: BatchCounts,
}

/// What the open Kafka transaction holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct BatchCounts {
    /// Event records (dead letters excluded).
    pub events: u64,
    /// Bytes of event records.
    pub event_bytes: u64,
    /// Bytes of every record (dead letters included).
    pub bytes: u64,
    /// Complete Postgres transactions.
    pub pg_txns: u64,
    /// Dead letters by reason.
    pub dead_letters: BTreeMap<&'static str, u64>,
}

impl BatchCounts {
    fn records(&self) -> u64 {
        self.events + self.dead_letters.values().sum::<u64>()
    }
}

/// A closed batch, ready to be checkpointed and committed.
#[derive(Debug)]
pub(crate) struct Closed {
    pub last_commit: Commit,
    pub counts: BatchCounts,
}

impl Batch {
    /// True while a Kafka transaction is open.
    #[cfg(test)]
    pub fn kafka_open(&self) -> bool {
        self.started.is_some()
    }

    /// True while a Postgres transaction is being streamed.
    pub fn pg_open(&self) -> bool {
        self.pg_open.is_some()
    }

    /// Starts a Postgres transaction. Returns true when a Kafka transaction must be begun first.
    pub fn begin_pg(&mut self, begin: TxBegin, now: Instant) -> Result<bool, SinkError> {
        if self.pg_open.is_some() {
            return Err(SinkError::Misuse(
                "Begin while a Postgres transaction is still open",
            ));
        }
        self.pg_open = Some(begin);
        let must_begin = self.started.is_none();
        if must_begin {
            self.started = Some(now);
        }
        Ok(must_begin)
    }

    /// Counts one event record of the open Postgres transaction.
    pub fn add_event(&mut self, bytes: usize) -> Result<(), SinkError> {
        self.require_pg("event outside a Postgres transaction")?;
        self.counts.events += 1;
        self.counts.event_bytes += bytes as u64;
        self.counts.bytes += bytes as u64;
        Ok(())
    }

    /// Counts one dead-letter record of the open Postgres transaction.
    pub fn add_dead_letter(&mut self, reason: &'static str, bytes: usize) -> Result<(), SinkError> {
        self.require_pg("dead letter outside a Postgres transaction")?;
        *self.counts.dead_letters.entry(reason).or_default() += 1;
        self.counts.bytes += bytes as u64;
        Ok(())
    }

    /// Ends the open Postgres transaction.
    pub fn end_pg(&mut self, commit: Commit) -> Result<(), SinkError> {
        self.require_pg("Commit without Begin")?;
        self.pg_open = None;
        self.last_commit = Some(commit);
        self.counts.pg_txns += 1;
        Ok(())
    }

    fn require_pg(&self, what: &'static str) -> Result<(), SinkError> {
        if self.pg_open.is_none() {
            return Err(SinkError::Misuse(what));
        }
        Ok(())
    }

    /// True when the Kafka transaction may be committed: open, between Postgres transactions, holding one.
    pub fn committable(&self) -> bool {
        self.started.is_some() && self.pg_open.is_none() && self.last_commit.is_some()
    }

    /// True when it may and should be committed now: a size limit is reached or the linger time is over.
    pub fn due(&self, config: &BatchConfig, now: Instant) -> bool {
        self.full(config) || self.deadline(config).is_some_and(|d| now >= d)
    }

    /// True when it may be committed and a size limit is reached.
    pub fn full(&self, config: &BatchConfig) -> bool {
        self.committable()
            && (self.counts.records() >= config.max_events || self.counts.bytes >= config.max_bytes)
    }

    /// When the linger time of a committable batch runs out (`None` when it is not committable).
    pub fn deadline(&self, config: &BatchConfig) -> Option<Instant> {
        if !self.committable() {
            return None;
        }
        self.started.map(|s| s + Duration::from_millis(config.linger_ms))
    }

    /// Closes a committable batch, resetting the bookkeeping.
    pub fn close(&mut self) -> Result<Closed, SinkError> {
        if !self.committable() {
            return Err(SinkError::Misuse(
                "commit requested while no complete Postgres transaction is held",
            ));
        }
        let last_commit = self
            .last_commit
            .take()
            .ok_or(SinkError::Misuse("no last commit"))?;
        let counts = std::mem::take(&mut self.counts);
        *self = Batch::default();
        Ok(Closed { last_commit, counts })
    }

    /// Forgets everything (after an abort).
    pub fn reset(&mut self) {
        *self = Batch::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outboxd_core::Lsn;

    fn begin(xid: u32) -> TxBegin {
        TxBegin {
            xid,
            final_lsn: Lsn(u64::from(xid) * 100),
            commit_time_us: 0,
        }
    }

    fn commit(xid: u32) -> Commit {
        let lsn = u64::from(xid) * 100;
        Commit {
            xid,
            commit_lsn: Lsn(lsn),
            end_lsn: Lsn(lsn + 8),
            commit_time_us: 0,
            events: 0,
        }
    }

    fn config() -> BatchConfig {
        BatchConfig {
            max_events: 3,
            max_bytes: 1000,
            linger_ms: 50,
        }
    }

    #[test]
    fn a_postgres_transaction_is_never_split() {
        let t0 = Instant::now();
        let mut b = Batch::default();
        assert!(
            b.begin_pg(begin(1), t0).unwrap(),
            "first Begin opens the Kafka transaction"
        );
        for _ in 0..10 {
            b.add_event(10).unwrap();
        }
        let late = t0 + Duration::from_secs(10);
        assert!(
            !b.due(&config(), late),
            "over every limit, but the Postgres transaction is open"
        );
        assert!(b.deadline(&config()).is_none());
        assert!(b.close().is_err());
        b.end_pg(commit(1)).unwrap();
        assert!(b.due(&config(), t0));
        let closed = b.close().unwrap();
        assert_eq!(closed.last_commit.end_lsn, Lsn(108));
        assert_eq!((closed.counts.events, closed.counts.pg_txns), (10, 1));
        assert!(!b.kafka_open());
    }

    #[test]
    fn several_postgres_transactions_share_a_kafka_transaction_until_a_limit() {
        let t0 = Instant::now();
        let mut b = Batch::default();
        assert!(b.begin_pg(begin(1), t0).unwrap());
        b.add_event(10).unwrap();
        b.end_pg(commit(1)).unwrap();
        assert!(!b.due(&config(), t0), "below every limit");
        assert_eq!(b.deadline(&config()), Some(t0 + Duration::from_millis(50)));
        assert!(
            !b.begin_pg(begin(2), t0).unwrap(),
            "the Kafka transaction stays open"
        );
        b.add_dead_letter("too_large", 500).unwrap();
        b.add_event(600).unwrap();
        b.end_pg(commit(2)).unwrap();
        assert!(b.due(&config(), t0), "max_bytes reached");
        let closed = b.close().unwrap();
        assert_eq!(closed.last_commit.xid, 2);
        assert_eq!(closed.counts.pg_txns, 2);
        assert_eq!(closed.counts.events, 2);
        assert_eq!(closed.counts.event_bytes, 610);
        assert_eq!(closed.counts.bytes, 1110);
        assert_eq!(closed.counts.dead_letters.get("too_large"), Some(&1));
    }

    #[test]
    fn linger_and_event_limits() {
        let t0 = Instant::now();
        let mut b = Batch::default();
        b.begin_pg(begin(1), t0).unwrap();
        b.end_pg(commit(1)).unwrap();
        assert!(!b.due(&config(), t0 + Duration::from_millis(49)));
        assert!(
            b.due(&config(), t0 + Duration::from_millis(50)),
            "empty transactions still checkpoint"
        );
        assert!(!b.full(&config()), "the linger is not a size limit");
        b.begin_pg(begin(2), t0).unwrap();
        for _ in 0..3 {
            b.add_event(1).unwrap();
            assert!(!b.full(&config()), "never full inside a Postgres transaction");
        }
        b.end_pg(commit(2)).unwrap();
        assert!(b.due(&config(), t0), "max_events reached");
        assert!(b.full(&config()), "max_events reached");
    }

    #[test]
    fn out_of_order_use_is_refused() {
        let mut b = Batch::default();
        assert!(b.add_event(1).is_err());
        assert!(b.end_pg(commit(1)).is_err());
        b.begin_pg(begin(1), Instant::now()).unwrap();
        assert!(b.begin_pg(begin(2), Instant::now()).is_err());
        b.reset();
        assert!(!b.kafka_open() && !b.pg_open());
    }
}
