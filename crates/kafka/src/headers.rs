//! Record headers as the producer takes them, and the time format outboxd writes into headers and checkpoints
//! (RFC 3339, UTC, microseconds: `2024-05-01T12:34:56.123456Z`). Which headers an event carries is decided
//! before the sink, by `outboxd-record`.

use std::borrow::Cow;

/// A header name: outboxd's own are `&'static str` (no allocation per event), a user's are owned.
pub type HeaderName = Cow<'static, str>;

/// A header value: up to [`INLINE_HEADER_BYTES`] bytes are kept inline, so that the headers outboxd writes
/// for every event (id, types, LSN, commit time, schema id and version) take no allocation each.
pub type HeaderValue = smallvec::SmallVec<[u8; INLINE_HEADER_BYTES]>;

/// The longest header value kept inline: a UUID event id (36) and the commit time (27) fit.
pub const INLINE_HEADER_BYTES: usize = 40;

/// Record headers, in order, as (name, value bytes).
pub type HeaderList = Vec<(HeaderName, HeaderValue)>;

/// Formats microseconds since the Unix epoch as RFC 3339 in UTC with six fractional digits.
pub fn rfc3339_micros(us: i64) -> String {
    match rfc3339_text(us) {
        // Only ASCII digits and separators were written.
        Ok(text) => String::from_utf8(text.to_vec()).unwrap_or_default(),
        Err(text) => text,
    }
}

/// The length of [`rfc3339_micros`]'s text for the years 0 to 9999.
pub const RFC3339_LEN: usize = 27;

/// [`rfc3339_micros`]'s text as a header value (it runs once per event, for the `commit_time` header).
pub fn rfc3339_header(us: i64) -> HeaderValue {
    match rfc3339_text(us) {
        Ok(text) => HeaderValue::from_slice(&text),
        Err(text) => text.into_bytes().into(),
    }
}

/// The text on the stack for the years 0 to 9999, written by the formatting machinery (more digits, or a
/// sign) outside them.
fn rfc3339_text(us: i64) -> Result<[u8; RFC3339_LEN], String> {
    let (year, month, day, sod, micros) = civil(us);
    if !(0..=9999).contains(&year) {
        return Err(format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        ));
    }
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut digits = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    digits(0, 4, year);
    digits(5, 2, month);
    digits(8, 2, day);
    digits(11, 2, sod / 3600);
    digits(14, 2, (sod / 60) % 60);
    digits(17, 2, sod % 60);
    digits(20, 6, micros);
    Ok(text)
}

/// (year, month, day, second of the day, microseconds) of `us` since the Unix epoch, in UTC.
fn civil(us: i64) -> (i64, i64, i64, i64, i64) {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, sod, micros)
}

/// Parses what [`rfc3339_micros`] writes (`2024-05-01T12:34:56.123456Z`) back into microseconds since the Unix
/// epoch; `None` for anything else (other offsets, precisions, or a date that does not exist).
pub fn parse_rfc3339_micros(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let shape = b.len() == 27
        && text.is_ascii()
        && [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (26, b'Z'),
        ]
        .iter()
        .all(|&(i, c)| b[i] == c);
    if !shape {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let digits = &text[from..to];
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second, micros) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 26)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let us = (days * 86_400 + hour * 3_600 + minute * 60 + second) * 1_000_000 + micros;
    // A day past the end of its month (2023-02-30) would come back as another date: refuse it.
    (rfc3339_micros(us) == text).then_some(us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_micros(1_714_566_896_123_456),
            "2024-05-01T12:34:56.123456Z"
        );
        assert_eq!(rfc3339_micros(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
        assert_eq!(rfc3339_micros(-1), "1969-12-31T23:59:59.999999Z");
        // Postgres epoch (2000-01-01) and a far date.
        assert_eq!(rfc3339_micros(946_684_800_000_000), "2000-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_micros(4_102_444_799_000_000),
            "2099-12-31T23:59:59.000000Z"
        );
    }

    #[test]
    fn rfc3339_outside_four_digit_years() {
        // Written by the formatting machinery, as before: more digits, or a sign.
        assert_eq!(
            rfc3339_micros(253_402_300_800_000_000),
            "10000-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            rfc3339_micros(-62_167_219_200_000_001),
            "-001-12-31T23:59:59.999999Z"
        );
        for us in [1_714_566_896_123_456, 253_402_300_800_000_000] {
            assert_eq!(&rfc3339_header(us)[..], rfc3339_micros(us).as_bytes());
        }
    }

    #[test]
    fn rfc3339_parses_back() {
        for us in [
            0,
            1_714_566_896_123_456,
            951_782_400_000_000,
            -1,
            4_102_444_799_000_000,
        ] {
            assert_eq!(parse_rfc3339_micros(&rfc3339_micros(us)), Some(us), "{us}");
        }
        for bad in [
            "",
            "2024-05-01T12:34:56Z",
            "2024-05-01 12:34:56.123456Z",
            "2024-05-01T12:34:56.123456+00:00",
            "2023-02-30T00:00:00.000000Z",
            "2024-13-01T00:00:00.000000Z",
            "2024-05-01T24:00:00.000000Z",
            "2024-05-01T12:34:5é.12345Z",
            "2024-0a-01T12:34:56.123456Z",
        ] {
            assert_eq!(parse_rfc3339_micros(bad), None, "{bad}");
        }
    }
}
