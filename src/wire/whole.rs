//! Whole numbers in request bodies, as JSON Schema counts them: `311` and
//! `311.0` alike, bounded so that every JSON parser keeps them exactly.

use serde::Deserializer;

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
}
