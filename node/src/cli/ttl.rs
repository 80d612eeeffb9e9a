//! Lifetimes on the command line: `90d`, `24h`, `30m`, `60s`.

use std::time::Duration;

/// Parses a lifetime: a number and `d`, `h`, `m` or `s` (or `ms`).
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Some(days) = s.strip_suffix('d') {
        let n: u64 = days
            .parse()
            .map_err(|_| format!("{s:?} is not a lifetime such as 30d, 24h, 10m or 60s"))?;
        return n
            .checked_mul(86_400)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{s:?} is too long"));
    }
    crate::config::duration::parse(s)
        .map_err(|e| format!("{s:?} is not a lifetime such as 30d, 24h, 10m or 60s ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_hours_minutes_and_seconds() {
        assert_eq!(parse("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("60s"), Ok(Duration::from_secs(60)));
        assert!(parse("1w").is_err());
        assert!(parse("d").is_err());
        assert!(parse("99999999999999999d").is_err());
    }
}
