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

/// An optional whole number, as JSON Schema's `integer` has it: `311` and
/// `311.0` alike (a client that only has doubles sends the second), within
/// `0..=max`; `null` is no value.
pub(crate) fn de_opt_whole<'de, D: Deserializer<'de>>(
    d: D,
    max: u64,
) -> Result<Option<u64>, D::Error> {
    struct V(u64);
    impl serde::de::Visitor<'_> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a whole number from 0 to {}", self.0)
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Option<u64>, E> {
            if n > self.0 {
                return Err(E::custom(format!("{n} is above {}", self.0)));
            }
            Ok(Some(n))
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Option<u64>, E> {
            u64::try_from(n)
                .map_err(|_| E::custom(format!("{n} is below 0")))
                .and_then(|n| self.visit_u64(n))
        }
        fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Option<u64>, E> {
            // Exact below 2^53, which every bound here is.
            if n.fract() != 0.0 || !(0.0..=self.0 as f64).contains(&n) {
                return Err(E::custom(format!(
                    "{n} is not a whole number from 0 to {}",
                    self.0
                )));
            }
            Ok(Some(n as u64))
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V(max))
}

/// The largest whole number every JSON parser keeps exactly (2^53 - 1):
/// the bound of counts and sizes in request bodies.
pub const MAX_SAFE: u64 = (1 << 53) - 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Whole {
        #[serde(default, deserialize_with = "whole")]
        n: Option<u64>,
    }

    fn whole<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        de_opt_whole(d, 1000)
    }

    #[test]
    fn whole_numbers_may_be_written_as_floats_and_are_bounded() {
        let n = |s: &str| serde_json::from_str::<Whole>(s).map(|w| w.n).ok();
        assert_eq!(n(r#"{"n": 311}"#), Some(Some(311)));
        assert_eq!(n(r#"{"n": 311.0}"#), Some(Some(311)));
        assert_eq!(n(r#"{"n": null}"#), Some(None));
        assert_eq!(n(r#"{}"#), Some(None));
        for bad in [
            r#"{"n": 1.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": 1001}"#,
            r#"{"n": 1e300}"#,
        ] {
            assert_eq!(n(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration("h"), None);
    }
}
