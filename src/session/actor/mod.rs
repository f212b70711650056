//! The session actor: the only owner of a session's state.
//!
//! It serves commands (attach, acks, close, kill, info), takes the
//! container's output into the log, pushes the log to the attached client
//! through a bounded queue, notices the end of the function, and reaps the
//! session once the function has ended, all output is acknowledged and no
//! client is attached (or `session_ttl` has passed).
//!
//! # Parts
//!
//! The state is in owned parts, each a struct with its own methods:
//! - **delivery** (`delivery`; `delivery/queue` for the bounded queue to
//!   the client, `delivery/takeover` for the handover from one client to
//!   the next): the attached client, its queue, its acks, and the input
//!   acks it is owed;
//! - **intake** (`intake`): the container's output into the log, the frame
//!   that waits for a client's acks rather than being spooled, the flush
//!   once output goes quiet;
//! - **lifecycle** (`lifecycle`): the function's exit, the reason it is
//!   being stopped or killed, and the deadlines that end it or the session
//!   apart from its lease (a transient session's abandonment,
//!   `session_ttl`);
//! - **lease** (`lease`, docs/leases.md): the deadline `extend` moves, the
//!   idle timeout, the warning before the deadline, and the grace between
//!   the SIGTERM of a stop and the kill.
//!
//! `Core` (`shared`) holds what the parts share: the log, the lifecycle,
//! the lease, and `Env`, the session's fixed facts and services (metadata, limits,
//! engine, database, tracker).
//!
//! The loop here only picks the next event and hands it to the part it
//! concerns. It waits on one timer for all the deadlines but one
//! (`next_wakeup`, in `wakeup`); the takeover's has its own place in the
//! `select!`, ahead of output (see `run`).
//!
//! # Borrowing
//!
//! Delivery and intake methods take `&mut self` for their own state and
//! `&mut Core` for the log and the lifecycle (with `Env`), rather than the
//! whole actor, or the log and the lifecycle one by one. One reason rules
//! it: a spool write can fail in any part (delivery grows and shrinks the
//! log's memory window and applies acks; intake appends), and a failed
//! spool kills the function at once, where it happened (see
//! `Core::spool_result`): the first kill reason is the one recorded, so
//! the kill cannot wait for the loop to come round. Every method that may
//! write to the spool therefore needs the log and the lifecycle together,
//! and `&mut Core` says so once. Methods that only read the log take
//! `&OutputLog`. What a part needs to know of another (whether a client is
//! attached, since when none is) it is given as a value by the loop, so no
//! part holds or borrows another, and `Actor`'s methods are the only place
//! where parts meet.
//!
//! Every task a session starts (its kill, its exit watcher, and the reader
//! and stdin writer of [`super::io`]) is spawned on the controller's
//! tracker, and ends with the actor at the latest, except a kill, which is
//! left to finish: shutdown waits for all of them.

use std::ops::ControlFlow;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::fork::ForkSide;
use super::io::{ControlEvent, InputProgress, OutputEvent};
use super::log::OutputLog;
use super::record::Status;
use super::{Command, InputItem, StillRunning, ToClient};
use crate::config::OutputPolicy;
use crate::metrics;
use crate::wire::api::{CloseReason, ExitInfo, ExitReason, SessionInfo, SessionState};
use delivery::Delivery;
use intake::Intake;
use lease::Lease;
use lifecycle::Lifecycle;
use shared::{Core, Env};

mod delivery;
pub(crate) use delivery::TAKEOVER_GRACE;
mod intake;
mod lease;
mod lifecycle;
mod recent;
mod record;
mod shared;
#[cfg(test)]
mod tests;
mod wakeup;

#[cfg(test)]
pub(crate) use intake::SPILL_GRACE;
pub use lifecycle::exit_reason;

use super::record::SessionRecord;
use super::spawn::SessionContext;

/// Tunables from the server config.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    pub memory_window: usize,
    pub client_queue: usize,
    /// Unacknowledged output at which the container stops being read (its
    /// cost: payload plus the overhead of each entry).
    pub output_cap: u64,
    /// Unacknowledged messages at which the container stops being read.
    pub output_max_messages: u64,
    pub output_policy: OutputPolicy,
    pub session_ttl: Duration,
    /// A client whose queue stays full this long is detached as too slow.
    pub slow_client_timeout: Duration,
    /// Transient sessions: how long the function survives without a client.
    pub transient_grace: Duration,
    /// How long before its timeout an attached client is warned; zero: never.
    pub deadline_warning: Duration,
}

