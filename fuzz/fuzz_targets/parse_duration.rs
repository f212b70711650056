//! `bento::config::parse_duration`, used for every duration in the YAML
//! config. Checked: no panic; surrounding whitespace does not matter; a bare
//! number means seconds, and `N<unit>` agrees with `N` seconds times the unit.
#![no_main]

use bento::config::parse_duration;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let d = parse_duration(s);
    assert_eq!(parse_duration(s.trim()), d, "whitespace changed the result");
    assert_eq!(parse_duration(&format!(" {s}\t")), d);

    // Cross-check the units against the plain number of seconds.
    let t = s.trim();
    let digits = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    if digits(t) {
        assert_eq!(d, t.parse::<u64>().ok().map(Duration::from_secs));
    } else if let Some(num) = t.strip_suffix("ms").filter(|n| digits(n)) {
        assert_eq!(d, num.parse::<u64>().ok().map(Duration::from_millis));
    } else {
        for (unit, mult) in [("s", 1u64), ("m", 60), ("h", 3600), ("d", 86400)] {
            if let Some(num) = t.strip_suffix(unit).filter(|n| digits(n)) {
                let n = num.parse::<u64>().ok();
                assert_eq!(
                    d,
                    n.and_then(|n| n.checked_mul(mult)).map(Duration::from_secs)
                );
            }
        }
    }
    if d.is_some() {
        assert!(t.bytes().next().is_some_and(|b| b.is_ascii_digit()));
    }
});
