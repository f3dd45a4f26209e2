//! WAL positions and the forward-only bookkeeping of received and confirmed positions.

use std::fmt;
use std::str::FromStr;

/// A Postgres WAL position (log sequence number), printed the way Postgres prints it: `16/B374D848`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The zero position: "nothing yet".
    pub const ZERO: Lsn = Lsn(0);

    /// The raw 64-bit value.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<u64> for Lsn {
    fn from(v: u64) -> Self {
        Lsn(v)
    }
}

impl Lsn {
    /// The [`Display`](fmt::Display) text (`16/B374D848`) on the stack, without the formatting machinery (it
    /// runs once per event, for the `outbox_lsn` header).
    pub fn text(self) -> LsnText {
        let mut text = LsnText {
            bytes: [0; 17],
            len: 0,
        };
        text.push_hex((self.0 >> 32) as u32);
        text.bytes[text.len] = b'/';
        text.len += 1;
        text.push_hex(self.0 as u32);
        text
    }
}

/// An LSN's text, `XXXXXXXX/XXXXXXXX` at the longest ([`Lsn::text`]).
#[derive(Clone, Copy, Debug)]
pub struct LsnText {
    bytes: [u8; 17],
    len: usize,
}

impl LsnText {
    fn push_hex(&mut self, v: u32) {
        let digits = (32 - v.leading_zeros()).div_ceil(4).max(1);
        for i in (0..digits).rev() {
            self.bytes[self.len] = b"0123456789ABCDEF"[((v >> (4 * i)) & 0xF) as usize];
            self.len += 1;
        }
    }

    /// The text's bytes (ASCII).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// A string that is not of Postgres' `XXX/XXX` LSN form.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid LSN {0:?}: expected two hexadecimal numbers separated by '/', like 16/B374D848")]
pub struct LsnParseError(pub String);

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || LsnParseError(s.to_string());
        let (hi, lo) = s.trim().split_once('/').ok_or_else(err)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| err())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| err())?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

/// Received versus confirmed WAL positions of one replication stream. Both only move forward: an update to an
/// older position is ignored and reported as such, so no caller can rewind what Postgres was told.
///
/// `confirmed <= received` always holds: the sink can only confirm what the source has handed out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LsnTracker {
    received: Lsn,
    confirmed: Lsn,
}

impl LsnTracker {
    /// Starts at a position that is both received and confirmed (the slot's `confirmed_flush_lsn`).
    pub fn starting_at(lsn: Lsn) -> Self {
        LsnTracker {
            received: lsn,
            confirmed: lsn,
        }
    }

    /// The highest end LSN handed to the next stage.
    pub fn received(&self) -> Lsn {
        self.received
    }

    /// The highest LSN the sink has durably committed (what may be confirmed to Postgres).
    pub fn confirmed(&self) -> Lsn {
        self.confirmed
    }

    /// True when everything received has been confirmed: no transaction is in flight.
    pub fn is_idle(&self) -> bool {
        self.received == self.confirmed
    }

    /// Records that a transaction ending at `lsn` was handed out. Returns false (and changes nothing) when
    /// `lsn` is not ahead of what was already received.
    pub fn receive(&mut self, lsn: Lsn) -> bool {
        if lsn > self.received {
            self.received = lsn;
            true
        } else {
            false
        }
    }

    /// Records that the sink committed everything up to `lsn`. Never moves backwards, and never past what was
    /// received (a confirmation beyond it is clamped). Returns true when the confirmed position advanced.
    pub fn confirm(&mut self, lsn: Lsn) -> bool {
        let lsn = lsn.min(self.received);
        if lsn > self.confirmed {
            self.confirmed = lsn;
            true
        } else {
            false
        }
    }

    /// When idle, a keepalive's `wal_end` may be confirmed: nothing between the last confirmed position and
    /// `wal_end` was outbox data still in flight. Returns true when the confirmed position advanced.
    pub fn confirm_idle(&mut self, wal_end: Lsn) -> bool {
        if self.is_idle() && wal_end > self.confirmed {
            self.received = wal_end;
            self.confirmed = wal_end;
            true
        } else {
            false
        }
    }
}

/// Serde as Postgres prints an LSN (`16/B374D848`), for `#[serde(with = "outboxd_core::lsn_text")]`.
pub mod text {
    use super::Lsn;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the LSN as text.
    pub fn serialize<S: Serializer>(lsn: &Lsn, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(lsn)
    }

    /// Reads an LSN from text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Lsn, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_display() {
        for v in [
            0,
            1,
            0xF,
            0x10,
            0x16_B374_D848,
            0xFFFF_FFFF,
            0x1_0000_0000,
            u64::MAX,
            0xA_0000_000B,
        ] {
            assert_eq!(Lsn(v).text().as_bytes(), Lsn(v).to_string().as_bytes(), "{v:#x}");
        }
    }

    #[test]
    fn display_and_parse_round_trip() {
        let lsn = Lsn(0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!("16/B374D848".parse::<Lsn>(), Ok(lsn));
        assert_eq!("0/0".parse::<Lsn>(), Ok(Lsn::ZERO));
        assert!("16B374D848".parse::<Lsn>().is_err());
        assert!("x/1".parse::<Lsn>().is_err());
        assert!("1/100000000".parse::<Lsn>().is_err());
    }

    #[test]
    fn tracker_only_moves_forward() {
        let mut t = LsnTracker::starting_at(Lsn(100));
        assert!(!t.receive(Lsn(90)));
        assert!(t.receive(Lsn(200)));
        assert!(!t.is_idle());
        assert!(!t.confirm_idle(Lsn(500)), "not idle: a transaction is in flight");
        assert!(t.confirm(Lsn(150)));
        assert!(!t.confirm(Lsn(120)), "confirmations never rewind");
        assert_eq!(t.confirmed(), Lsn(150));
        assert!(t.confirm(Lsn(900)), "clamped to what was received");
        assert_eq!(t.confirmed(), Lsn(200));
        assert!(t.is_idle());
        assert!(t.confirm_idle(Lsn(500)));
        assert_eq!((t.received(), t.confirmed()), (Lsn(500), Lsn(500)));
        assert!(!t.confirm_idle(Lsn(400)));
    }
}
