//! Tenant quotas (docs/tenants.md): checked when a session starts (runs
//! and forks) and when a function is stored.
//!
//! Concurrent quotas (sessions, memory, CPUs, spool bytes) count what the
//! tenant holds now: its live sessions that have not ended, plus those
//! being created, which hold a [`Reservation`] until they are registered
//! or have failed. So a burst of concurrent starts cannot slip past a
//! quota between the check and the registration.
//!
//! Functions being stored hold a [`Reservation`] the same way, from the
//! check through the syntax check until the store has them, so that two
//! submits at the same instant cannot both take the last place.
//!
//! `starts_per_minute` is a sliding window of the last 60 s of starts per
//! tenant. Its memory is bounded by the quota itself: a window never holds
//! more entries than the quota allows.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Quotas;

const WINDOW: Duration = Duration::from_secs(60);
/// What `Retry-After` says for a quota that frees only when a session
/// ends: a polite polling interval, not a promise.
const CONCURRENT_RETRY: Duration = Duration::from_secs(5);

/// A quota refused a request: which, and what to tell the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub quota: &'static str,
    pub tenant: String,
    /// The quota's limit and what is in use (in the quota's unit), as
    /// text for the message.
    pub limit: String,
    pub used: String,
    pub wanted: String,
    pub retry_after: Duration,
    /// For `RateLimit-Limit`/`-Remaining`: the quota's whole-number limit
    /// and what is left of it (0 when refused).
    pub limit_n: u64,
}

impl Refusal {
    pub fn message(&self) -> String {
        format!(
            "quota {} of tenant {}: {} in use, {} asked, the quota is {}; retry after {} s",
            self.quota,
            self.tenant,
            self.used,
            self.wanted,
            self.limit,
            self.retry_after.as_secs()
        )
    }

    /// `RateLimit-Limit`, `-Remaining`, `-Reset` and `Retry-After`
    /// (draft-ietf-httpapi-ratelimit-headers, and RFC 9110).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let secs = self.retry_after.as_secs().max(1).to_string();
        vec![
            ("ratelimit-limit", self.limit_n.to_string()),
            ("ratelimit-remaining", "0".into()),
            ("ratelimit-reset", secs.clone()),
            ("retry-after", secs),
        ]
    }
}

/// What a new session would add.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ask {
    pub memory: u64,
    pub cpus: f64,
}

/// What a tenant holds now, apart from sessions being created.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Held {
    pub sessions: u64,
    pub memory: u64,
    pub cpus: f64,
    pub spool_bytes: u64,
}

#[derive(Default)]
struct Tenant {
    /// Sessions being created: their count, memory and CPUs.
    starting: Held,
    /// Functions being stored: their count and total size.
    storing: (u64, u64),
    /// Start times in the last minute.
    starts: VecDeque<Instant>,
}

#[derive(Default)]
pub struct QuotaTracker {
    tenants: Mutex<HashMap<String, Tenant>>,
}

/// A session being created, or a function being stored, counts against
/// its tenant's quotas until this is dropped (registered or stored, or
/// failed).
pub struct Reservation {
    tracker: Arc<QuotaTracker>,
    tenant: String,
    share: Share,
}

/// What a [`Reservation`] holds.
enum Share {
    Session(Ask),
    /// A function of this many bytes.
    Function(u64),
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut all = self.tracker.lock();
        let Some(t) = all.get_mut(&self.tenant) else {
            return;
        };
        match self.share {
            Share::Session(ask) => {
                t.starting.sessions = t.starting.sessions.saturating_sub(1);
                t.starting.memory = t.starting.memory.saturating_sub(ask.memory);
                t.starting.cpus = (t.starting.cpus - ask.cpus).max(0.0);
            }
            Share::Function(size) => {
                t.storing.0 = t.storing.0.saturating_sub(1);
                t.storing.1 = t.storing.1.saturating_sub(size);
            }
        }
    }
}