impl SessionLimits {
    pub fn from_config(config: &crate::config::Config) -> SessionLimits {
        SessionLimits {
            memory_window: usize::try_from(config.output_memory_window).unwrap_or(4 << 20),
            client_queue: config.client_queue,
            output_cap: config.output_cap,
            output_max_messages: config.output_max_messages,
            output_policy: config.output_policy,
            session_ttl: config.session_ttl,
            slow_client_timeout: config.slow_client_timeout,
            transient_grace: config.transient_grace,
            deadline_warning: config.deadline_warning,
        }
    }
}

/// The channels an actor is built from; see [`super::io`].
pub struct ActorParts {
    pub cmd_rx: mpsc::Receiver<Command>,
    pub out_rx: mpsc::Receiver<OutputEvent>,
    pub ctl_rx: mpsc::Receiver<ControlEvent>,
    pub ctl_tx: mpsc::Sender<ControlEvent>,
    pub input_tx: mpsc::Sender<InputItem>,
    pub input: Arc<InputProgress>,
    pub acks: watch::Sender<u64>,
}

/// Everything an actor starts from: a new session, or one restored after a
/// controller restart (with its log recovered and perhaps already ended).
pub struct ActorInit<'a> {
    pub meta: SessionRecord,
    /// The controller's limits, engine, store, shutdown and tracker (the
    /// session's own tasks, its kill and exit watcher, are spawned on it,
    /// so that shutdown waits for them).
    pub ctx: &'a SessionContext,
    pub log: OutputLog,
    pub parts: ActorParts,
    /// Called once when the session is reaped, to forget it.
    pub on_reaped: Box<dyn FnOnce() + Send>,
    /// Why the controller was killing the function before a restart.
    pub kill_reason: Option<ExitReason>,
    /// The function has ended (exit info, end time in seconds).
    pub exit: Option<(ExitInfo, u64)>,
    /// The container's output is over (it is gone or has exited).
    pub output_closed: bool,
    /// The log was recovered after a controller restart. Its last seq may
    /// then be behind what clients were sent before the crash: output that
    /// was not yet durable, which the driver sends again under the same
    /// seqs.
    pub restored: bool,
    /// Set when the function ends, for the live table's count of ended
    /// sessions (it starts out set when `exit` is).
    pub ended: Arc<AtomicBool>,
    /// Its replay points, and a fork's replay.
    pub fork: ForkSide,
    /// Its resource usage, and what stops the sampler feeding it.
    pub usage: Arc<crate::session::usage::Meter>,
    pub sampling: CancellationToken,
}

pub struct Actor {
    core: Core,
    delivery: Delivery,
    intake: Intake,
    cmd_rx: mpsc::Receiver<Command>,
    out_rx: mpsc::Receiver<OutputEvent>,
    ctl_rx: mpsc::Receiver<ControlEvent>,
    shutdown: CancellationToken,
    /// Called once when the session is reaped, to forget it.
    on_reaped: Option<Box<dyn FnOnce() + Send>>,
    /// A removal asked for (see [`Command::Remove`]), answered once reaped.
    removing: Option<oneshot::Sender<Result<(), StillRunning>>>,
}

