//! Calendar date and time of a Unix timestamp, for the few places that print or
//! read one (`version -format=json`'s `BuildDate`, `/v1/agent/metrics`'
//! `Timestamp`, intention times) without a date crate.

/// A UTC date and time to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcDateTime {
    /// Year.
    pub year: i64,
    /// Month, 1–12.
    pub month: i64,
    /// Day of the month, 1–31.
    pub day: i64,
    /// Hour, 0–23.
    pub hour: u64,
    /// Minute, 0–59.
    pub minute: u64,
    /// Second, 0–59.
    pub second: u64,
}

impl UtcDateTime {
    /// The date and time `secs` seconds after 1970-01-01T00:00:00Z (Howard Hinnant's
    /// civil-from-days algorithm).
    pub fn from_unix(secs: u64) -> Self {
        let days = i64::try_from(secs / 86_400).unwrap_or(0);
        let rem = secs % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        UtcDateTime {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: rem / 3_600,
            minute: rem % 3_600 / 60,
            second: rem % 60,
        }
    }

    /// The date and time of an RFC 3339 UTC text (`YYYY-MM-DDTHH:MM:SS`, anything
    /// after the seconds ignored); `None` when those fields are not numbers in range.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let num = |r: std::ops::Range<usize>| -> Option<i64> { text.get(r)?.parse().ok() };
        let t = UtcDateTime {
            year: num(0..4)?,
            month: num(5..7)?,
            day: num(8..10)?,
            hour: u64::try_from(num(11..13)?).ok()?,
            minute: u64::try_from(num(14..16)?).ok()?,
            second: u64::try_from(num(17..19)?).ok()?,
        };
        let in_range = (1..=12).contains(&t.month)
            && (1..=31).contains(&t.day)
            && t.hour < 24
            && t.minute < 60
            && t.second < 61;
        in_range.then_some(t)
    }

    /// Days since 1970-01-01 (negative before it), the inverse of
    /// [`UtcDateTime::from_unix`]'s day count.
    pub fn unix_days(&self) -> i64 {
        let y = if self.month <= 2 {
            self.year - 1
        } else {
            self.year
        };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * ((self.month + 9) % 12) + 2) / 5 + self.day - 1;
        era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
    }

    /// The current time (the epoch if the clock is set before it).
    pub fn now() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self::from_unix(secs)
    }

    /// Seconds since the Unix epoch (negative before it).
    pub fn unix_seconds(&self) -> i64 {
        let hms = self.hour * 3_600 + self.minute * 60 + self.second;
        self.unix_days() * 86_400 + i64::try_from(hms).unwrap_or(0)
    }

    /// Day of the week, 0 = Sunday.
    pub fn weekday(&self) -> usize {
        // 1970-01-01 was a Thursday.
        usize::try_from((self.unix_days() + 4).rem_euclid(7)).unwrap_or(0)
    }

    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::UtcDateTime;

    #[test]
    fn known_dates() {
        assert_eq!(UtcDateTime::from_unix(0).rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(
            UtcDateTime::from_unix(951_782_400).rfc3339(),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            UtcDateTime::from_unix(1_700_000_000).rfc3339(),
            "2023-11-14T22:13:20Z"
        );
    }

    #[test]
    fn parse_is_the_inverse() {
        for secs in [0u64, 951_782_400, 1_700_000_000, 1_764_590_405] {
            let t = UtcDateTime::from_unix(secs);
            let back = UtcDateTime::parse_rfc3339(&t.rfc3339()).unwrap();
            assert_eq!(back, t);
            assert_eq!(back.unix_seconds(), secs as i64);
        }
        let zero = UtcDateTime::parse_rfc3339("0001-01-01T00:00:00Z").unwrap();
        assert_eq!(zero.weekday(), 1, "Go's zero time is a Monday");
        assert_eq!(UtcDateTime::from_unix(0).weekday(), 4);
        assert!(UtcDateTime::parse_rfc3339("2026-13-01T00:00:00Z").is_none());
        assert!(UtcDateTime::parse_rfc3339("garbage").is_none());
    }
}
