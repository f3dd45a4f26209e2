//! Where a replication slot's stream begins, as outboxd recorded it when it created the slot, and how far a
//! backfill of the rows that predate the slot has come. Both travel in the checkpoint, so that they are
//! committed in the same Kafka transaction as the rows they describe.
//!
//! The slot is created with an exported snapshot: a transaction is in the slot's stream exactly when it is
//! not visible in that snapshot ([`PgSnapshot::visible`]). Rows whose inserting transaction is visible in it
//! predate the stream; only a backfill relays them. A row's `xmin` may be a subtransaction's id, which
//! `pg_snapshot`'s in-progress list does not hold: so between the snapshot's `xmin` and `xmax` visibility is
//! decided by the list of ids whose rows the snapshot itself saw ([`SlotOrigin::committed`]), read from the
//! table under the exported snapshot when the slot was created.

use crate::Lsn;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The slot's starting point, recorded when outboxd created it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotOrigin {
    /// The snapshot exported when the slot was created, as `pg_current_snapshot()` prints it
    /// (`xmin:xmax:xip,...`): its visible transactions are exactly those the stream does not carry.
    pub snapshot: String,
    /// The row `xmin`s between the snapshot's `xmin` and `xmax` that the snapshot saw (committed before
    /// it), as runs `a-b,c,...` of 64-bit ids: the exact answer there, subtransactions included.
    #[serde(default)]
    pub committed: String,
    /// The slot's consistent point.
    #[serde(with = "crate::lsn::text")]
    pub lsn: Lsn,
    /// Postgres' clock when the slot had been created (RFC 3339, UTC): every transaction that started after
    /// it commits after the consistent point, so is in the stream.
    pub time: String,
    /// Rows the outbox table held in the snapshot (they predate the slot).
    pub rows: u64,
}

/// How far the backfill has come; committed with the rows it relayed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillProgress {
    /// The order key (column values as text) of the last row read; `None` before the first chunk.
    pub after: Option<Vec<String>>,
    /// Rows relayed (to their topic or the dead-letter topic) so far.
    pub rows: u64,
    /// True once every row that predates the slot and matches the predicate was relayed.
    pub done: bool,
}

impl SlotOrigin {
    /// The snapshot, with [`SlotOrigin::committed`] deciding between its `xmin` and `xmax`.
    pub fn boundary(&self) -> Result<PgSnapshot, SnapshotParseError> {
        let mut snapshot: PgSnapshot = self.snapshot.parse()?;
        snapshot.committed = Some(parse_runs(&self.committed).ok_or_else(|| SnapshotParseError {
            text: self.committed.clone(),
        })?);
        Ok(snapshot)
    }
}

/// Sorted ids as runs of consecutive ones: `[3, 4, 5, 9]` is `3-5,9`.
pub fn format_runs(sorted: &[u64]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        while i + 1 < sorted.len() && sorted[i + 1] == sorted[i] + 1 {
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        match sorted[i] == start {
            true => out.push_str(&start.to_string()),
            false => out.push_str(&format!("{start}-{}", sorted[i])),
        }
        i += 1;
    }
    out
}

fn parse_runs(text: &str) -> Option<Vec<(u64, u64)>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(',')
        .map(|run| match run.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)).filter(|(a, b)| a <= b),
            None => run.parse().ok().map(|a| (a, a)),
        })
        .collect()
}

/// A Postgres snapshot (`pg_snapshot`): transactions below `xmin` are finished, from `xmax` on not yet
/// started, and in between those listed in `xip` were in progress (or, when known, exactly those listed as
/// committed were finished).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgSnapshot {
    xmin: u64,
    xmax: u64,
    xip: Vec<u64>,
    committed: Option<Vec<(u64, u64)>>,
}

/// A snapshot text that is not `xmin:xmax:xip,...`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid snapshot {text:?}: expected xmin:xmax:xip,... as pg_current_snapshot() prints it")]
pub struct SnapshotParseError {
    text: String,
}

impl std::str::FromStr for PgSnapshot {
    type Err = SnapshotParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || SnapshotParseError { text: text.into() };
        let mut parts = text.split(':');
        let (Some(xmin), Some(xmax), Some(xip), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let num = |s: &str| s.parse::<u64>().map_err(|_| bad());
        let xip = match xip {
            "" => Vec::new(),
            list => list.split(',').map(num).collect::<Result<Vec<_>, _>>()?,
        };
        let (xmin, xmax) = (num(xmin)?, num(xmax)?);
        if xmin > xmax || xip.iter().any(|&x| x < xmin || x >= xmax) {
            return Err(bad());
        }
        Ok(PgSnapshot {
            xmin,
            xmax,
            xip,
            committed: None,
        })
    }
}

