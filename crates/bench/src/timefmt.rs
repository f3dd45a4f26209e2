//! Parsing the sink's `commit_time` header (RFC 3339 in UTC, e.g. `2024-05-01T12:34:56.123456Z`).

/// Days from 1970-01-01 to the given civil date (Howard Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Microseconds since the Unix epoch of a UTC RFC 3339 timestamp (`Z` or `+00:00`), fraction optional.
pub fn parse_rfc3339_micros(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let micros = format!("{frac:0<6}")[..6].parse::<i64>().ok()?;
    let secs = days_from_civil(y, mo, day) * 86_400 + h * 3600 + mi * 60 + sec;
    Some(secs * 1_000_000 + micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_sink_format() {
        assert_eq!(parse_rfc3339_micros("1970-01-01T00:00:00.000000Z"), Some(0));
        assert_eq!(parse_rfc3339_micros("1970-01-01T00:00:01.5Z"), Some(1_500_000));
        // date -u -d 2024-05-01T12:34:56Z +%s = 1714566896
        assert_eq!(
            parse_rfc3339_micros("2024-05-01T12:34:56.123456Z"),
            Some(1_714_566_896_123_456)
        );
        assert_eq!(
            parse_rfc3339_micros("2000-02-29T00:00:00+00:00"),
            Some(951_782_400_000_000)
        );
        assert_eq!(parse_rfc3339_micros("2024-05-01 12:34:56Z"), None);
        assert_eq!(parse_rfc3339_micros("2024-13-01T12:34:56Z"), None);
        assert_eq!(parse_rfc3339_micros("garbage"), None);
    }
}
