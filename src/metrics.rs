//! Counters for `GET /metrics`, in the Prometheus text format.
//!
//! Process-wide atomics: cheap to bump on hot paths, no registry to pass
//! around. Gauges that describe the current state (sessions by state, bytes
//! held) are computed when scraped, from the sessions themselves.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

mod quota;
mod usage;
pub use quota::{quota_refused, render_quota_refusals};
pub use usage::observe_usage;

/// Upper bounds of the container start latency histogram, in seconds.
const START_BUCKETS: [f64; 10] = [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0];

pub struct Metrics {
    pub bytes_received: AtomicU64,
    pub bytes_delivered: AtomicU64,
    /// Output payload written to spool files (see `session::log`).
    pub bytes_spooled: AtomicU64,
    pub reconnects: AtomicU64,
    pub takeovers: AtomicU64,
    /// Takeovers whose old client did not confirm its final ack in time
    /// (see `session::actor::TAKEOVER_GRACE`): the new client may be sent
    /// again what the old one wrote out last.
    pub takeovers_unconfirmed: AtomicU64,
    pub reaped_delivered: AtomicU64,
    pub reaped_ttl: AtomicU64,
    pub docker_errors: AtomicU64,
    pub sessions_created: AtomicU64,
    /// Forks made, and forks whose replay diverged from their parent.
    pub forks: AtomicU64,
    pub forks_diverged: AtomicU64,
    /// Sessions that took a warm container, and those that found none ready.
    pub pool_hits: AtomicU64,
    pub pool_misses: AtomicU64,
    /// History records dropped by retention (`history_ttl`, `history_max`).
    pub history_expired: AtomicU64,
    /// Leases (docs/leases.md): deadlines moved, functions stopped at their
    /// timeout or idle timeout, and those killed after `stop_grace`.
    pub extends: AtomicU64,
    pub stops_timeout: AtomicU64,
    pub stops_idle: AtomicU64,
    pub grace_kills: AtomicU64,
    start_buckets: [AtomicU64; START_BUCKETS.len()],
    start_count: AtomicU64,
    start_sum_us: AtomicU64,
}

pub static METRICS: Metrics = Metrics {
    bytes_received: AtomicU64::new(0),
    bytes_delivered: AtomicU64::new(0),
    bytes_spooled: AtomicU64::new(0),
    reconnects: AtomicU64::new(0),
    takeovers: AtomicU64::new(0),
    takeovers_unconfirmed: AtomicU64::new(0),
    reaped_delivered: AtomicU64::new(0),
    reaped_ttl: AtomicU64::new(0),
    docker_errors: AtomicU64::new(0),
    sessions_created: AtomicU64::new(0),
    forks: AtomicU64::new(0),
    forks_diverged: AtomicU64::new(0),
    pool_hits: AtomicU64::new(0),
    pool_misses: AtomicU64::new(0),
    history_expired: AtomicU64::new(0),
    extends: AtomicU64::new(0),
    stops_timeout: AtomicU64::new(0),
    stops_idle: AtomicU64::new(0),
    grace_kills: AtomicU64::new(0),
    start_buckets: [const { AtomicU64::new(0) }; START_BUCKETS.len()],
    start_count: AtomicU64::new(0),
    start_sum_us: AtomicU64::new(0),
};

pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    /// Records how long a container took from create to code handed over.
    pub fn observe_start(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, le) in START_BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.start_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.start_count.fetch_add(1, Ordering::Relaxed);
        self.start_sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

/// The state-dependent numbers, gathered at scrape time.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub starting: u64,
    pub running: u64,
    pub ended: u64,
    pub attached: u64,
    pub buffered_bytes: u64,
    pub spooled_bytes: u64,
    /// Idle warm containers, by image.
    pub warm_ready: Vec<(String, u64)>,
}

