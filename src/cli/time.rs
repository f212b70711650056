//! Times as people read them: UTC timestamps, "5m ago", "in 4m", "1h30m".
//! No time zone database: everything is UTC.

use std::time::{SystemTime, UNIX_EPOCH};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Seconds since the epoch → `5m ago` (or `in 5m` for a time to come).
pub(super) fn ago(epoch_secs: u64) -> String {
    relative_to(epoch_secs, now())
}

fn relative_to(epoch_secs: u64, now: u64) -> String {
    if epoch_secs > now {
        format!("in {}", short(epoch_secs - now))
    } else {
        format!("{} ago", short(now - epoch_secs))
    }
}

/// The largest unit only: `45s`, `5m`, `3h`, `2d`.
fn short(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// A duration to the second: `30s`, `15m`, `1h30m`, `2h0m5s`.
pub(super) fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, 0) => format!("{h}h{m}m"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// Seconds since the epoch → `2025-11-21 22:40:00 UTC`.
pub(super) fn utc(epoch_secs: u64) -> String {
    let days = epoch_secs / 86400;
    let rem = epoch_secs % 86400;
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// `2025-11-21 22:40:00 UTC (5m ago)`.
pub(super) fn utc_and_ago(epoch_secs: u64) -> String {
    format!("{} ({})", utc(epoch_secs), ago(epoch_secs))
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_763_764_800), "2025-11-21 22:40:00 UTC");
        // A leap day, and the last second of a year.
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_704_067_199), "2023-12-31 23:59:59 UTC");
    }

    #[test]
    fn relative_times_and_durations() {
        assert_eq!(relative_to(100, 145), "45s ago");
        assert_eq!(relative_to(100, 100 + 7200), "2h ago");
        assert_eq!(relative_to(400, 100), "in 5m");
        assert_eq!(duration(30), "30s");
        assert_eq!(duration(900), "15m");
        assert_eq!(duration(5400), "1h30m");
        assert_eq!(duration(7200), "2h");
        assert_eq!(duration(7205), "2h0m5s");
    }
}
