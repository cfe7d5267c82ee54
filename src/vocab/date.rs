//! Dates as mail and logs write them, from Unix seconds (UTC; no time zone files).

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Month (0–11), day of the month, hour, minute and second of `secs` seconds since
/// the epoch (a local time when the caller added its offset). 64-bit: no 2038.
pub fn fields(secs: i64) -> [u32; 5] {
    let (_, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400) as u32;
    [m - 1, d, t / 3600, t / 60 % 60, t % 60]
}

/// `Sat, 28 Nov 2026 13:45:51 +0000` for a Unix time (always UTC: no time zone
/// Seconds since the epoch now (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// database is read).
pub fn rfc5322_date(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `2026-11-28 13:45:51` (UTC), for listings.
pub fn iso_date(unix: u64) -> String {
    let (y, m, d) = civil_from_days((unix / 86_400) as i64);
    let secs = unix % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_past_2038_and_before_1970() {
        // 2040-02-29 12:34:56 UTC, a leap day after the 32-bit wrap.
        assert_eq!(fields(2_214_131_696), [1, 29, 12, 34, 56]);
        assert_eq!(fields(0), [0, 1, 0, 0, 0]);
        // 1969-12-31 23:59:59 (a negative offset at the epoch).
        assert_eq!(fields(-1), [11, 31, 23, 59, 59]);
    }
}
