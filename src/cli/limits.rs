//! `bento run --memory/--cpus/--pids/--timeout/--idle-timeout`: per-run limits, which the
//! server checks against the image's maximums.

use crate::config::parse_duration;
use crate::wire::api::LimitsRequest;
use clap::Args;
use std::time::Duration;

#[derive(Debug, Clone, Default, Args)]
pub struct LimitArgs {
    /// Memory limit, like 512m or 1g (binary units; plain numbers are bytes).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory: Option<u64>,
    /// CPUs, fractions allowed (0.5 is half a core).
    #[arg(long, value_name = "N", value_parser = parse_cpus)]
    pub cpus: Option<f64>,
    /// Most processes and threads the function may have.
    #[arg(long, value_name = "N")]
    pub pids: Option<i64>,
    /// Wall-clock limit, like 30s, 15m or 2h (0 for none, if the image allows).
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,
    /// End the session after this long with no client attached and no
    /// output, like 5m (0 for none, if the image allows; docs/leases.md).
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub idle_timeout: Option<Duration>,
}

impl LimitArgs {
    pub fn request(&self) -> LimitsRequest {
        LimitsRequest {
            memory: self.memory,
            cpus: self.cpus,
            pids: self.pids,
            timeout: self.timeout,
            idle_timeout: self.idle_timeout,
        }
    }
}

/// `512m` → 536870912. Units are binary, as Docker's are.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 512m or 1g"))?;
    let shift = match unit.trim() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("{s:?}: unknown unit; use k, m or g")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A number of CPUs. NaN and infinities are refused here because JSON has
/// no way to carry them (serde_json would send `null`, and the server would
/// quietly use the image's default); the range is the server's to check,
/// since only it knows the image's maximum.
fn parse_cpus(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(c) if c.is_finite() => Ok(c),
        _ => Err(format!("{s:?} is not a number of CPUs like 0.5 or 2")),
    }
}

pub(super) fn parse_timeout(s: &str) -> Result<Duration, String> {
    parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration like 30s, 15m or 2h"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5t").is_err());
        assert!(parse_size("99999999999999g").is_err());
    }

    #[test]
    fn cpus_must_be_numbers_json_can_carry() {
        assert_eq!(parse_cpus("0.5"), Ok(0.5));
        // Tiny ones pass: the server refuses them, naming its minimum.
        assert_eq!(parse_cpus("1e-10"), Ok(1e-10));
        for bad in ["nan", "NaN", "inf", "-inf", "infinity", "half", ""] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
    }
}
