//! The function's life as the actor sees it: running, being stopped or
//! killed (and why), ended; and the deadlines that end it or the session
//! apart from its lease (`lease`): a transient session's abandonment,
//! `session_ttl`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use super::shared::Env;
use crate::runtime::ContainerState;
use crate::session::io::ControlEvent;
use crate::session::record::now_secs;
use crate::wire::api::{ExitInfo, ExitReason};

pub(super) struct Lifecycle {
    /// How the function ended, once it has.
    exit: Option<ExitInfo>,
    /// When it ended: seconds since the epoch, and the instant
    /// `session_ttl` counts from.
    ended_at: Option<(u64, Instant)>,
    /// Why we are stopping or killing the container, if we are.
    kill_reason: Option<ExitReason>,
    /// The SIGKILL has been sent (a stop sends SIGTERM first).
    kill_sent: bool,
    /// See [`ActorInit::ended`](super::ActorInit::ended).
    ended: Arc<AtomicBool>,
}

impl Lifecycle {
    pub(super) fn new(
        exit: Option<(ExitInfo, u64)>,
        kill_reason: Option<ExitReason>,
        ended: Arc<AtomicBool>,
    ) -> Lifecycle {
        let now = now_secs();
        let ended_at = exit.as_ref().map(|(_, at)| {
            // An end before a restart counts from its own time for the ttl.
            let ago = Duration::from_secs(now.saturating_sub(*at));
            (
                *at,
                Instant::now().checked_sub(ago).unwrap_or_else(Instant::now),
            )
        });
        Lifecycle {
            exit: exit.map(|(e, _)| e),
            ended_at,
            kill_reason,
            kill_sent: false,
            ended,
        }
    }

    pub(super) fn running(&self) -> bool {
        self.exit.is_none()
    }

    pub(super) fn exit(&self) -> Option<&ExitInfo> {
        self.exit.as_ref()
    }

    /// When the function ended, in seconds since the epoch.
    pub(super) fn ended_at(&self) -> Option<u64> {
        self.ended_at.map(|(s, _)| s)
    }

    /// The container is being stopped or killed: its output is drained,
    /// not held.
    pub(super) fn killing(&self) -> bool {
        self.kill_reason.is_some()
    }

    /// Why it is being stopped or killed, if it is.
    pub(super) fn kill_reason(&self) -> Option<&ExitReason> {
        self.kill_reason.as_ref()
    }

    /// Records why the function is being ended, unless a reason is
    /// recorded already (the first one is the one kept). Saved first, so
    /// that a restart names the end for what it was.
    fn set_reason(&mut self, env: &Env, reason: ExitReason) {
        if self.kill_reason.is_some() {
            return;
        }
        if let Err(e) = env.db.set_kill_reason(&env.meta.token, &reason) {
            tracing::warn!(session = %env.meta.id, error = %e, "cannot save kill reason");
        }
        self.kill_reason = Some(reason);
    }

    /// Stops the function: records `reason` and sends it SIGTERM, which it
    /// may catch to save its work; the caller sends the kill after the
    /// grace. Returns false (and does nothing) if it has ended or is being
    /// stopped or killed already.
    pub(super) fn terminate(&mut self, env: &Env, reason: ExitReason) -> bool {
        if self.exit.is_some() || self.kill_reason.is_some() {
            return false;
        }
        self.set_reason(env, reason);
        let runtime = env.runtime.clone();
        let container = env.meta.container.clone();
        let session = env.meta.id.clone();
        env.tracker.spawn(async move {
            if let Err(e) = runtime.signal(&container, "SIGTERM").await {
                tracing::warn!(session = %session, error = %e, "SIGTERM failed");
            }
        });
        true
    }

    /// Kills the container, unless the function has ended or the kill is
    /// sent already. A function being stopped (SIGTERM sent, in its grace)
    /// is killed at once, and keeps the reason it was being stopped for.
    pub(super) fn kill(&mut self, env: &Env, reason: ExitReason) {
        if self.exit.is_some() || self.kill_sent {
            return;
        }
        self.set_reason(env, reason);
        self.kill_sent = true;
        let runtime = env.runtime.clone();
        let container = env.meta.container.clone();
        let session = env.meta.id.clone();
        let meter = env.usage.clone();
        // Tracked, and left to finish at shutdown: the kill reason is saved
        // already, and a kill cut short would leave the function running.
        env.tracker.spawn(async move {
            // A last sample beside the kill, not before it: the kill never
            // waits for the engine's stats. Polled first, a read of the
            // cgroup fs is done before the kill is even sent.
            let (_, killed) = tokio::join!(
                meter.sample(runtime.as_ref(), &container, &session),
                runtime.kill(&container)
            );
            if let Err(e) = killed {
                tracing::warn!(session = %session, error = %e, "kill failed");
            }
        });
    }

