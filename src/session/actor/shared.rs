//! What every part of the actor reaches: the session's fixed facts and
//! services ([`Env`]), and the [`Core`] that adds the log and the lifecycle.

use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;

use super::lease::Lease;
use super::lifecycle::Lifecycle;
use super::{SessionLimits, SessionRecord};
use crate::runtime::{ContainerState, Runtime};
use crate::session::fork::{self, ForkSide};
use crate::session::io::{ControlEvent, InputProgress};
use crate::session::log::{Entry, OutputLog};
use crate::session::store::Db;
use crate::session::usage::Meter;
use crate::wire::api::ExitReason;
use std::sync::atomic::Ordering;
use tokio_util::sync::CancellationToken;

/// The session's fixed facts and the services it uses; nothing here
/// changes after creation, so every part may read it.
pub(super) struct Env {
    pub(super) meta: SessionRecord,
    pub(super) limits: SessionLimits,
    pub(super) runtime: Arc<dyn Runtime>,
    pub(super) db: Arc<Db>,
    /// Every task the session starts, so that shutdown waits for it.
    pub(super) tracker: TaskTracker,
    /// The durable output offset, for the stdin writer to ACK to the driver.
    pub(super) durable: watch::Sender<u64>,
    /// The actor's own control channel, for the exit watcher.
    pub(super) ctl_tx: mpsc::Sender<ControlEvent>,
    /// Resource usage, from the engine's samples.
    pub(super) usage: Arc<Meter>,
    /// Stops the sampler (at the function's exit).
    pub(super) sampling: CancellationToken,
    /// The input written so far, for the history.
    pub(super) input: Arc<InputProgress>,
}

/// What a session moved, for its history record. Counted in memory only:
/// a session recovered after a restart counts from there.
#[derive(Debug, Default)]
pub(super) struct Counts {
    pub(super) bytes_out: u64,
    pub(super) messages_out: u64,
    pub(super) reconnects: u64,
}

/// The log and the lifecycle, which delivery and intake both change, with
/// the facts they need to. A write to the spool can fail in either, and
/// then the function is killed at once (see [`Core::spool_result`]).
pub(super) struct Core {
    pub(super) env: Env,
    pub(super) log: OutputLog,
    pub(super) life: Lifecycle,
    /// The deadline, the idle timeout, the warning and the stop's grace.
    pub(super) lease: Lease,
    /// The newest output, acked or not, for read-only watchers.
    pub(super) recent: super::recent::Recent,
    /// Replay points, and a fork's replay (`session::fork`).
    pub(super) fork: ForkSide,
    pub(super) counts: Counts,
}

impl Core {
    /// The session's short id, for logs.
    pub(super) fn id(&self) -> &str {
        &self.env.meta.id
    }

    pub(super) fn kill(&mut self, reason: ExitReason) {
        self.life.kill(&self.env, reason);
    }

    /// Ends the function at its deadline or idle timeout: SIGTERM now, the
    /// kill after the image's `stop_grace` (at once without one).
    pub(super) fn stop(&mut self, reason: ExitReason) {
        if self.env.meta.stop_grace.is_zero() {
            self.kill(reason);
            self.lease.killed();
            return;
        }
        if self.life.terminate(&self.env, reason) {
            self.lease.stopping();
        } else {
            // Stopped or killed already, or ended: nothing more to wait for.
            self.lease.killed();
        }
    }

    /// After the log may have written to its spool: tells the driver what
    /// is durable now, or, if the spool failed, stops the function, since
    /// its output could no longer be kept.
    pub(super) fn spool_result(&mut self, result: std::io::Result<()>) {
        if let Err(e) = result {
            tracing::error!(session = %self.id(), error = %e, "spool write failed");
            self.kill(ExitReason::Lost {
                message: format!("cannot spool output: {e}"),
            });
            return;
        }
        let durable = self.log.durable_offset();
        self.env.durable.send_if_modified(|acked| {
            let newer = durable > *acked;
            if newer {
                *acked = durable;
            }
            newer
        });
    }

    /// After the fork part saw something: records a change of its state,
    /// starts the log where a fork goes live, and ends a fork that
    /// diverged when it is to be killed for it.
    pub(super) fn fork_settle(&mut self) {
        if let Some(state) = self.fork.take_changed() {
            if let Err(e) = self.env.db.set_fork_state(&self.env.meta.token, state) {
                tracing::warn!(session = %self.id(), error = %e, "cannot record the fork's state");
            }
            // Live, or diverged and going on: the log starts where the
            // swallowed output ended, so that a restart resumes the driver
            // there (what the driver was told is durable).
            if !self.fork.swallowing() {
                let at = *self.env.durable.borrow();
                let begun = self.log.begin_at(at);
                self.spool_result(begun);
            }
        }
        if let Some((input, kill)) = self.fork.take_diverged() {
            crate::metrics::add(&crate::metrics::METRICS.forks_diverged, 1);
            if kill {
                self.kill(ExitReason::Diverged { input });
            }
        }
    }

    /// Where the session stands, for a fork of it.
    pub(super) fn fork_source(
        &self,
        at_input: Option<u64>,
        applied: Option<u64>,
    ) -> Result<fork::Source, fork::Refused> {
        let history = self.fork.history().ok_or(fork::Refused::NotForkable)?;
        if self.fork.replaying() {
            return Err(fork::Refused::Replaying);
        }
        let kept = history.count.load(Ordering::Acquire);
        let applied = applied.unwrap_or(kept);
        let asked = at_input.unwrap_or(applied);
        if asked > applied {
            return Err(fork::Refused::BeyondApplied { asked, applied });
        }
        if asked > kept {
            return Err(fork::Refused::HistoryExceeded { asked, kept });
        }
        let now = self
            .fork
            .now(self.log.stream_offset())
            .ok_or(fork::Refused::NotForkable)?;
        Ok(fork::Source {
            record: self.env.meta.clone(),
            at_input: asked,
            now,
            paths: self.fork.paths.clone(),
        })
    }

    /// The engine reports the container's state: if it has ended, the
    /// function's end is recorded and goes into the log as its last entry.
    pub(super) fn on_exit(&mut self, state: ContainerState) {
        let Some(info) = self.life.exited(&self.env, state) else {
            return;
        };
        let offset = self.log.stream_offset();
        let appended = self.log.append(Entry::Exit(info.clone()), offset);
        if appended.is_ok() {
            self.recent.push(self.log.last_seq(), Entry::Exit(info));
        }
        self.spool_result(appended.map(drop));
    }
}
