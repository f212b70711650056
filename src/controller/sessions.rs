//! The live session table: the sessions this controller serves, by token,
//! and admission (how many may run). Creating a session is
//! [`create`](super::create); building one is [`session::spawn`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::create::CreateError;
use crate::config::Config;
use crate::session::record::Status;
use crate::session::spawn::{self, Launch, SessionContext};
use crate::session::store::SessionRow;
use crate::session::SessionHandle;
use crate::wire::api::{SessionInfo, SessionState};

#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, SessionHandle>>,
    /// Sessions whose function runs but whose driver is still being resumed
    /// after a controller restart (see `recovery`), by token.
    resuming: Mutex<HashMap<String, SessionRow>>,
    /// Sessions being created, counted against `max_sessions` too.
    starting: AtomicUsize,
}

/// A session being created holds one of these until it is registered or
/// has failed: it counts against `max_sessions` meanwhile.
pub struct Admitted<'a>(&'a AtomicUsize);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A session being resumed, as far as the database knows it.
fn resuming_info(r: &SessionRow) -> SessionInfo {
    r.record.info(Status {
        state: SessionState::Resuming,
        attached: false,
        exit: None,
        pending_messages: 0,
        pending_bytes: 0,
        ended_at: None,
        last_seq: r.acked,
        spooled_bytes: 0,
        fork_state: r.fork_state,
        usage: None,
        deadline: r.record.deadline,
        idle_deadline: None,
    })
}

impl Sessions {
    pub fn new() -> Arc<Sessions> {
        Arc::new(Sessions::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionHandle>> {
        // Every update is one insert or remove; a poisoned map is still whole.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_resuming(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionRow>> {
        // As `lock`: every update is one insert or remove.
        self.resuming.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, token: &str) -> Option<SessionHandle> {
        self.lock().get(token).cloned()
    }

    pub fn all(&self) -> Vec<SessionHandle> {
        self.lock().values().cloned().collect()
    }

    /// Sessions whose function runs (or is about to be killed), and
    /// sessions that ended with output unread, in that order.
    pub fn counts(&self) -> (usize, usize) {
        let sessions = self.lock();
        let ended = sessions
            .values()
            .filter(|h| h.ended.load(Ordering::Acquire))
            .count();
        (sessions.len() - ended, ended)
    }

    /// Admits one more session, or says why not. Only running functions
    /// use the machine; an ended session holds only its unread output, and
    /// is bounded on its own. Refusing, rather than reaping the oldest
    /// ended session, never discards output a client has not read.
    pub fn admit(&self, config: &Config) -> Result<Admitted<'_>, CreateError> {
        let starting = self.starting.fetch_add(1, Ordering::AcqRel) + 1;
        let admitted = Admitted(&self.starting);
        let (running, ended) = self.counts();
        // Sessions being resumed after a restart run too.
        let resuming = self.lock_resuming().len();
        if running + resuming + starting > config.max_sessions {
            return Err(CreateError::AtCapacity(config.max_sessions));
        }
        if ended >= config.max_ended_sessions {
            return Err(CreateError::TooManyEnded(ended));
        }
        Ok(admitted)
    }

    /// Builds a session ([`spawn::spawn`]) and registers it until it is
    /// reaped.
    pub fn launch(self: &Arc<Self>, launch: Launch, ctx: &SessionContext) {
        let token = launch.row.record.token.clone();
        let weak: Weak<Sessions> = Arc::downgrade(self);
        let reaped = token.clone();
        let on_reaped = Box::new(move || {
            if let Some(s) = weak.upgrade() {
                s.lock().remove(&reaped);
            }
        });
        let register = |h: &SessionHandle| {
            self.lock().insert(token, h.clone());
        };
        spawn::spawn(launch, ctx, register, on_reaped);
    }

    /// Marks a session as being resumed; it has no actor yet.
    pub fn set_resuming(&self, row: SessionRow) {
        self.lock_resuming().insert(row.record.token.clone(), row);
    }

    /// The session has been resumed (and launched) or has failed to.
    pub fn resumed(&self, token: &str) {
        self.lock_resuming().remove(token);
    }

    /// The short id of a session being resumed, if this token is one.
    pub fn resuming(&self, token: &str) -> Option<String> {
        self.lock_resuming().get(token).map(|r| r.record.id.clone())
    }

    /// What is known of a session being resumed, for listings: what the
    /// database says (its output counts are known once it is back).
    pub fn resuming_info(&self, token: &str) -> Option<SessionInfo> {
        self.lock_resuming().get(token).map(resuming_info)
    }

    /// The tenant of a session being resumed.
    pub fn resuming_tenant(&self, token: &str) -> Option<String> {
        self.lock_resuming()
            .get(token)
            .map(|r| r.record.tenant.clone())
    }

    /// [`resuming_info`](Self::resuming_info) of each of one tenant's
    /// sessions being resumed.
    pub fn resuming_infos_of(&self, tenant: &str) -> Vec<SessionInfo> {
        self.lock_resuming()
            .values()
            .filter(|r| r.record.tenant == tenant)
            .map(resuming_info)
            .collect()
    }

    /// A live session by its short id (`s-…`), which is not a secret: the
    /// API takes it where a viewer's listing gives it instead of tokens.
    pub fn by_id(&self, id: &str) -> Option<SessionHandle> {
        self.lock().values().find(|h| h.id == id).cloned()
    }

    /// The live sessions of one tenant.
    pub fn of_tenant(&self, tenant: &str) -> Vec<SessionHandle> {
        self.lock()
            .values()
            .filter(|h| &*h.tenant == tenant)
            .cloned()
            .collect()
    }
}
