//! Human durations as written in manifests and config files: `500ms`, `2s`, `1m30s`, `1h`.

use std::{borrow::Cow, fmt, str::FromStr, time::Duration as StdDuration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration that serialises as a Go-style string (`2s`, `150ms`, `1m30s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub StdDuration);

/// The pattern the API server enforces; kept in step with [`Duration::from_str`].
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

impl Duration {
    pub const fn from_secs(s: u64) -> Self {
        Self(StdDuration::from_secs(s))
    }
    pub const fn from_millis(ms: u64) -> Self {
        Self(StdDuration::from_millis(ms))
    }
    pub fn get(self) -> StdDuration {
        self.0
    }
}

impl From<Duration> for StdDuration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: expected e.g. 500ms, 2s, 1m30s, 1h")]
pub struct ParseDurationError {
    input: String,
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseDurationError {
            input: s.to_owned(),
        };
        if s.is_empty() {
            return Err(err());
        }
        let mut total: u128 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > 12 {
                return Err(err());
            }
            let n: u128 = rest[..digits].parse().map_err(|_| err())?;
            rest = &rest[digits..];
            let (unit_ms, len) = if rest.starts_with("ms") {
                (1, 2)
            } else if rest.starts_with('s') {
                (1_000, 1)
            } else if rest.starts_with('m') {
                (60_000, 1)
            } else if rest.starts_with('h') {
                (3_600_000, 1)
            } else {
                return Err(err());
            };
            rest = &rest[len..];
            total = total.checked_add(n * unit_ms).ok_or_else(err)?;
        }
        let ms = u64::try_from(total).map_err(|_| err())?;
        Ok(Self(StdDuration::from_millis(ms)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        if !ms.is_multiple_of(1000) {
            return write!(f, "{ms}ms");
        }
        let s = ms / 1000;
        let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
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

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration such as 500ms, 2s, 1m30s or 1h."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        for (text, ms) in [
            ("2s", 2000),
            ("500ms", 500),
            ("1m30s", 90_000),
            ("1h", 3_600_000),
        ] {
            let d: Duration = text.parse().expect(text);
            assert_eq!(d.0.as_millis(), ms);
            assert_eq!(d.to_string(), text);
        }
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["", "2", "s", "2x", "-1s", "1.5s", "99999999999999999s"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad} should fail");
        }
    }
}
