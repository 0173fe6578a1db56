//! Kubernetes `creationTimestamp`s as instants: istiod orders competing
//! policies by age, and validation flags a timestamp it cannot order.

/// istiod's order between competing resources of one kind: creationTimestamp
/// (missing or unparsable sorts as the newest), then name, then namespace
/// (`pilot/pkg/model/config.go` `configCompareByCreationTime`).
pub fn age_key<'a>(
    creation_timestamp: Option<&str>,
    name: &'a str,
    namespace: &'a str,
) -> (i128, &'a str, &'a str) {
    let t = creation_timestamp
        .and_then(parse_timestamp)
        .unwrap_or(i128::MAX);
    (t, name, namespace)
}

/// Parse an RFC 3339 timestamp (`2024-01-02T03:04:05Z`, with optional
/// fraction and `+hh:mm` offset) to nanoseconds since the Unix epoch.
/// `None` when it is not one.
pub fn parse_timestamp(s: &str) -> Option<i128> {
    let s = s.trim();
    let (date, rest) = s.split_once(['T', 't', ' '])?;
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    if d.next().is_some()
        || !(0..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
    {
        return None;
    }
    let (time, offset_secs) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0i64)
    } else {
        let i = rest.rfind(['+', '-'])?;
        let (t, off) = rest.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (h, m) = off.get(1..)?.split_once(':')?;
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        if !(0..=23).contains(&h) || !(0..=59).contains(&m) {
            return None;
        }
        (t, sign * (h * 3600 + m * 60))
    };
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, frac),
        None => (time, ""),
    };
    let mut t = hms.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let sec: i64 = t.next()?.parse().ok()?;
    if t.next().is_some()
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&mi)
        || !(0..=60).contains(&sec)
    {
        return None;
    }
    let mut nanos: i128 = 0;
    if !frac.is_empty() {
        if !frac.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        nanos = digits.parse().ok()?;
    }
    let days = days_from_civil(year, month, day);
    let secs =
        i128::from(days) * 86_400 + i128::from(h * 3600 + mi * 60 + sec) - i128::from(offset_secs);
    Some(secs * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 in the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn timestamps_parse_to_ordered_instants() {
        let a = parse_timestamp("2024-01-02T03:04:05Z").unwrap();
        let b = parse_timestamp("2024-01-02T03:04:06Z").unwrap();
        let c = parse_timestamp("2024-01-02T04:04:05.5+01:00").unwrap();
        assert!(a < b);
        assert_eq!(c - a, 500_000_000);
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("2024-13-01T00:00:00Z"), None);
    }

    proptest::proptest! {
        #[test]
        fn timestamp_parsing_never_panics(s in "\\PC{0,40}", n in proptest::num::i64::ANY) {
            let _ = parse_timestamp(&s);
            let _ = parse_timestamp(&format!("{n}-01-01T00:00:00Z"));
            let _ = parse_timestamp(&format!("2024-01-01T{n}:00:00+{n}:{n}"));
        }
    }
}