/// Makes the refusals of one tenant: quota, limit, in use, asked (as
/// text) and the limit as a number for `RateLimit-Limit`.
fn refuser(tenant: &str) -> impl Fn(&'static str, String, String, String, u64) -> Refusal + '_ {
    move |quota, limit, used, wanted, limit_n| Refusal {
        quota,
        tenant: tenant.to_string(),
        limit,
        used,
        wanted,
        retry_after: CONCURRENT_RETRY,
        limit_n,
    }
}

fn bytes(n: u64) -> String {
    crate::config::format_size(n)
}

impl QuotaTracker {
    pub fn new() -> Arc<QuotaTracker> {
        Arc::new(QuotaTracker::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tenant>> {
        // Every update is a few additions; a poisoned map is still whole.
        self.tenants.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks a new session against `q`, given what the tenant holds
    /// apart from sessions being created, and reserves its share if it
    /// fits. `held` is counted under this tracker's lock: a session that
    /// registers and then drops its reservation is so never missed by
    /// both (it may be seen by both for that instant, which only errs on
    /// the side of the quota).
    pub fn reserve(
        self: &Arc<Self>,
        tenant: &str,
        q: &Quotas,
        held: impl FnOnce() -> Held,
        ask: Ask,
    ) -> Result<Reservation, Box<Refusal>> {
        let now = Instant::now();
        let mut all = self.lock();
        let held = held();
        let t = all.entry(tenant.to_string()).or_default();
        while t
            .starts
            .front()
            .is_some_and(|s| now.duration_since(*s) >= WINDOW)
        {
            t.starts.pop_front();
        }
        let refuse = refuser(tenant);
        if let Some(max) = q.sessions {
            let used = held.sessions + t.starting.sessions;
            if used + 1 > max {
                return Err(Box::new(refuse(
                    "sessions",
                    max.to_string(),
                    used.to_string(),
                    "1".into(),
                    max,
                )));
            }
        }
        if let Some(max) = q.memory {
            let used = held.memory + t.starting.memory;
            if used.saturating_add(ask.memory) > max {
                return Err(Box::new(refuse(
                    "memory",
                    bytes(max),
                    bytes(used),
                    bytes(ask.memory),
                    max,
                )));
            }
        }
        if let Some(max) = q.cpus {
            let used = held.cpus + t.starting.cpus;
            // A little slack for sums of fractions such as 0.1 + 0.2.
            if used + ask.cpus > max + 1e-9 {
                return Err(Box::new(refuse(
                    "cpus",
                    format!("{max}"),
                    format!("{used}"),
                    format!("{}", ask.cpus),
                    max.ceil() as u64,
                )));
            }
        }
        if let Some(max) = q.spool_bytes {
            if held.spool_bytes >= max {
                return Err(Box::new(refuse(
                    "spool_bytes",
                    bytes(max),
                    bytes(held.spool_bytes),
                    "a new session".into(),
                    max,
                )));
            }
        }
        if let Some(max) = q.starts_per_minute {
            if t.starts.len() as u64 >= max {
                let oldest = t.starts.front().copied().unwrap_or(now);
                let wait = WINDOW.saturating_sub(now.duration_since(oldest));
                return Err(Box::new(Refusal {
                    retry_after: wait + Duration::from_millis(999),
                    ..refuse(
                        "starts_per_minute",
                        max.to_string(),
                        t.starts.len().to_string(),
                        "1".into(),
                        max,
                    )
                }));
            }
            t.starts.push_back(now);
        }
        t.starting.sessions += 1;
        t.starting.memory += ask.memory;
        t.starting.cpus += ask.cpus;
        Ok(Reservation {
            tracker: self.clone(),
            tenant: tenant.to_string(),
            share: Share::Session(ask),
        })
    }

    /// Checks storing a function of `size` bytes, given how many functions
    /// the tenant `held` in its store and their total size (counted under
    /// this tracker's lock, as for [`reserve`](Self::reserve)), and
    /// reserves its place if it fits.
    pub fn reserve_function(
        self: &Arc<Self>,
        tenant: &str,
        q: &Quotas,
        held: impl FnOnce() -> (u64, u64),
        size: u64,
    ) -> Result<Reservation, Box<Refusal>> {
        let mut all = self.lock();
        let held = held();
        let t = all.entry(tenant.to_string()).or_default();
        let used = (held.0 + t.storing.0, held.1.saturating_add(t.storing.1));
        check_function(tenant, q, used, size)?;
        t.storing.0 += 1;
        t.storing.1 = t.storing.1.saturating_add(size);
        Ok(Reservation {
            tracker: self.clone(),
            tenant: tenant.to_string(),
            share: Share::Function(size),
        })
    }

    /// Starts in the last minute, for `/metrics`.
    pub fn starts_last_minute(&self, tenant: &str) -> u64 {
        let now = Instant::now();
        self.lock().get(tenant).map_or(0, |t| {
            t.starts
                .iter()
                .filter(|s| now.duration_since(**s) < WINDOW)
                .count() as u64
        })
    }
}

/// Checks storing a function of `size` bytes, given how many the tenant
/// keeps and their total size.
fn check_function(
    tenant: &str,
    q: &Quotas,
    held: (u64, u64),
    size: u64,
) -> Result<(), Box<Refusal>> {
    let refuse = refuser(tenant);
    if let Some(max) = q.functions {
        if held.0 + 1 > max {
            return Err(Box::new(refuse(
                "functions",
                max.to_string(),
                held.0.to_string(),
                "1".into(),
                max,
            )));
        }
    }
    if let Some(max) = q.function_bytes {
        if held.1.saturating_add(size) > max {
            return Err(Box::new(refuse(
                "function_bytes",
                bytes(max),
                bytes(held.1),
                bytes(size),
                max,
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_starts_count_until_their_reservation_goes() {
        let t = QuotaTracker::new();
        let q = Quotas {
            sessions: Some(2),
            memory: Some(300),
            ..Quotas::default()
        };
        let ask = Ask {
            memory: 100,
            cpus: 0.5,
        };
        let a = t.reserve("a", &q, Held::default, ask).expect("first");
        let b = t.reserve("a", &q, Held::default, ask).expect("second");
        let r = t
            .reserve("a", &q, Held::default, ask)
            .err()
            .expect("third refused");
        assert_eq!(r.quota, "sessions");
        assert!(r
            .headers()
            .iter()
            .any(|(h, v)| *h == "retry-after" && v == "5"));
        // Another tenant is not affected.
        assert!(t.reserve("b", &q, Held::default, ask).is_ok());
        drop((a, b));
        // Registered now: held, no longer starting.
        let held = Held {
            sessions: 1,
            memory: 100,
            ..Held::default()
        };
        let _c = t.reserve("a", &q, || held, ask).expect("room again");
        let big = Ask {
            memory: 200,
            cpus: 0.0,
        };
        let held = Held {
            sessions: 0,
            memory: 100,
            ..Held::default()
        };
        let r = t.reserve("a", &q, || held, big).err().expect("memory");
        assert_eq!(r.quota, "memory");
    }

    #[test]
    fn starts_per_minute_is_a_window_and_says_when() {
        let t = QuotaTracker::new();
        let q = Quotas {
            starts_per_minute: Some(3),
            ..Quotas::default()
        };
        for _ in 0..3 {
            drop(
                t.reserve("a", &q, Held::default, Ask::default())
                    .expect("in quota"),
            );
        }
        let r = t
            .reserve("a", &q, Held::default, Ask::default())
            .err()
            .expect("fourth");
        assert_eq!(r.quota, "starts_per_minute");
        assert!(
            r.retry_after > Duration::from_secs(58) && r.retry_after <= Duration::from_secs(61)
        );
        assert_eq!(t.starts_last_minute("a"), 3);
    }

    #[test]
    fn functions_being_stored_hold_their_place() {
        let t = QuotaTracker::new();
        let q = Quotas {
            functions: Some(2),
            function_bytes: Some(10),
            ..Quotas::default()
        };
        let a = t
            .reserve_function("a", &q, || (1, 2), 3)
            .expect("the last place");
        // A second submit at the same instant sees the first one.
        let r = t
            .reserve_function("a", &q, || (1, 2), 3)
            .err()
            .expect("full");
        assert_eq!((r.quota, r.used.as_str()), ("functions", "2"));
        assert!(t.reserve_function("b", &q, || (1, 2), 3).is_ok());
        drop(a);
        // Stored now: in the store's count, no longer reserved.
        assert_eq!(
            t.reserve_function("a", &q, || (2, 5), 1)
                .err()
                .map(|r| r.quota),
            Some("functions")
        );
        let _b = t.reserve_function("a", &q, || (1, 5), 3).expect("room");
        assert_eq!(
            t.reserve_function("a", &q, || (0, 5), 3)
                .err()
                .map(|r| r.quota),
            Some("function_bytes"),
            "5 bytes stored and 3 being stored, 3 more asked of 10"
        );
    }

    #[test]
    fn function_quotas() {
        let q = Quotas {
            functions: Some(2),
            function_bytes: Some(10),
            ..Quotas::default()
        };
        assert!(check_function("a", &q, (1, 5), 5).is_ok());
        assert_eq!(
            check_function("a", &q, (2, 0), 1).err().map(|r| r.quota),
            Some("functions")
        );
        assert_eq!(
            check_function("a", &q, (1, 5), 6).err().map(|r| r.quota),
            Some("function_bytes")
        );
    }
}
