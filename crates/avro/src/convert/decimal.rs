//! Decimal text (`"-12.34"`, `1.5e3`) to Avro's `decimal`: the unscaled value as big-endian two's complement.
//!
//! Exact: a value with more fraction digits than the scale (other than trailing zeros) or more digits than
//! the precision is refused, never rounded.

/// Largest exponent accepted in `1e<exp>` forms (precision bounds the result long before this).
const MAX_EXPONENT: i64 = 10_000;

/// Parses `text` as a decimal of `precision` digits and `scale` fraction digits; returns the unscaled value
/// as minimal big-endian two's complement bytes.
pub(crate) fn parse_decimal(text: &str, precision: usize, scale: usize) -> Result<DecimalBytes, String> {
    let bad = || format!("{text:?} is not a decimal number");
    let s = text.trim();
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, exponent) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().map_err(|_| bad())?),
        None => (s, 0),
    };
    if exponent.abs() > MAX_EXPONENT {
        return Err(format!("{text:?} has an exponent out of range"));
    }
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    // Fraction digits of the number as written, after applying the exponent.
    let frac_len = frac_part.len() as i64 - exponent;
    let written = || int_part.bytes().chain(frac_part.bytes()).map(|b| b - b'0');
    let n = int_part.len() + frac_part.len();
    let (keep, pad) = if frac_len > scale as i64 {
        let cut = n.saturating_sub((frac_len - scale as i64) as usize);
        if written().skip(cut).any(|d| d != 0) {
            return Err(format!(
                "{text:?} has more than {scale} fraction digits (the schema's scale)"
            ));
        }
        (cut, 0)
    } else {
        (n, (scale as i64 - frac_len) as usize)
    };
    let too_precise = || format!("{text:?} has more than {precision} digits (the schema's precision)");
    if keep + pad <= SMALL_DIGITS {
        // The common case: the unscaled value fits an i128 (below 10^38), no digit vector.
        let v = written().take(keep).fold(0u128, |v, d| v * 10 + u128::from(d)) * 10u128.pow(pad as u32);
        if v.checked_ilog10().map_or(0, |l| l as usize + 1) > precision {
            return Err(too_precise());
        }
        let v = if negative { -(v as i128) } else { v as i128 };
        let bytes = v.to_be_bytes();
        let first = (0..bytes.len() - 1)
            .find(|&i| !redundant_sign(bytes[i], bytes[i + 1]))
            .unwrap_or(bytes.len() - 1);
        return Ok(DecimalBytes::Inline(bytes, first as u8));
    }
    let mut digits: Vec<u8> = written().take(keep).collect();
    digits.extend(std::iter::repeat_n(0, pad));
    let first = digits.iter().position(|&d| d != 0).unwrap_or(digits.len());
    let digits = &digits[first..];
    if digits.len() > precision {
        return Err(too_precise());
    }
    Ok(DecimalBytes::Heap(twos_complement(&magnitude(digits), negative)))
}

/// A decimal's unscaled value as minimal big-endian two's complement: inline when it fits an i128 (no
/// allocation per value on the hot path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DecimalBytes {
    /// An i128's bytes, from this index on.
    Inline([u8; 16], u8),
    /// A longer value.
    Heap(Vec<u8>),
}

impl std::ops::Deref for DecimalBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            DecimalBytes::Inline(bytes, first) => &bytes[usize::from(*first)..],
            DecimalBytes::Heap(bytes) => bytes,
        }
    }
}

/// Digits of an unscaled value (with its scale's zeros) that surely fit an i128: 10^38 < 2^127.
const SMALL_DIGITS: usize = 38;

/// True when a leading two's complement byte `b` only repeats the sign of the byte `next` after it.
fn redundant_sign(b: u8, next: u8) -> bool {
    (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0)
}

