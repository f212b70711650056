//! Resource usage as people read it: `bento inspect`, `bento run --usage`.

use super::table::bytes;
use crate::wire::api::Usage;

/// Milliseconds as seconds: `1.234s`.
fn secs(ms: u64) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

/// The `key  value` rows of `inspect`.
pub(super) fn rows(u: &Usage) -> Vec<(&'static str, String)> {
    vec![
        (
            "cpu",
            format!(
                "{} user, {} system",
                secs(u.cpu_user_ms),
                secs(u.cpu_system_ms)
            ),
        ),
        (
            "mem peak",
            format!("{} ({})", bytes(u.peak_memory_bytes), u.peak_memory_source),
        ),
        ("pids peak", u.peak_pids.to_string()),
        ("wall", secs(u.wall_ms)),
    ]
}

/// One line, for stderr after a run: `bento: usage: cpu 1.020s user ...`.
pub(super) fn line(u: &Usage) -> String {
    format!(
        "bento: usage: cpu {} user {} system, memory peak {}, pids peak {}, wall {}",
        secs(u.cpu_user_ms),
        secs(u.cpu_system_ms),
        bytes(u.peak_memory_bytes),
        u.peak_pids,
        secs(u.wall_ms)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_reads_as_seconds_and_bytes() {
        let u = Usage {
            cpu_user_ms: 1020,
            cpu_system_ms: 5,
            peak_memory_bytes: 100 << 20,
            peak_pids: 3,
            wall_ms: 2500,
            peak_memory_source: "max_usage".into(),
            samples: 4,
        };
        let l = line(&u);
        assert!(l.contains("cpu 1.020s user 0.005s system"), "{l}");
        assert!(l.contains("wall 2.500s"), "{l}");
        assert!(l.contains("pids peak 3"), "{l}");
    }
}
