//! Times as people read them: ISO-8601 UTC, computed without a calendar
//! crate (the store has no other use for one).

/// `timestamp_us` (microseconds since the Unix epoch, as every event
/// carries it) as ISO-8601 UTC with microseconds:
/// `2026-12-06T15:50:31.000123Z`.
pub fn iso_time(us: u64) -> String {
    let secs = us / 1_000_000;
    let (date, h, m, s) = civil(secs);
    format!("{date}T{h:02}:{m:02}:{s:02}.{:06}Z", us % 1_000_000)
}

/// Seconds since the Unix epoch as ISO-8601 UTC: `2026-12-06T15:50:31Z`.
pub(crate) fn iso_utc_secs(secs: u64) -> String {
    let (date, h, m, s) = civil(secs);
    format!("{date}T{h:02}:{m:02}:{s:02}Z")
}

/// The civil date (`YYYY-MM-DD`) and time of day of `secs`.
fn civil(secs: u64) -> (String, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(iso_time(951_782_400_000_123), "2000-02-29T00:00:00.000123Z");
        assert_eq!(iso_utc_secs(1_796_515_200 + 3_661), "2026-12-06T01:01:01Z");
    }
}
