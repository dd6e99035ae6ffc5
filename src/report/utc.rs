//! Calendar time in UTC from a `SystemTime`, without a time-zone database:
//! run folder names and the times shown in reports are UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC date and time of day, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcDateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl UtcDateTime {
    /// Times before 1970 are clamped to the epoch.
    pub fn from_system_time(at: SystemTime) -> UtcDateTime {
        let secs = at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        UtcDateTime::from_unix_seconds(secs)
    }

    pub fn from_unix_seconds(secs: u64) -> UtcDateTime {
        let days = (secs / 86_400) as i64;
        let of_day = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        UtcDateTime {
            year,
            month,
            day,
            hour: (of_day / 3600) as u32,
            minute: (of_day / 60 % 60) as u32,
            second: (of_day % 60) as u32,
        }
    }

    /// `20250314-092653`: sorts by time, safe in file names.
    pub fn compact(&self) -> String {
        format!("{:04}{:02}{:02}-{:02}{:02}{:02}", self.year, self.month, self.day, self.hour, self.minute, self.second)
    }

    /// `2025-03-14 09:26:53 UTC`.
    pub fn readable(&self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(UtcDateTime::from_unix_seconds(0).compact(), "19700101-000000");
        // 2000-02-29 (leap day of a century leap year) 12:34:56.
        assert_eq!(UtcDateTime::from_unix_seconds(951_827_696).compact(), "20000229-123456");
        // 2024-12-31 23:59:59.
        assert_eq!(UtcDateTime::from_unix_seconds(1_735_689_599).readable(), "2024-12-31 23:59:59 UTC");
        // 2025-03-01 00:00:00 (day after a non-leap February).
        assert_eq!(UtcDateTime::from_unix_seconds(1_740_787_200).compact(), "20250301-000000");
    }
}
