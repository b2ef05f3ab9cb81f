//! Go `time.Duration` text syntax: `300ms`, `1m30s`, `9.8731s`, `-1.5h`, `0`.
//!
//! Consul accepts these everywhere a duration appears (query `wait`, session `TTL`,
//! check `Interval`), and clients send fractional forms such as `15.0s` and `0.001s`.

use std::time::Duration;

/// A duration string that Go's `time.ParseDuration` would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Empty input.
    #[error("time: invalid duration \"\"")]
    Empty,
    /// Not of the form `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`.
    #[error("time: invalid duration \"{0}\"")]
    Invalid(String),
    /// A unit Go does not know.
    #[error("time: unknown unit \"{unit}\" in duration \"{input}\"")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The whole input.
        input: String,
    },
    /// A number without a unit (only `0` may stand alone).
    #[error("time: missing unit in duration \"{0}\"")]
    MissingUnit(String),
    /// Negative durations are not meaningful for Tribune's uses.
    #[error("time: negative duration \"{0}\" not allowed")]
    Negative(String),
    /// Larger than fits.
    #[error("time: invalid duration \"{0}\"")]
    Overflow(String),
}

fn unit_nanos(unit: &str) -> Option<f64> {
    Some(match unit {
        "ns" => 1.0,
        "us" | "µs" | "μs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return None,
    })
}

/// Parses a Go duration. Negative values are rejected.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let (neg, mut rest) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(DurationError::Invalid(input.to_owned()));
    }
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." {
            return Err(DurationError::Invalid(input.to_owned()));
        }
        let value: f64 = num
            .parse()
            .map_err(|_| DurationError::Invalid(input.to_owned()))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(input.to_owned()));
        }
        let per = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit {
            unit: unit.to_owned(),
            input: input.to_owned(),
        })?;
        total_nanos += value * per;
        rest = &rest[unit_len..];
    }
    if neg && total_nanos > 0.0 {
        return Err(DurationError::Negative(input.to_owned()));
    }
    if !total_nanos.is_finite() || total_nanos > u64::MAX as f64 {
        return Err(DurationError::Overflow(input.to_owned()));
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

/// Formats like Go's `Duration.String()`: `0s`, `1.5s`, `1m30s`, `72h0m0s`, `500ms`.
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_frac(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_frac(nanos, 1_000_000));
    }
    let secs_total = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let hours = secs_total / 3600;
    let mins = (secs_total % 3600) / 60;
    let secs = secs_total % 60;
    let sec_str = trim_frac(
        u128::from(secs as u64) * 1_000_000_000 + frac,
        1_000_000_000,
    );
    if hours > 0 {
        format!("{hours}h{mins}m{sec_str}s")
    } else if mins > 0 {
        format!("{mins}m{sec_str}s")
    } else {
        format!("{sec_str}s")
    }
}

fn trim_frac(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.to_string().len() - 1;
    let frac_str = format!("{frac:0width$}");
    format!("{whole}.{}", frac_str.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_forms() {
        let cases = [
            ("9.8731s", 9_873_100_000u64),
            ("15.0s", 15_000_000_000),
            ("0.001s", 1_000_000),
            ("120000ms", 120_000_000_000),
            ("1m30s", 90_000_000_000),
            ("72h", 259_200_000_000_000),
            ("0", 0),
            ("10s", 10_000_000_000),
            ("1h2m3s4ms5us6ns", 3_723_004_005_006),
        ];
        for (s, n) in cases {
            assert_eq!(
                parse_go_duration(s).unwrap(),
                Duration::from_nanos(n),
                "{s}"
            );
        }
    }

    #[test]
    fn rejects_bad_forms() {
        for s in ["", "10", "s", "1x", "1.s.", "-5s", "abc"] {
            assert!(parse_go_duration(s).is_err(), "{s}");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration(Duration::from_secs(15)), "15s");
        assert_eq!(format_go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_go_duration(Duration::from_secs(259_200)), "72h0m0s");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
    }
}