/// Renders everything in the Prometheus text exposition format.
pub fn render(s: &Snapshot) -> String {
    let m = &METRICS;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in lines {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    metric(
        "bento_sessions",
        "gauge",
        "Live sessions by state.",
        &[
            ("{state=\"starting\"}".into(), s.starting),
            ("{state=\"running\"}".into(), s.running),
            ("{state=\"ended\"}".into(), s.ended),
        ],
    );
    metric(
        "bento_sessions_attached",
        "gauge",
        "Sessions with a client attached.",
        &[(String::new(), s.attached)],
    );
    metric(
        "bento_sessions_created_total",
        "counter",
        "Sessions created.",
        &[(String::new(), get(&m.sessions_created))],
    );
    metric(
        "bento_forks_total",
        "counter",
        "Forks made (POST /v1/sessions/{token}/fork).",
        &[(String::new(), get(&m.forks))],
    );
    metric(
        "bento_forks_diverged_total",
        "counter",
        "Forks whose replay did not reproduce their parent's output.",
        &[(String::new(), get(&m.forks_diverged))],
    );
    metric(
        "bento_output_received_bytes_total",
        "counter",
        "Output bytes read from containers.",
        &[(String::new(), get(&m.bytes_received))],
    );
    metric(
        "bento_output_delivered_bytes_total",
        "counter",
        "Output bytes sent to clients.",
        &[(String::new(), get(&m.bytes_delivered))],
    );
    metric(
        "bento_spool_written_bytes_total",
        "counter",
        "Output bytes written to spool files. Output a client acknowledges while it is still in memory is never spooled.",
        &[(String::new(), get(&m.bytes_spooled))],
    );
    metric(
        "bento_output_buffered_bytes",
        "gauge",
        "Output held for clients, not yet acknowledged.",
        &[(String::new(), s.buffered_bytes)],
    );
    metric(
        "bento_output_spooled_bytes",
        "gauge",
        "Held output only on disk.",
        &[(String::new(), s.spooled_bytes)],
    );
    metric(
        "bento_reconnects_total",
        "counter",
        "Attaches that resumed after earlier output.",
        &[(String::new(), get(&m.reconnects))],
    );
    metric(
        "bento_takeovers_total",
        "counter",
        "Attaches that took a session over from another client.",
        &[(String::new(), get(&m.takeovers))],
    );
    metric(
        "bento_takeover_unconfirmed_total",
        "counter",
        "Takeovers whose old client did not send its final ack and detach in time (or left without them): the new client may get again what the old one wrote out last.",
        &[(String::new(), get(&m.takeovers_unconfirmed))],
    );
    metric(
        "bento_sessions_reaped_total",
        "counter",
        "Sessions reaped, by reason.",
        &[
            ("{reason=\"delivered\"}".into(), get(&m.reaped_delivered)),
            ("{reason=\"ttl\"}".into(), get(&m.reaped_ttl)),
        ],
    );
    metric(
        "bento_session_extends_total",
        "counter",
        "Deadlines moved (POST /v1/sessions/{token}/extend, bento extend).",
        &[(String::new(), get(&m.extends))],
    );
    metric(
        "bento_lease_stops_total",
        "counter",
        "Functions sent SIGTERM at their deadline, by reason.",
        &[
            ("{reason=\"timeout\"}".into(), get(&m.stops_timeout)),
            ("{reason=\"idle\"}".into(), get(&m.stops_idle)),
        ],
    );
    metric(
        "bento_lease_kills_total",
        "counter",
        "Stopped functions still running when stop_grace was over, and killed.",
        &[(String::new(), get(&m.grace_kills))],
    );
    metric(
        "bento_pool_ready",
        "gauge",
        "Idle warm containers, by image.",
        &s.warm_ready
            .iter()
            .map(|(image, n)| (format!("{{image=\"{image}\"}}"), *n))
            .collect::<Vec<_>>(),
    );
    metric(
        "bento_pool_takes_total",
        "counter",
        "Sessions of pooled images by whether a warm container was ready.",
        &[
            ("{result=\"hit\"}".into(), get(&m.pool_hits)),
            ("{result=\"miss\"}".into(), get(&m.pool_misses)),
        ],
    );
    metric(
        "bento_docker_errors_total",
        "counter",
        "Docker Engine API calls that failed.",
        &[(String::new(), get(&m.docker_errors))],
    );
    let _ = writeln!(
        out,
        "# HELP bento_container_start_seconds Session start: container create, attach and start (none for a warm container) and code handover.\n# TYPE bento_container_start_seconds histogram"
    );
    for (i, le) in START_BUCKETS.iter().enumerate() {
        let _ = writeln!(
            out,
            "bento_container_start_seconds_bucket{{le=\"{le}\"}} {}",
            get(&m.start_buckets[i])
        );
    }
    let count = get(&m.start_count);
    let _ = writeln!(
        out,
        "bento_container_start_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(
        out,
        "bento_container_start_seconds_sum {}",
        get(&m.start_sum_us) as f64 / 1e6
    );
    let _ = writeln!(out, "bento_container_start_seconds_count {count}");
    let _ = writeln!(
        out,
        "# HELP bento_history_expired_total History records of reaped sessions dropped by retention (history_ttl, history_max).\n# TYPE bento_history_expired_total counter\nbento_history_expired_total {}",
        get(&m.history_expired)
    );
    usage::render(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        METRICS.observe_start(Duration::from_millis(150));
        let text = render(&Snapshot {
            running: 2,
            warm_ready: vec![("python".into(), 3)],
            ..Snapshot::default()
        });
        assert!(text.contains("bento_pool_ready{image=\"python\"} 3"));
        assert!(text.contains("bento_sessions{state=\"running\"} 2"));
        assert!(text.contains("# TYPE bento_container_start_seconds histogram"));
        assert!(text.contains("bento_container_start_seconds_bucket{le=\"0.2\"}"));
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap_or("");
            assert!(value.parse::<f64>().is_ok(), "bad sample line: {line}");
        }
    }
}
