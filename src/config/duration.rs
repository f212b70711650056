//! Durations in YAML: a number of seconds, or a number with a unit.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Accepts `90`, `90s`, `15m`, `24h`, `2d` (and `500ms`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = |mult: u64| n.checked_mul(mult).map(Duration::from_secs);
    match unit.trim() {
        "" | "s" => secs(1),
        "ms" => Some(Duration::from_millis(n)),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        _ => None,
    }
}

pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(n) => Ok(Duration::from_secs(n)),
        Raw::Text(t) => parse_duration(&t).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid duration {t:?}: use a number with s, m, h or d, like 30s or 24h"
            ))
        }),
    }
}

/// [`de_duration`] for optional values.
pub(crate) fn de_opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration("h"), None);
    }
}
