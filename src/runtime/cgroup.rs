//! A local container's usage straight from the host's cgroup fs, where
//! this process can see it (the controller on the engine's host): exact,
//! and a read of a few small files instead of an engine call. Docker's
//! stats endpoint waits for its collector's next tick (up to 1 s on Docker
//! 20.10), by which time a container that just exited has lost its cgroup;
//! the files are read in microseconds, so the last sample, taken when the
//! function's output ends, still finds them.
//!
//! Both cgroup versions and both Docker cgroup drivers (cgroupfs:
//! `docker/<id>`, systemd: `system.slice/docker-<id>.scope`) are looked
//! for. Where none is found (another cgroup parent, the controller in a
//! container of its own cgroup namespace) the caller falls back to the
//! stats endpoint.

use std::path::{Path, PathBuf};

use super::{PeakSource, UsageSample};

const ROOT: &str = "/sys/fs/cgroup";

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// `key value` lines (cgroup v2 `cpu.stat`).
fn keyed(p: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(p).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The container's directory under one hierarchy, for either driver.
fn dir(hierarchy: &Path, id: &str) -> Option<PathBuf> {
    [
        hierarchy.join("docker").join(id),
        hierarchy
            .join("system.slice")
            .join(format!("docker-{id}.scope")),
    ]
    .into_iter()
    .find(|d| d.is_dir())
}

/// A sample of container `id` (its full id), `None` where its cgroup is
/// not to be found here.
pub fn sample(id: &str) -> Option<UsageSample> {
    // An id is hex; anything else must not become a path.
    if id.len() < 12 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let root = Path::new(ROOT);
    if root.join("cgroup.controllers").exists() {
        v2(&dir(root, id)?)
    } else {
        v1(root, id)
    }
}

fn v1(root: &Path, id: &str) -> Option<UsageSample> {
    let cpu = dir(&root.join("cpuacct"), id)?;
    let mem = dir(&root.join("memory"), id)?;
    let pids = dir(&root.join("pids"), id);
    let pids_now = pids
        .as_ref()
        .and_then(|d| read_u64(&d.join("pids.current")));
    let pids_peak = pids.as_ref().and_then(|d| read_u64(&d.join("pids.peak")));
    Some(UsageSample {
        cpu_user_ns: read_u64(&cpu.join("cpuacct.usage_user"))?,
        cpu_system_ns: read_u64(&cpu.join("cpuacct.usage_sys"))?,
        memory_bytes: read_u64(&mem.join("memory.usage_in_bytes"))?,
        memory_peak: read_u64(&mem.join("memory.max_usage_in_bytes"))
            .map(|p| (p, PeakSource::MaxUsage)),
        pids: pids_now.max(pids_peak).unwrap_or(0),
    })
}

fn v2(d: &Path) -> Option<UsageSample> {
    let pids_now = read_u64(&d.join("pids.current"));
    let pids_peak = read_u64(&d.join("pids.peak"));
    Some(UsageSample {
        cpu_user_ns: keyed(&d.join("cpu.stat"), "user_usec")?.saturating_mul(1000),
        cpu_system_ns: keyed(&d.join("cpu.stat"), "system_usec")?.saturating_mul(1000),
        memory_bytes: read_u64(&d.join("memory.current"))?,
        memory_peak: read_u64(&d.join("memory.peak")).map(|p| (p, PeakSource::MemoryPeak)),
        pids: pids_now.max(pids_peak).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_are_not_hex_are_never_paths() {
        assert_eq!(sample("../../etc"), None);
        assert_eq!(sample("abc"), None);
    }

    #[test]
    fn v2_cpu_stat_is_read_by_key() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path();
        let write = |name: &str, text: &str| {
            std::fs::write(d.join(name), text).unwrap_or_else(|e| panic!("{e}"));
        };
        write(
            "cpu.stat",
            "usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\n",
        );
        write("memory.current", "4096\n");
        write("memory.peak", "8192\n");
        write("pids.current", "2\n");
        let s = v2(d).unwrap_or_default();
        assert_eq!((s.cpu_user_ns, s.cpu_system_ns), (2_000_000, 1_000_000));
        assert_eq!(s.memory_peak, Some((8192, PeakSource::MemoryPeak)));
        assert_eq!((s.memory_bytes, s.pids), (4096, 2));
    }
}
