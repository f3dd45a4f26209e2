//! Decimal text (`"-12.34"`, `1.5e3`) to Avro's `decimal`: the unscaled value as big-endian two's complement.
//!
//! Exact: a value with more fraction digits than the scale (other than trailing zeros) or more digits than
//! the precision is refused, never rounded.

/// Largest exponent accepted in `1e<exp>` forms (precision bounds the result long before this).
const MAX_EXPONENT: i64 = 10_000;

/// Parses `text` as a decimal of `precision` digits and `scale` fraction digits; returns the unscaled value
/// as minimal big-endian two's complement bytes.
pub(crate) fn parse_decimal(text: &str, precision: usize, scale: usize) -> Result<Vec<u8>, String> {
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
    let mut digits: Vec<u8> = int_part
        .bytes()
        .chain(frac_part.bytes())
        .map(|b| b - b'0')
        .collect();
    // Fraction digits of the number as written, after applying the exponent.
    let frac_len = frac_part.len() as i64 - exponent;
    let scale_i = scale as i64;
    if frac_len > scale_i {
        let excess = (frac_len - scale_i) as usize;
        let cut = digits.len().saturating_sub(excess);
        if digits[cut..].iter().any(|&d| d != 0) {
            return Err(format!(
                "{text:?} has more than {scale} fraction digits (the schema's scale)"
            ));
        }
        digits.truncate(cut);
    } else {
        digits.extend(std::iter::repeat_n(0, (scale_i - frac_len) as usize));
    }
    let first = digits.iter().position(|&d| d != 0).unwrap_or(digits.len());
    let digits = &digits[first..];
    if digits.len() > precision {
        return Err(format!(
            "{text:?} has more than {precision} digits (the schema's precision)"
        ));
    }
    Ok(twos_complement(&magnitude(digits), negative))
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
    while out.len() > 1 && ((out[0] == 0 && out[1] & 0x80 == 0) || (out[0] == 0xff && out[1] & 0x80 != 0)) {
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

    #[test]
    fn twos_complement_is_minimal() {
        assert_eq!(parse_decimal("127", 5, 0).unwrap(), vec![0x7f]);
        assert_eq!(parse_decimal("128", 5, 0).unwrap(), vec![0x00, 0x80]);
        assert_eq!(parse_decimal("-128", 5, 0).unwrap(), vec![0x80]);
        assert_eq!(parse_decimal("-129", 5, 0).unwrap(), vec![0xff, 0x7f]);
        assert_eq!(parse_decimal("-1", 5, 0).unwrap(), vec![0xff]);
        assert_eq!(parse_decimal("256", 5, 0).unwrap(), vec![0x01, 0x00]);
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
