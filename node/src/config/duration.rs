//! Human-friendly durations in configuration: `"500ms"`, `"2s"`, `"10m"`, `"1h"`.

use std::fmt;
use std::time::Duration;

use murmur_membership::policy::spec::PolicyDuration;
use serde::{Deserialize, Deserializer};

/// A duration written as a number followed by `ms`, `s`, `m` or `h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

/// Parses `"500ms"`, `"2s"`, `"10m"`, `"1h"`: the same syntax as durations in policy documents.
pub fn parse(s: &str) -> Result<Duration, String> {
    PolicyDuration::parse(s.trim()).map(|d| d.0)
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The largest exact unit, as policy documents print it: whole milliseconds of a very
        // long duration would not fit the number `parse` reads back.
        PolicyDuration(self.0).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_refuses_the_rest() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse("5").unwrap_err().contains("no unit"));
        assert!(parse("fast").is_err());
        assert!(parse("1d").is_err());
        assert!(
            parse("999999999999999999h")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn prints_what_it_parses_back() {
        for s in ["500ms", "2s", "10m", "1h", "0ms", "18446744073709552s"] {
            let d = HumanDuration(parse(s).unwrap());
            assert_eq!(parse(&d.to_string()), Ok(d.0), "{s}");
        }
    }
}