impl fmt::Display for PgSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.xmin, self.xmax)?;
        for (i, x) in self.xip.iter().enumerate() {
            write!(f, "{}{x}", if i == 0 { "" } else { "," })?;
        }
        Ok(())
    }
}

const EPOCH: u64 = 1 << 32;
const HALF: u64 = 1 << 31;

impl PgSnapshot {
    /// The 64-bit transaction id of a 32-bit one (a row's `xmin`, a stream's xid) that lies within 2^31 of
    /// this snapshot's `xmax`, as Postgres itself widens them.
    pub fn widen(&self, xid: u32) -> u64 {
        let base = self.xmax & !(EPOCH - 1);
        let candidate = base | u64::from(xid);
        if candidate >= self.xmax + HALF && candidate >= EPOCH {
            candidate - EPOCH
        } else if candidate + HALF < self.xmax {
            candidate + EPOCH
        } else {
            candidate
        }
    }

    /// Whether the transaction `xid` had committed (or aborted) when the snapshot was taken. Ids below 3 are
    /// Postgres' special ones (bootstrap, frozen): always visible.
    pub fn visible(&self, xid: u32) -> bool {
        if xid < 3 {
            return true;
        }
        let full = self.widen(xid);
        if full < self.xmin || full >= self.xmax {
            return full < self.xmin;
        }
        match &self.committed {
            Some(runs) => runs.iter().any(|&(a, b)| a <= full && full <= b),
            None => !self.xip.contains(&full),
        }
    }

    /// The snapshot's `xmin` and `xmax` (64-bit).
    pub fn bounds(&self) -> (u64, u64) {
        (self.xmin, self.xmax)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_pg_current_snapshot() {
        let s: PgSnapshot = "740:745:740,742".parse().unwrap();
        assert_eq!(s.to_string(), "740:745:740,742");
        assert_eq!("10:10:".parse::<PgSnapshot>().unwrap().to_string(), "10:10:");
        for bad in ["", "1:2", "1:2:3:4", "a:2:", "5:4:", "1:5:7", "1:5:0"] {
            assert!(bad.parse::<PgSnapshot>().is_err(), "{bad}");
        }
    }

    #[test]
    fn visibility_follows_xmin_xmax_and_xip() {
        let s: PgSnapshot = "740:745:740,742".parse().unwrap();
        let visible: Vec<u32> = (735..750).filter(|&x| s.visible(x)).collect();
        assert_eq!(visible, vec![735, 736, 737, 738, 739, 741, 743, 744]);
        assert!(s.visible(2), "frozen");
    }

    #[test]
    fn committed_runs_decide_between_xmin_and_xmax() {
        assert_eq!(format_runs(&[3, 4, 5, 9, 11, 12]), "3-5,9,11-12");
        assert_eq!(format_runs(&[]), "");
        let origin = SlotOrigin {
            snapshot: "740:745:740,742".into(),
            // 743 is a subtransaction of 742 (in progress): not listed in xip, and not committed.
            committed: "741,744".into(),
            lsn: Lsn(1),
            time: String::new(),
            rows: 0,
        };
        let s = origin.boundary().unwrap();
        let visible: Vec<u32> = (738..747).filter(|&x| s.visible(x)).collect();
        assert_eq!(visible, vec![738, 739, 741, 744]);
        let bad = SlotOrigin {
            committed: "5-3".into(),
            ..origin
        };
        assert!(bad.boundary().is_err());
    }

    #[test]
    fn widening_crosses_epochs_both_ways() {
        // xmax just past an epoch boundary: a 32-bit id near u32::MAX is from the previous epoch (visible),
        // a small one from this epoch.
        let s: PgSnapshot = format!("{}:{}:{}", EPOCH + 5, EPOCH + 10, EPOCH + 6)
            .parse()
            .unwrap();
        assert!(s.visible(u32::MAX - 3));
        assert!(!s.visible(6) && s.visible(4));
        assert!(!s.visible(20), "after xmax");
        // xmax just before the boundary: a small id is from the next epoch (not yet started).
        let s: PgSnapshot = format!("{}:{}:", EPOCH - 10, EPOCH - 5).parse().unwrap();
        assert!(!s.visible(7));
        assert!(s.visible(u32::MAX - 20));
        assert!(!s.visible(u32::MAX - 4));
    }
}
