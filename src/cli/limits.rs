//! `bento run --memory/--cpus/--pids/--timeout`: per-run limits, which the
//! server checks against the image's maximums.

use crate::config::{parse_duration, LimitsRequest};
use clap::Args;
use std::time::Duration;

#[derive(Debug, Clone, Default, Args)]
pub struct LimitArgs {
    /// Memory limit, like 512m or 1g (binary units; plain numbers are bytes).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory: Option<u64>,
    /// CPUs, fractions allowed (0.5 is half a core).
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,
    /// Most processes and threads the function may have.
    #[arg(long, value_name = "N")]
    pub pids: Option<i64>,
    /// Wall-clock limit, like 30s, 15m or 2h (0 for none, if the image allows).
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,
}

impl LimitArgs {
    pub fn request(&self) -> LimitsRequest {
        LimitsRequest {
            memory: self.memory,
            cpus: self.cpus,
            pids: self.pids,
            timeout: self.timeout,
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

fn parse_timeout(s: &str) -> Result<Duration, String> {
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
}
