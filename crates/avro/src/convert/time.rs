//! ISO-8601 dates, times and timestamps to Avro's integer encodings (pure, no allocation on success).
//!
//! Accepted forms: dates `YYYY-MM-DD`; times `HH:MM[:SS[.fraction]]`; timestamps `<date>T<time>` (or a space
//! instead of `T`, as Postgres prints them) followed, for instants, by a zone offset `Z`, `±hh`, `±hhmm` or
//! `±hh:mm`. Sub-unit digits are truncated toward the past (like `Instant::toEpochMilli`).

const NANOS_PER_SEC: i128 = 1_000_000_000;
const SECS_PER_DAY: i128 = 86_400;

/// Whether a timestamp text must, or must not, carry a zone offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Zone {
    /// An instant (`timestamp-*`): the offset is required.
    Required,
    /// A wall-clock reading (`local-timestamp-*`): an offset is refused.
    Forbidden,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

fn digits(s: &str, what: &str) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} {s:?} is not a number"));
    }
    s.bytes()
        .try_fold(0u32, |v, b| v.checked_mul(10)?.checked_add(u32::from(b - b'0')))
        .ok_or_else(|| format!("{what} {s:?} is out of range"))
}

/// `YYYY-MM-DD` to days since the epoch.
pub(crate) fn parse_date(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a date (YYYY-MM-DD)");
    let (y, rest) = s.split_once('-').ok_or_else(bad)?;
    let (m, d) = rest.split_once('-').ok_or_else(bad)?;
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let (y, m, d) = (
        i64::from(digits(y, "year")?),
        digits(m, "month")?,
        digits(d, "day")?,
    );
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return Err(format!("{s:?} is not a valid calendar date"));
    }
    Ok(days_from_civil(y, m, d))
}

/// `HH:MM[:SS[.fraction]]` to nanoseconds after midnight.
pub(crate) fn parse_time(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a time of day (HH:MM:SS[.fraction])");
    let (main, fraction) = match s.split_once(['.', ',']) {
        Some((m, f)) => (m, Some(f)),
        None => (s, None),
    };
    let mut parts = main.split(':');
    let h = parts.next().ok_or_else(bad)?;
    let m = parts.next().ok_or_else(bad)?;
    let sec = parts.next();
    if parts.next().is_some() || h.len() != 2 || m.len() != 2 || sec.is_some_and(|x| x.len() != 2) {
        return Err(bad());
    }
    if fraction.is_some() && sec.is_none() {
        return Err(bad());
    }
    let (h, m) = (digits(h, "hour")?, digits(m, "minute")?);
    let sec = sec.map(|x| digits(x, "second")).transpose()?.unwrap_or(0);
    if h > 23 || m > 59 || sec > 59 {
        return Err(format!("{s:?} is not a valid time of day"));
    }
    let mut nanos: i64 = 0;
    if let Some(f) = fraction {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        for (i, b) in f.bytes().take(9).enumerate() {
            nanos += i64::from(b - b'0') * 10_i64.pow(8 - i as u32);
        }
    }
    Ok((i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(sec)) * 1_000_000_000 + nanos)
}

/// Splits a trailing zone offset off a time: (`time`, offset in seconds east of UTC).
fn split_offset(t: &str) -> Result<(&str, Option<i64>), String> {
    if let Some(rest) = t.strip_suffix(['Z', 'z']) {
        return Ok((rest, Some(0)));
    }
    let Some(pos) = t.rfind(['+', '-']) else {
        return Ok((t, None));
    };
    let (time, off) = (&t[..pos], &t[pos..]);
    let sign = if off.starts_with('-') { -1 } else { 1 };
    let hm = off[1..].replace(':', "");
    let bad = || format!("zone offset {off:?} is not ±hh, ±hhmm or ±hh:mm");
    let (h, m) = match hm.len() {
        2 => (digits(&hm, "offset hour").map_err(|_| bad())?, 0),
        4 => (
            digits(&hm[..2], "offset hour").map_err(|_| bad())?,
            digits(&hm[2..], "offset minute").map_err(|_| bad())?,
        ),
        _ => return Err(bad()),
    };
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok((time, Some(sign * (i64::from(h) * 3600 + i64::from(m) * 60))))
}