    /// The output stream has ended, so the container is exiting: polls
    /// its state until the engine reports the exit. Called once.
    pub(super) fn watch_exit(&self, env: &Env) {
        let runtime = env.runtime.clone();
        let container = env.meta.container.clone();
        let tx = env.ctl_tx.clone();
        let session = env.meta.id.clone();
        let meter = env.usage.clone();
        env.tracker.spawn(async move {
            let watch = async {
                // The function has returned and the driver is leaving: the
                // last sample, while the cgroup may still be there.
                meter.sample(runtime.as_ref(), &container, &session).await;
                let mut delay = Duration::from_millis(5);
                loop {
                    match runtime.state(&container).await {
                        Ok(ContainerState::Running) => {}
                        Ok(state) => {
                            let _ = tx.send(ControlEvent::Exited(state)).await;
                            return;
                        }
                        Err(e) => tracing::warn!(session = %session, error = %e, "inspect failed"),
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            };
            // Not beyond the actor, which alone holds the receiving end: a
            // container still running at shutdown would keep it polling.
            tokio::select! {
                _ = watch => {}
                _ = tx.closed() => {}
            }
        });
    }

    /// The engine reports the container's state. Returns the exit, the
    /// first time it shows the function has ended, once recorded.
    pub(super) fn exited(&mut self, env: &Env, state: ContainerState) -> Option<ExitInfo> {
        if self.exit.is_some() {
            return None;
        }
        let reason = exit_reason(self.kill_reason.take(), state)?;
        tracing::info!(session = %env.meta.id, %reason, "function ended");
        let mut info = ExitInfo::from(reason);
        info.usage = env.usage.finish();
        env.sampling.cancel();
        if let Some(u) = &info.usage {
            crate::metrics::observe_usage(&env.meta.image, u);
        }
        let ended_at = now_secs();
        if let Err(e) = env.db.set_exit(&env.meta.token, &info, ended_at) {
            tracing::warn!(session = %env.meta.id, error = %e, "cannot save exit");
        }
        self.exit = Some(info.clone());
        self.ended_at = Some((ended_at, Instant::now()));
        self.ended.store(true, Ordering::Release);
        Some(info)
    }

    /// When a transient session's function is killed for want of a client:
    /// `transient_grace` after the last one left (`detached_since`, `None`
    /// while one is attached).
    pub(super) fn abandoned_at(
        &self,
        env: &Env,
        detached_since: Option<Instant>,
    ) -> Option<Instant> {
        if !(env.meta.transient && self.running()) {
            return None;
        }
        detached_since.map(|t| t + env.limits.transient_grace)
    }

    pub(super) fn abandoned(&mut self, env: &Env) {
        tracing::info!(session = %env.meta.id, "transient session without a client: killing function");
        self.kill(env, ExitReason::Abandoned);
    }

    /// When an ended session is reaped with its output unread: `session_ttl`
    /// after the end, unless a client is attached.
    pub(super) fn ttl_at(&self, env: &Env, attached: bool) -> Option<Instant> {
        match (self.ended_at, attached) {
            (Some((_, at)), false) => Some(at + env.limits.session_ttl),
            _ => None,
        }
    }
}

/// Why a function ended: the reason the controller killed it for, or what
/// the engine says. `None` while it still runs.
pub fn exit_reason(kill_reason: Option<ExitReason>, state: ContainerState) -> Option<ExitReason> {
    Some(match (kill_reason, state) {
        (_, ContainerState::Running) => return None,
        (Some(r), _) => r,
        (None, ContainerState::Exited(x)) if x.oom_killed => ExitReason::OomKilled,
        (None, ContainerState::Exited(x)) if x.code > 128 && x.code <= 128 + 64 => {
            ExitReason::Signaled {
                signal: x.code - 128,
            }
        }
        (None, ContainerState::Exited(x)) => ExitReason::Exited { code: x.code },
        (None, ContainerState::Missing) => ExitReason::Lost {
            message: "container was removed".into(),
        },
        (None, ContainerState::NodeLost { node }) => ExitReason::NodeLost { node },
    })
}