impl Actor {
    pub fn new(init: ActorInit<'_>) -> Actor {
        let ActorInit {
            meta,
            ctx,
            mut log,
            parts,
            on_reaped,
            kill_reason,
            exit,
            output_closed,
            restored,
            ended,
            fork,
            usage,
            sampling,
        } = init;
        // Nobody is attached yet: nothing to serve from memory. (A new or
        // recovered log holds nothing unspooled, so this writes nothing.)
        if let Err(e) = log.set_window(0) {
            tracing::warn!(session = %meta.id, error = %e, "spool write failed");
        }
        let idle = meta
            .limits
            .as_ref()
            .map(|l| l.idle_timeout)
            .unwrap_or_default();
        // A stop under way before a restart (a reason recorded, no exit
        // yet) is given its grace again, then the kill.
        let stopping = kill_reason.is_some() && exit.is_none();
        let lease = Lease::new(meta.deadline, idle, meta.stop_grace, stopping);
        let life = Lifecycle::new(exit, kill_reason, ended);
        let input = parts.input.clone();
        let delivery = Delivery::new(&log, parts.input_tx, parts.input, restored);
        let env = Env {
            meta,
            limits: ctx.limits.clone(),
            runtime: ctx.runtime.clone(),
            db: ctx.store.clone(),
            tracker: ctx.tracker.clone(),
            durable: parts.acks,
            ctl_tx: parts.ctl_tx,
            usage,
            sampling,
            input,
        };
        Actor {
            core: Core {
                env,
                log,
                life,
                lease,
                recent: Default::default(),
                fork,
                counts: Default::default(),
            },
            delivery,
            intake: Intake::new(output_closed),
            cmd_rx: parts.cmd_rx,
            out_rx: parts.out_rx,
            ctl_rx: parts.ctl_rx,
            shutdown: ctx.shutdown.child_token(),
            on_reaped: Some(on_reaped),
            removing: None,
        }
    }

