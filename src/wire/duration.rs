//! Durations in YAML: a number of seconds, or a number with a unit.

use serde::Deserializer;
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

/// Seconds as they are written in the config and shown to users: `90s`,
/// `30m`, `2h`, `30d`, in the largest unit that divides them.
pub fn span(secs: u64) -> String {
    for (unit, scale) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= scale && secs.is_multiple_of(scale) {
            return format!("{}{unit}", secs / scale);
        }
    }
    format!("{secs}s")
}

pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    const HOW: &str = "a whole number of seconds, or a number with s, m, h or d, like 30s or 24h";
    impl serde::de::Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(HOW)
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(n))
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Duration, E> {
            u64::try_from(n).map(Duration::from_secs).map_err(|_| {
                E::custom(format!(
                    "invalid duration {n}: durations cannot be negative"
                ))
            })
        }
        fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Duration, E> {
            Err(E::custom(format!("invalid duration {n}: use {HOW}")))
        }
        fn visit_str<E: serde::de::Error>(self, t: &str) -> Result<Duration, E> {
            parse_duration(t).ok_or_else(|| E::custom(format!("invalid duration {t:?}: use {HOW}")))
        }
    }
    d.deserialize_any(V)
}

/// [`de_duration`] for optional values.
/// `null` is no value, as for every other optional field.
pub(crate) fn de_opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Given(#[serde(deserialize_with = "de_duration")] Duration);
    Ok(<Option<Given> as serde::Deserialize>::deserialize(d)?.map(|g| g.0))
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

    #[test]
    fn spans_use_the_largest_unit_that_divides() {
        assert_eq!(span(300), "5m");
        assert_eq!(span(90), "90s");
        assert_eq!(span(7200), "2h");
        assert_eq!(span(0), "0s");
    }
}