/// An ISO-8601 date-time to nanoseconds since the epoch (UTC for instants, the wall clock for local ones).
pub(crate) fn parse_timestamp(s: &str, zone: Zone) -> Result<i128, String> {
    let (date, time) = s.split_once(['T', 't', ' ']).ok_or_else(|| {
        format!("{s:?} is not an ISO-8601 timestamp (YYYY-MM-DDTHH:MM:SS[.fraction][Z|±hh:mm])")
    })?;
    let days = parse_date(date)?;
    let (time, offset) = split_offset(time)?;
    let offset = match (zone, offset) {
        (Zone::Required, None) => {
            return Err(format!(
                "{s:?} has no zone offset: an instant needs one (Z or ±hh:mm); use a local-timestamp type \
                 for wall-clock times"
            ))
        }
        (Zone::Forbidden, Some(_)) => {
            return Err(format!(
                "{s:?} has a zone offset, but a local timestamp is a wall-clock time without one"
            ))
        }
        (_, o) => o.unwrap_or(0),
    };
    let nanos = parse_time(time)?;
    Ok((i128::from(days) * SECS_PER_DAY - i128::from(offset)) * NANOS_PER_SEC + i128::from(nanos))
}

/// Nanoseconds to a coarser unit (`per_unit` nanoseconds each), rounding toward the past, checked into i64.
pub(crate) fn nanos_to_unit(nanos: i128, per_unit: i128) -> Result<i64, String> {
    i64::try_from(nanos.div_euclid(per_unit)).map_err(|_| "timestamp is out of the 64-bit range".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(parse_date("2024-02-29"), Ok(19_782));
        assert_eq!(parse_date("1969-12-31"), Ok(-1));
        assert_eq!(parse_date("2000-03-01"), Ok(11_017));
        assert!(parse_date("2023-02-29")
            .unwrap_err()
            .contains("valid calendar date"));
        assert!(parse_date("2023-13-01").is_err());
        assert!(parse_date("2023-1-01").is_err());
        assert!(parse_date("yesterday").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("00:00:00"), Ok(0));
        assert_eq!(parse_time("12:34"), Ok((12 * 3600 + 34 * 60) * 1_000_000_000));
        assert_eq!(parse_time("23:59:59.5"), Ok(86_399_500_000_000));
        assert_eq!(parse_time("00:00:01.1234567891"), Ok(1_123_456_789));
        assert!(parse_time("24:00:00").is_err());
        assert!(parse_time("12:60:00").is_err());
        assert!(parse_time("12:00.5").is_err());
        assert!(parse_time("1:00:00").is_err());
    }

    #[test]
    fn timestamps() {
        let ms = |s| parse_timestamp(s, Zone::Required).map(|n| nanos_to_unit(n, 1_000_000).unwrap());
        assert_eq!(ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(ms("2024-05-01T12:00:00.123Z"), Ok(1_714_564_800_123));
        assert_eq!(ms("2024-05-01T14:00:00.123+02:00"), Ok(1_714_564_800_123));
        assert_eq!(ms("2024-05-01 07:00:00.123-05"), Ok(1_714_564_800_123));
        assert_eq!(ms("2024-05-01T12:00:00.1239+0000"), Ok(1_714_564_800_123));
        assert_eq!(ms("1969-12-31T23:59:59.9995Z"), Ok(-1));
        assert!(ms("2024-05-01T12:00:00").unwrap_err().contains("no zone offset"));
        assert!(ms("2024-05-01T12:00:00+2").is_err());
        assert!(ms("2024-05-01").is_err());
        let local = parse_timestamp("2024-05-01T12:00:00.000001", Zone::Forbidden).unwrap();
        assert_eq!(nanos_to_unit(local, 1_000), Ok(1_714_564_800_000_001));
        assert!(parse_timestamp("2024-05-01T12:00:00Z", Zone::Forbidden).is_err());
        assert!(nanos_to_unit(i128::MAX, 1).is_err());
    }
}