/// Base-10 digits (most significant first) to big-endian base-256 magnitude, no leading zero bytes.
fn magnitude(digits: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    for &d in digits {
        let mut carry = u32::from(d);
        for byte in out.iter_mut().rev() {
            let v = u32::from(*byte) * 10 + carry;
            *byte = (v & 0xff) as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            out.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    out
}

/// A magnitude and a sign to minimal big-endian two's complement.
fn twos_complement(mag: &[u8], negative: bool) -> Vec<u8> {
    if mag.is_empty() {
        return vec![0];
    }
    let mut out = Vec::with_capacity(mag.len() + 1);
    out.push(0);
    out.extend_from_slice(mag);
    if negative {
        for b in out.iter_mut() {
            *b = !*b;
        }
        for b in out.iter_mut().rev() {
            let (v, overflow) = b.overflowing_add(1);
            *b = v;
            if !overflow {
                break;
            }
        }
    }
    // Drop redundant sign bytes.
    while out.len() > 1 && redundant_sign(out[0], out[1]) {
        out.remove(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unscaled(bytes: &[u8]) -> i128 {
        let mut v: i128 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
        for &b in bytes {
            v = (v << 8) | i128::from(b);
        }
        v
    }

    #[test]
    fn decimals_scale_exactly() {
        let d = |s: &str| parse_decimal(s, 10, 2).map(|b| unscaled(&b));
        assert_eq!(d("12.34"), Ok(1234));
        assert_eq!(d("-12.34"), Ok(-1234));
        assert_eq!(d("12"), Ok(1200));
        assert_eq!(d("0.5"), Ok(50));
        assert_eq!(d(".5"), Ok(50));
        assert_eq!(d("1.500"), Ok(150));
        assert_eq!(d("1.5e2"), Ok(15000));
        assert_eq!(d("125E-2"), Ok(125));
        assert_eq!(d("0"), Ok(0));
        assert_eq!(d("-0.00"), Ok(0));
        assert!(d("1.234").unwrap_err().contains("more than 2 fraction digits"));
        assert!(d("123456789.00").unwrap_err().contains("more than 10 digits"));
        assert!(d("12,34").is_err());
        assert!(d("").is_err());
        assert!(d(".").is_err());
        assert!(d("1e99999").is_err());
    }

    /// The i128 path against the digit-vector path, on every sign, scale and length around the boundary.
    #[test]
    fn small_path_matches_digit_path() {
        let slow = |text: &str, precision: usize, scale: usize| -> Result<Vec<u8>, String> {
            let (negative, s) = text.strip_prefix('-').map_or((false, text), |s| (true, s));
            let (i, f) = s.split_once('.').unwrap_or((s, ""));
            let mut digits: Vec<u8> = i.bytes().chain(f.bytes()).map(|b| b - b'0').collect();
            digits.extend(std::iter::repeat_n(0, scale - f.len()));
            let first = digits.iter().position(|&d| d != 0).unwrap_or(digits.len());
            if digits.len() - first > precision {
                return Err("precision".into());
            }
            Ok(twos_complement(&magnitude(&digits[first..]), negative))
        };
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        for len in 1..=38 {
            for _ in 0..40 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let scale = (seed % 6) as usize;
                let digits: String = (0..len)
                    .map(|k| char::from(b'0' + ((seed >> (k % 60)) as u8 % 10)))
                    .collect();
                let frac = scale.min(len - 1);
                let (i, f) = digits.split_at(len - frac);
                let text = format!("{}{i}.{f}", if seed & 1 == 1 { "-" } else { "" });
                for precision in [len - 1, len, 38] {
                    let fast = parse_decimal(&text, precision, scale).map(|b| b.to_vec());
                    match slow(&text, precision, scale) {
                        Ok(bytes) => assert_eq!(fast, Ok(bytes), "{text} ({precision}, {scale})"),
                        Err(_) => assert!(fast.is_err(), "{text} ({precision}, {scale})"),
                    }
                }
            }
        }
    }

    #[test]
    fn twos_complement_is_minimal() {
        assert_eq!(parse_decimal("127", 5, 0).unwrap().to_vec(), vec![0x7f]);
        assert_eq!(parse_decimal("128", 5, 0).unwrap().to_vec(), vec![0x00, 0x80]);
        assert_eq!(parse_decimal("-128", 5, 0).unwrap().to_vec(), vec![0x80]);
        assert_eq!(parse_decimal("-129", 5, 0).unwrap().to_vec(), vec![0xff, 0x7f]);
        assert_eq!(parse_decimal("-1", 5, 0).unwrap().to_vec(), vec![0xff]);
        assert_eq!(parse_decimal("256", 5, 0).unwrap().to_vec(), vec![0x01, 0x00]);
        let big = "123456789012345678901234567890123456";
        assert_eq!(
            unscaled(&parse_decimal(big, 38, 0).unwrap()),
            big.parse::<i128>().unwrap()
        );
        let neg = format!("-{big}");
        assert_eq!(
            unscaled(&parse_decimal(&neg, 38, 0).unwrap()),
            neg.parse::<i128>().unwrap()
        );
    }
}