    pub async fn run(mut self) {
        let meta = &self.core.env.meta;
        tracing::info!(session = %meta.id, container = %short(&meta.container), "session started");
        loop {
            if self.settle().await.is_break() {
                return;
            }
            let accepting = self.intake.accepting(&mut self.core);
            let blocked = self.delivery.blocked_client();
            let is_blocked = blocked.is_some();
            let takeover_at = self.delivery.takeover_deadline();
            let wake_at = self.next_wakeup();
            // Biased: the first arm ready wins. A takeover's expiry does not
            // wait behind output; the other timers do, and behind a client's
            // room (a slow client that gets room is not dropped).
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    self.delivery.shut_down(&mut self.core);
                    return;
                }
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => return,
                },
                ev = self.ctl_rx.recv() => {
                    if let Some(ev) = ev {
                        self.on_control(ev);
                    }
                }
                _ = sleep_until(takeover_at), if takeover_at.is_some() => {
                    self.delivery.takeover_expired(&mut self.core);
                }
                permit = reserve(blocked), if is_blocked => match permit {
                    Some(p) => self.delivery.send_one(&mut self.core, p),
                    None => self.queue_dropped(),
                },
                ev = self.out_rx.recv(), if accepting => {
                    self.core.lease.touch();
                    self.intake.on_output(&mut self.core, self.delivery.attached(), ev);
                }
                _ = sleep_until(wake_at), if wake_at.is_some() => {
                    if self.on_wakeup().await.is_break() {
                        return;
                    }
                }
            }
        }
    }

    /// Before each wait: retries the frame that waits, pushes the client
    /// what it can take, and reaps the session if it is over (`Break`).
    async fn settle(&mut self) -> ControlFlow<()> {
        // Acks may have made room for a frame that waits (or the client
        // left): try it again first.
        self.intake
            .retry_held(&mut self.core, self.delivery.attached());
        self.warn();
        self.delivery.pump(&mut self.core);
        if let Some(reply) = self.removing.take() {
            self.reap("removed with its unread output").await;
            let _ = reply.send(Ok(()));
            return ControlFlow::Break(());
        }
        let core = &self.core;
        if !core.life.running() && core.log.pending_messages() == 0 && !self.delivery.attached() {
            metrics::add(&metrics::METRICS.reaped_delivered, 1);
            self.reap("function ended and all output was delivered")
                .await;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn on_command(&mut self, cmd: Command) {
        let core = &mut self.core;
        match cmd {
            Command::Attach { after, reply } => self.delivery.on_attach(core, after, reply),
            Command::Client { client, event } => self.delivery.on_client_event(core, client, event),
            Command::Close(reply) => {
                self.delivery.on_close(core);
                let _ = reply.send(());
            }
            Command::Kill(reply) => {
                core.kill(ExitReason::Killed);
                let _ = reply.send(());
            }
            Command::Extend { by, max, reply } => {
                let _ = reply.send(self.extend(by, max));
            }
            Command::Info(reply) => {
                let _ = reply.send(self.info());
            }
            Command::Remove(reply) => {
                if core.life.running() {
                    let _ = reply.send(Err(StillRunning));
                    return;
                }
                self.delivery.close_client(core, CloseReason::SessionGone);
                // Reaped at the top of the loop, which can await it.
                self.removing = Some(reply);
            }
            Command::ForkPoint { at_input, reply } => {
                // An ended session (perhaps recovered, with no stdin writer
                // to ask) applied everything its history holds.
                let applied = core.life.running().then(|| self.delivery.inputs_applied());
                let _ = reply.send(core.fork_source(at_input, applied));
            }
            Command::Page {
                after,
                max_bytes,
                reply,
            } => {
                let _ = reply.send(delivery::page(core, after, max_bytes));
            }
        }
    }

    fn on_control(&mut self, ev: ControlEvent) {
        let core = &mut self.core;
        match ev {
            ControlEvent::InputApplied(seq) => {
                core.lease.touch();
                self.delivery.on_input_applied(core, seq);
            }
            ControlEvent::InputProtocol { client, message } => {
                if self.delivery.is_client(client) {
                    self.delivery
                        .close_client(core, CloseReason::Protocol { message });
                }
            }
            ControlEvent::DriverProtocol(message) => {
                tracing::warn!(session = %core.id(), %message, "function broke the input protocol");
                core.kill(ExitReason::ProtocolError { message });
            }
            ControlEvent::Exited(state) => core.on_exit(state),
            ControlEvent::ReplayFed => {
                core.fork.on_fed();
                core.fork_settle();
            }
        }
    }

    async fn reap(&mut self, why: &str) {
        let kept = self.core.history_record(why);
        let Core { env, log, fork, .. } = &mut self.core;
        // The record first: a crash between the two leaves the session and
        // its record, and recovery reaps it again (the insert replaces).
        if let Err(e) = env
            .db
            .insert_history(&env.meta.token, &env.meta.tenant, &kept)
        {
            tracing::warn!(session = %env.meta.id, error = %e, "cannot keep the session's history");
        }
        if let Err(e) = env.runtime.remove(&env.meta.container).await {
            tracing::warn!(session = %env.meta.id, error = %e, "cannot remove container");
        }
        log.remove_spool();
        fork.paths.remove();
        if let Err(e) = env.db.delete_session(&env.meta.token) {
            tracing::warn!(session = %env.meta.id, error = %e, "cannot forget session");
        }
        if let Some(f) = self.on_reaped.take() {
            f();
        }
        tracing::info!(session = %env.meta.id, why, "session reaped");
    }

    fn info(&self) -> SessionInfo {
        let (log, life) = (&self.core.log, &self.core.life);
        let lease = &self.core.lease;
        self.core.env.meta.info(Status {
            deadline: lease.deadline(),
            idle_deadline: life
                .running()
                .then(|| lease.idle_deadline(self.delivery.detached_since()))
                .flatten(),
            state: if life.running() {
                SessionState::Running
            } else {
                SessionState::Ended
            },
            attached: self.delivery.attached(),
            exit: life.exit().cloned(),
            pending_messages: log.pending_messages(),
            pending_bytes: log.pending_bytes(),
            ended_at: life.ended_at(),
            last_seq: log.last_seq(),
            spooled_bytes: log.spooled_bytes(),
            fork_state: self.core.fork.state(),
            usage: match life.exit() {
                Some(e) => e.usage.clone(),
                None => self.core.env.usage.usage(),
            },
        })
    }
}

impl Actor {
    /// The attached client's connection dropped its queue. Whatever that
    /// connection sent before it ended (its final acks, its `detach`) is in
    /// the command queue already: it is taken first. (`select!` may find
    /// the queue closed while the command queue looks empty: once the task
    /// has used its scheduling budget, a receive says "not yet" and the
    /// closed queue is seen first. The final ack was then taken as a stale
    /// event, and the next attach got acknowledged output again.)
    fn queue_dropped(&mut self) {
        let client = self.delivery.client_id();
        while let Ok(cmd) = self.cmd_rx.try_recv() {
            self.on_command(cmd);
        }
        if client.is_some_and(|id| self.delivery.is_client(id)) {
            self.delivery.client_gone(&mut self.core, false);
        }
    }
}

async fn reserve(tx: Option<mpsc::Sender<ToClient>>) -> Option<mpsc::OwnedPermit<ToClient>> {
    match tx {
        Some(tx) => tx.reserve_owned().await.ok(),
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The first 12 characters of a container id, as `docker ps` shows it.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
