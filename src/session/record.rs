//! What a session is: one [`SessionRecord`], fixed at creation. The
//! database row ([`SessionRow`](super::store::SessionRow)) is the record
//! plus what changes durably; the API's [`SessionInfo`] is the record plus
//! what the session's actor knows now ([`Status`]).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::wire::api::{
    ExitInfo, ForkInfo, ForkState, Limits, SecretUse, SessionInfo, SessionState,
};

/// A session, as fixed at creation.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// The secret that names it to clients. Never logged.
    pub token: String,
    /// Short id, safe to log and show.
    pub id: String,
    pub function: String,
    pub function_name: Option<String>,
    pub image: String,
    pub transient: bool,
    pub container: String,
    pub created_at: u64,
    /// When the function's timeout ends it, seconds since the epoch. Fixed
    /// at creation but for `extend`, which moves it (in the row too).
    pub deadline: Option<u64>,
    /// Between the SIGTERM that stops it at its deadline (or idle timeout)
    /// and the kill: its image's `stop_grace`, as at creation.
    pub stop_grace: std::time::Duration,
    pub limits: Option<Limits>,
    /// Its container came from the warm pool.
    pub warm: bool,
    /// Its arguments, kept so that a fork runs with the same.
    pub args: Vec<String>,
    /// It keeps its input history (see `session::fork`).
    pub forkable: bool,
    /// It is a fork of another session.
    pub fork: Option<ForkOrigin>,
    /// What the run asked to have in its environment, kept so that a fork
    /// gets the same: its own variables, and its secrets by name (their
    /// values are read from the secret store again, never kept here).
    pub env: RunEnv,
    /// The tenant it belongs to: only keys of that tenant see it.
    pub tenant: String,
}

/// A run's own environment: `bento run -e` and `--secret`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunEnv {
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    #[serde(default)]
    pub secrets: Vec<SecretUse>,
}

/// Where a fork comes from; fixed at creation, like the rest of the record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ForkOrigin {
    /// The parent's short id.
    pub parent: String,
    /// The parent's inputs replayed.
    pub at_input: u64,
}

/// What changes while a session lives, as the API shows it.
#[derive(Debug, Clone)]
pub struct Status {
    pub state: SessionState,
    pub attached: bool,
    pub exit: Option<ExitInfo>,
    pub pending_messages: u64,
    pub pending_bytes: u64,
    pub ended_at: Option<u64>,
    pub last_seq: u64,
    pub spooled_bytes: u64,
    /// A fork's replay, as it stands.
    pub fork_state: Option<ForkState>,
    /// Resource usage: live while it runs, final once it has ended.
    pub usage: Option<crate::wire::api::Usage>,
    /// The deadline as it stands (`extend` moves it).
    pub deadline: Option<u64>,
    /// When the idle timeout would end it, if nothing happens till then.
    pub idle_deadline: Option<u64>,
}

impl SessionRecord {
    /// The API's view of the session.
    pub fn info(&self, s: Status) -> SessionInfo {
        SessionInfo {
            token: self.token.clone(),
            id: self.id.clone(),
            function: self.function.clone(),
            function_name: self.function_name.clone(),
            image: self.image.clone(),
            state: s.state,
            transient: self.transient,
            attached: s.attached,
            exit: s.exit,
            pending_messages: s.pending_messages,
            pending_bytes: s.pending_bytes,
            created_at: self.created_at,
            ended_at: s.ended_at,
            last_seq: s.last_seq,
            spooled_bytes: s.spooled_bytes,
            usage: s.usage,
            limits: self.limits.clone(),
            deadline: s.deadline,
            idle_deadline: s.idle_deadline,
            warm: self.warm,
            forkable: self.forkable,
            fork: match (&self.fork, s.fork_state) {
                (Some(o), Some(state)) => Some(ForkInfo {
                    parent: o.parent.clone(),
                    at_input: o.at_input,
                    state,
                }),
                _ => None,
            },
            env: self.env.vars.keys().cloned().collect(),
            secrets: self.env.secrets.clone(),
        }
    }
}

/// Seconds since the epoch, as records keep time.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
