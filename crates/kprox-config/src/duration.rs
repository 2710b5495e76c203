//! Durations written the way kubectl and Go write them (`0s`, `250ms`, `1m30s`, `2h`).
//!
//! kubectl's `--keepalive` takes a Go duration, so kprox's flags, TOML and environment take the
//! same form. Not for parsing anything else.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration parsed from and printed as a Go duration string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    /// Builds from whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// Builds from milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self(Duration::from_millis(millis))
    }

    /// The duration.
    pub const fn get(self) -> Duration {
        self.0
    }

    /// True for `0s`, which several options read as "off".
    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

/// Why a duration string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a duration: {why} (write it like `30s`, `500ms`, `1m30s` or `0s`)")]
pub struct DurationError {
    input: String,
    why: &'static str,
}

impl FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |why| DurationError {
            input: input.to_owned(),
            why,
        };
        let text = input.trim();
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        if text.starts_with('-') {
            return Err(fail("it is negative"));
        }
        // Go accepts a bare "0" without a unit; nothing else may omit it.
        if text == "0" {
            return Ok(Self(Duration::ZERO));
        }
        let mut total_nanos: u128 = 0;
        let mut rest = text.strip_prefix('+').unwrap_or(text);
        while !rest.is_empty() {
            let number_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| fail("a number has no unit"))?;
            if number_len == 0 {
                return Err(fail("a unit has no number before it"));
            }
            let (number, after) = rest.split_at(number_len);
            let unit_len = after
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            let unit_nanos: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60 * 1_000_000_000,
                "h" => 3_600 * 1_000_000_000,
                _ => return Err(fail("the unit must be one of ns, us, ms, s, m, h")),
            };
            let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
            if frac.contains('.') || (whole.is_empty() && frac.is_empty()) {
                return Err(fail("a number is malformed"));
            }
            let whole: u128 = if whole.is_empty() {
                0
            } else {
                whole.parse().map_err(|_| fail("a number is too large"))?
            };
            let mut part = whole
                .checked_mul(unit_nanos)
                .ok_or_else(|| fail("it is too large"))?;
            let mut scale = unit_nanos;
            for digit in frac.bytes() {
                scale /= 10;
                part += u128::from(digit - b'0') * scale;
            }
            total_nanos = total_nanos
                .checked_add(part)
                .ok_or_else(|| fail("it is too large"))?;
            rest = after;
        }
        let secs =
            u64::try_from(total_nanos / 1_000_000_000).map_err(|_| fail("it is too large"))?;
        // The remainder is below 1e9, so it fits in u32.
        let nanos = (total_nanos % 1_000_000_000) as u32;
        Ok(Self(Duration::new(secs, nanos)))
    }
}

impl fmt::Display for GoDuration {
    /// Prints the shortest exact form: `0s`, `250ms`, `1m30s`, `2h0m0s` is printed as `2h`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        if d.subsec_nanos() != 0 {
            let nanos = d.as_nanos();
            return if nanos.is_multiple_of(1_000_000) {
                write!(f, "{}ms", nanos / 1_000_000)
            } else if nanos.is_multiple_of(1_000) {
                write!(f, "{}us", nanos / 1_000)
            } else {
                write!(f, "{nanos}ns")
            };
        }
        let secs = d.as_secs();
        let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Duration, DurationError> {
        s.parse::<GoDuration>().map(GoDuration::get)
    }

    #[test]
    fn parses_the_forms_kubectl_users_write() {
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("2h45m"), Ok(Duration::from_secs(9900)));
        assert_eq!(parse("10us"), Ok(Duration::from_micros(10)));
    }

    #[test]
    fn refuses_what_go_refuses() {
        for bad in [
            "",
            "10",
            "-1s",
            "1x",
            "s",
            "1..2s",
            "ms10",
            "99999999999999999999999h",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn prints_what_it_parses() {
        for text in ["0s", "250ms", "1m30s", "2h", "15s", "1h1s", "10us", "7ns"] {
            let d: GoDuration = text.parse().expect("valid");
            assert_eq!(d.to_string(), text);
        }
    }
}
