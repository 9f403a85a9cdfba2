//! RFC 3339 timestamps to epoch milliseconds, for the strict form only.
//!
//! `YYYY-MM-DD[Tt ]HH:MM:SS[.1-9 digits](Z|z|+HH:MM|-HH:MM)`, every field in range, the result in
//! years 1 to 9999 (UTC). Sub-millisecond digits are floored, as `flows.parsing.checks.timestamp_ms`
//! does. Anything else (a leap second, a tenth fraction digit, a field out of range) is `None`,
//! and the Python reference judges the batch and says why.

pub const MIN_MS: i64 = -62_135_596_800_000;
pub const MAX_MS: i64 = 253_402_300_799_999;

fn digits(b: &[u8], lo: usize, hi: usize) -> Option<i64> {
    let mut out = 0i64;
    for &c in &b[lo..hi] {
        if !c.is_ascii_digit() {
            return None;
        }
        out = out * 10 + i64::from(c - b'0');
    }
    Some(out)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) {
                29
            } else {
                28
            }
        }
    }
}

pub fn rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let n = b.len();
    if n < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 7)?;
    let day = digits(b, 8, 10)?;
    let hour = digits(b, 11, 13)?;
    let minute = digits(b, 14, 16)?;
    let second = digits(b, 17, 19)?;
    let (end, offset_min) = match b[n - 1] {
        b'Z' | b'z' => (n - 1, 0i64),
        _ => {
            if n < 25 || b[n - 3] != b':' {
                return None;
            }
            let sign = match b[n - 6] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, om) = (digits(b, n - 5, n - 3)?, digits(b, n - 2, n)?);
            if oh > 23 || om > 59 {
                return None;
            }
            (n - 6, sign * (oh * 60 + om))
        }
    };
    let millis = if end == 19 {
        0
    } else {
        if b[19] != b'.' || !(21..=29).contains(&end) {
            return None;
        }
        digits(b, 20, end)?; // every fraction byte a digit
        let kept = end.min(23);
        digits(b, 20, kept)? * 10i64.pow((23 - kept) as u32)
    };
    if year < 1
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let ms = days_from_civil(year, month, day) * 86_400_000
        + ((hour * 60 + minute - offset_min) * 60 + second) * 1000
        + millis;
    (MIN_MS..=MAX_MS).contains(&ms).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::rfc3339_ms;

    #[test]
    fn forms() {
        assert_eq!(rfc3339_ms("2026-11-22T10:00:00Z"), Some(1_795_341_600_000));
        assert_eq!(
            rfc3339_ms("2026-11-22t10:00:00.123456789z"),
            Some(1_795_341_600_123)
        );
        assert_eq!(
            rfc3339_ms("2026-11-22 10:00:00.1+01:30"),
            Some(1_795_336_200_100)
        );
        assert_eq!(rfc3339_ms("2026-02-29T10:00:00Z"), None);
        assert_eq!(rfc3339_ms("2026-11-22T10:00:60Z"), None);
        assert_eq!(rfc3339_ms("2026-11-22T10:00:00.Z"), None);
        assert_eq!(rfc3339_ms("2026-11-22T10:00:00+0100"), None);
        assert_eq!(rfc3339_ms("0001-01-01T00:00:00+00:01"), None);
        assert_eq!(
            rfc3339_ms("9999-12-31T23:59:59.999Z"),
            Some(253_402_300_799_999)
        );
    }
}
