//! What a session used, as the engine measured it, and the record kept of
//! a session once it is reaped (`GET /v1/history`).

use serde::{Deserialize, Serialize};

use super::{ExitInfo, Limits};

/// A session's resource usage, measured by the container engine (never by
/// anything inside the container, which the function controls). See
/// `docs/usage.md` for the sources and their accuracy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Usage {
    /// CPU time in user mode, in milliseconds.
    pub cpu_user_ms: u64,
    /// CPU time in kernel mode, in milliseconds.
    pub cpu_system_ms: u64,
    /// The most memory the container's cgroup held, in bytes.
    pub peak_memory_bytes: u64,
    /// The most processes (pids) the container had at once, as sampled.
    pub peak_pids: u64,
    /// Wall time from the session's start to the function's exit (so far,
    /// while it runs), in milliseconds.
    pub wall_ms: u64,
    /// How the peak memory was obtained: `max_usage` (the cgroup v1
    /// high-water mark), `memory.peak` (cgroup v2's) or `sampled` (the
    /// highest of the samples: a lower bound).
    #[serde(default)]
    pub peak_memory_source: String,
    /// Engine samples taken; 0 means the figures are unknown.
    #[serde(default)]
    pub samples: u64,
}

impl Usage {
    /// CPU seconds, user and system together.
    pub fn cpu_secs(&self) -> f64 {
        (self.cpu_user_ms + self.cpu_system_ms) as f64 / 1000.0
    }
}

/// The state a history listing shows: live ones come from
/// `GET /v1/sessions`, reaped ones from the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HistoryState {
    Reaped,
}

/// What is kept of a session once it is reaped: everything but its output
/// and its token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HistoryRecord {
    /// The session's short id (never its token).
    pub id: String,
    /// Always `reaped`.
    pub state: HistoryState,
    pub function: String,
    pub function_name: Option<String>,
    pub image: String,
    /// `transient` or `persistent`.
    pub kind: String,
    pub limits: Option<Limits>,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// When the function was handed its code (the session's start).
    pub started_at: u64,
    pub ended_at: Option<u64>,
    pub reaped_at: u64,
    /// Why it was reaped, in words.
    pub reaped_why: String,
    pub exit: Option<ExitInfo>,
    /// Input payload bytes and messages written to the function.
    pub bytes_in: u64,
    pub messages_in: u64,
    /// Output payload bytes and messages taken from the function.
    pub bytes_out: u64,
    pub messages_out: u64,
    /// Attaches after the first one.
    pub reconnects: u64,
    pub usage: Option<Usage>,
}

/// `GET /v1/history` answer: reaped sessions, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HistoryPage {
    pub sessions: Vec<HistoryRecord>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next: Option<String>,
}
