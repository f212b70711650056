//! One engine sample of a container's resource usage, and how it is read
//! from the Docker stats endpoint (one-shot, never streamed), which both
//! engines answer: the local one, and each Swarm node's.
//!
//! Where the figures come from (see `docs/usage.md`):
//! - CPU: the cgroup's cumulative user and system time
//!   (`cpu_stats.cpu_usage.usage_in_usermode` / `usage_in_kernelmode`, in
//!   nanoseconds on cgroup v1 and v2 alike);
//! - memory: on cgroup v1, `memory_stats.max_usage` is the cgroup's own
//!   high-water mark (`memory.max_usage_in_bytes`), exact whatever the
//!   sampling rate; cgroup v2 has no such field in Docker's stats, so there
//!   the peak is the highest `usage` sampled (a lower bound), unless the
//!   cgroup fs is readable (`runtime::cgroup`, which reads `memory.peak`);
//! - processes: `pids_stats.current`, sampled (neither cgroup version's
//!   stats carry a maximum).

use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::StatsOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use std::time::Duration;

use super::{Result, RuntimeError};

/// How long one stats call may take: a one-shot answer comes at the
/// engine's next collection (within 1 s on Docker 20.10), so this only
/// bounds an engine that hangs.
pub const STATS_DEADLINE: Duration = Duration::from_secs(5);

/// One reading of a container's cgroup counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageSample {
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    /// Memory in use now.
    pub memory_bytes: u64,
    /// The cgroup's own high-water mark, where the engine gives one
    /// (cgroup v1's `max_usage`, or v2's `memory.peak`).
    pub memory_peak: Option<(u64, PeakSource)>,
    pub pids: u64,
}

/// Where a peak memory figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeakSource {
    /// cgroup v1 `memory.max_usage_in_bytes`, via Docker's stats.
    MaxUsage,
    /// cgroup v2 `memory.peak`, read from the host's cgroup fs.
    MemoryPeak,
}

impl PeakSource {
    pub fn name(self) -> &'static str {
        match self {
            PeakSource::MaxUsage => "max_usage",
            PeakSource::MemoryPeak => "memory.peak",
        }
    }
}

/// Asks `docker` (an engine that runs `container`) for one sample. `None`
/// when the container is not running (its cgroup is gone, and the engine
/// answers zeros) or unknown.
pub async fn sample(docker: &Docker, container: &str) -> Result<Option<UsageSample>> {
    let opts = StatsOptionsBuilder::new()
        .stream(false)
        .one_shot(true)
        .build();
    let mut stream = docker.stats(container, Some(opts));
    let next = tokio::time::timeout(STATS_DEADLINE, stream.next())
        .await
        .map_err(|_| RuntimeError::Engine("stats: no answer within 5s".into()))?;
    match next {
        None => Ok(None),
        Some(Ok(stats)) => Ok(from_stats(&stats)),
        Some(Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404 | 409,
            ..
        })) => Ok(None),
        Some(Err(e)) => Err(RuntimeError::Engine(format!("stats: {e}"))),
    }
}

/// The sample in Docker's stats; `None` when they describe no running
/// cgroup (an exited container's stats are all zeros or absent).
pub fn from_stats(s: &ContainerStatsResponse) -> Option<UsageSample> {
    let cpu = s.cpu_stats.as_ref().and_then(|c| c.cpu_usage.as_ref());
    let mem = s.memory_stats.as_ref();
    let sample = UsageSample {
        cpu_user_ns: cpu.and_then(|c| c.usage_in_usermode).unwrap_or(0),
        cpu_system_ns: cpu.and_then(|c| c.usage_in_kernelmode).unwrap_or(0),
        memory_bytes: mem.and_then(|m| m.usage).unwrap_or(0),
        memory_peak: mem
            .and_then(|m| m.max_usage)
            .filter(|&m| m > 0)
            .map(|m| (m, PeakSource::MaxUsage)),
        pids: s.pids_stats.as_ref().and_then(|p| p.current).unwrap_or(0),
    };
    let total = cpu.and_then(|c| c.total_usage).unwrap_or(0);
    (total > 0 || sample.memory_bytes > 0).then_some(sample)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{
        ContainerCpuStats, ContainerCpuUsage, ContainerMemoryStats, ContainerPidsStats,
    };

    fn stats(total: u64, usage: u64, max: Option<u64>) -> ContainerStatsResponse {
        ContainerStatsResponse {
            cpu_stats: Some(ContainerCpuStats {
                cpu_usage: Some(ContainerCpuUsage {
                    total_usage: Some(total),
                    usage_in_usermode: Some(total / 4 * 3),
                    usage_in_kernelmode: Some(total / 4),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(usage),
                max_usage: max,
                ..Default::default()
            }),
            pids_stats: Some(ContainerPidsStats {
                current: Some(3),
                limit: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn v1_stats_carry_the_high_water_mark_and_v2_do_not() {
        let v1 = from_stats(&stats(400, 10, Some(50))).unwrap_or_default();
        assert_eq!(v1.memory_peak, Some((50, PeakSource::MaxUsage)));
        assert_eq!((v1.cpu_user_ns, v1.cpu_system_ns, v1.pids), (300, 100, 3));
        let v2 = from_stats(&stats(400, 10, None)).unwrap_or_default();
        assert_eq!(v2.memory_peak, None);
        assert_eq!(v2.memory_bytes, 10);
    }

    #[test]
    fn an_exited_containers_zeros_are_no_sample() {
        assert_eq!(from_stats(&stats(0, 0, None)), None);
        assert_eq!(from_stats(&ContainerStatsResponse::default()), None);
    }
}
