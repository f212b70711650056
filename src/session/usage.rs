//! A session's resource usage, from engine samples taken on a timer by a
//! task of its own: the output path never waits for, or pays for, a
//! sample. The actor reads the figures for `inspect` and fixes them at the
//! function's exit.
//!
//! The cgroup's counters are cumulative (CPU time, cgroup v1's memory
//! high-water mark), so each figure is the highest seen; a sample of a
//! container that has just exited has no cgroup any more and adds nothing.
//! What runs between the last sample and the exit is not seen, except what
//! the cumulative counters carry into that last sample: hence a last
//! sample as soon as the output stream ends (the function has returned and
//! the driver is leaving), and samples close together at the start, where
//! short functions live. See `docs/usage.md` for the accuracy.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::runtime::{Runtime, UsageSample};
use crate::wire::api::Usage;

/// When samples are taken after the start: close together first, then
/// every [`SAMPLE_EVERY`].
const FIRST_SAMPLES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
];
pub const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// The figures so far, shared by the sampler and the actor.
pub struct Meter {
    started: Instant,
    acc: Mutex<Acc>,
}

#[derive(Default)]
struct Acc {
    cpu_user_ns: u64,
    cpu_system_ns: u64,
    peak_sampled: u64,
    peak_engine: Option<(u64, crate::runtime::PeakSource)>,
    peak_pids: u64,
    samples: u64,
    /// Fixed at the exit.
    wall: Option<Duration>,
}

impl Meter {
    /// A meter for a session that started at `started` (for one recovered
    /// after a restart: its creation, as far back as that was).
    pub fn new(started: Instant) -> Arc<Meter> {
        Arc::new(Meter {
            started,
            acc: Mutex::new(Acc::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Acc> {
        self.acc.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes in one sample: every figure is the highest seen.
    pub fn merge(&self, s: &UsageSample) {
        let mut a = self.lock();
        if a.wall.is_some() {
            return;
        }
        a.cpu_user_ns = a.cpu_user_ns.max(s.cpu_user_ns);
        a.cpu_system_ns = a.cpu_system_ns.max(s.cpu_system_ns);
        a.peak_sampled = a.peak_sampled.max(s.memory_bytes);
        if let Some((peak, source)) = s.memory_peak {
            if a.peak_engine.is_none_or(|(p, _)| peak >= p) {
                a.peak_engine = Some((peak, source));
            }
        }
        a.peak_pids = a.peak_pids.max(s.pids);
        a.samples += 1;
    }

    /// How long ago the session started.
    pub fn since_start(&self) -> Duration {
        self.started.elapsed()
    }

    /// The figures so far (`None` before the first sample).
    pub fn usage(&self) -> Option<Usage> {
        let a = self.lock();
        let wall = a.wall.unwrap_or_else(|| self.started.elapsed());
        figures(&a, wall)
    }

    /// The function has ended: the wall time stops, later samples are
    /// ignored, and the final figures are returned.
    pub fn finish(&self) -> Option<Usage> {
        let mut a = self.lock();
        let wall = *a.wall.get_or_insert_with(|| self.started.elapsed());
        figures(&a, wall)
    }

    /// Samples once, now; a failed sample is only logged.
    pub async fn sample(&self, runtime: &dyn Runtime, container: &str, session: &str) {
        match runtime.usage(container).await {
            Ok(Some(s)) => self.merge(&s),
            Ok(None) => {}
            Err(e) => tracing::debug!(session, error = %e, "usage sample failed"),
        }
    }
}

fn figures(a: &Acc, wall: Duration) -> Option<Usage> {
    if a.samples == 0 {
        return None;
    }
    let (peak, source) = match a.peak_engine {
        // The engine's mark and the samples are the same cgroup's: take the
        // higher, as a mark read before a late sample may be older.
        Some((p, s)) if p >= a.peak_sampled => (p, s.name()),
        _ => (a.peak_sampled, "sampled"),
    };
    Some(Usage {
        cpu_user_ms: a.cpu_user_ns / 1_000_000,
        cpu_system_ms: a.cpu_system_ns / 1_000_000,
        peak_memory_bytes: peak,
        peak_pids: a.peak_pids,
        wall_ms: u64::try_from(wall.as_millis()).unwrap_or(u64::MAX),
        peak_memory_source: source.to_string(),
        samples: a.samples,
    })
}

/// Samples `container` on the timer until `stop` is cancelled.
pub fn spawn_sampler(
    meter: Arc<Meter>,
    runtime: Arc<dyn Runtime>,
    container: String,
    session: String,
    stop: CancellationToken,
    tracker: &TaskTracker,
) {
    tracker.spawn(async move {
        let run = async {
            for at in FIRST_SAMPLES {
                tokio::time::sleep_until(meter.started + at).await;
                meter.sample(runtime.as_ref(), &container, &session).await;
            }
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                meter.sample(runtime.as_ref(), &container, &session).await;
            }
        };
        tokio::select! {
            _ = run => {}
            _ = stop.cancelled() => {}
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::PeakSource;

    fn sample(cpu: u64, mem: u64, peak: Option<u64>, pids: u64) -> UsageSample {
        UsageSample {
            cpu_user_ns: cpu,
            cpu_system_ns: cpu / 2,
            memory_bytes: mem,
            memory_peak: peak.map(|p| (p, PeakSource::MaxUsage)),
            pids,
        }
    }

    #[test]
    fn figures_are_the_highest_seen_and_frozen_at_the_end() {
        let m = Meter::new(Instant::now());
        assert_eq!(m.usage(), None);
        m.merge(&sample(2_000_000, 50, None, 4));
        m.merge(&sample(5_000_000, 20, None, 2));
        let u = m.usage().unwrap_or_default();
        assert_eq!((u.cpu_user_ms, u.cpu_system_ms), (5, 2));
        assert_eq!((u.peak_memory_bytes, u.peak_pids), (50, 4));
        assert_eq!(u.peak_memory_source, "sampled");
        m.merge(&sample(6_000_000, 30, Some(90), 1));
        let done = m.finish().unwrap_or_default();
        assert_eq!(done.peak_memory_bytes, 90);
        assert_eq!(done.peak_memory_source, "max_usage");
        // After the end nothing changes.
        m.merge(&sample(9_000_000_000, 1 << 40, None, 99));
        assert_eq!(m.usage(), Some(done));
    }
}
