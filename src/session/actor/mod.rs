//! The session actor: the only owner of a session's state.
//!
//! It serves commands (attach, acks, close, kill, info), takes the
//! container's output into the log, pushes the log to the attached client
//! through a bounded queue, notices the end of the function, and reaps the
//! session once the function has ended, all output is acknowledged and no
//! client is attached (or `session_ttl` has passed).
//!
//! This file holds the state and the loop. By concern: `output` takes the
//! container's output into the log (and decides when it waits for a
//! client's acks rather than going to the spool); `delivery` serves the
//! log to clients (attach, the queue to the attached client, its acks).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::io::{ControlEvent, InputProgress, OutputEvent};
use super::log::{Entry, OutputLog};
use super::{AttachError, Attached, ClientEvent, Command, InputItem, StillRunning, ToClient};
use crate::config::OutputPolicy;
use crate::metrics;
use crate::runtime::{ContainerState, Runtime};
use crate::session::store::Db;
use crate::wire::api::{
    CloseReason, ExitInfo, ExitReason, OutputFrame, OutputPage, PageMessage, ServerMsg,
    SessionInfo, SessionState,
};

mod delivery;
mod output;
mod takeover;

use output::QUIET_FLUSH;
pub(crate) use output::SPILL_GRACE;
#[cfg(test)]
pub(crate) use takeover::TAKEOVER_GRACE;

/// What a session is, fixed at creation.
#[derive(Debug, Clone)]
pub struct SessionMeta {
    pub id: String,
    pub token: String,
    pub function: String,
    pub function_name: Option<String>,
    pub image: String,
    pub transient: bool,
    pub container: String,
    pub created_at: u64,
    /// When the function's timeout fires, seconds since the epoch.
    pub deadline: Option<u64>,
    pub limits: Option<crate::wire::api::Limits>,
    /// Its container came from the warm pool.
    pub warm: bool,
}

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
}

/// The attached client, as the actor sees it.
struct Client {
    id: u64,
    tx: mpsc::Sender<ToClient>,
    close: Option<oneshot::Sender<CloseReason>>,
    /// Tells its connection that another client takes over (see `takeover`).
    replaced: Option<oneshot::Sender<()>>,
    /// The next seq to push to it.
    next_send: u64,
    /// Its queue was full; wait for room before pushing more.
    blocked: bool,
    /// When its queue last became full without room made since.
    blocked_since: Option<Instant>,
    /// The exit has been pushed to it.
    exit_sent: bool,
}

impl Client {
    fn close(mut self, reason: CloseReason) {
        if let Some(c) = self.close.take() {
            let _ = c.send(reason);
        }
    }
}

pub struct Actor {
    meta: SessionMeta,
    limits: SessionLimits,
    runtime: Arc<dyn Runtime>,
    db: Arc<Db>,
    log: OutputLog,
    /// The durable output offset, for the stdin writer to ACK to the driver.
    acks: watch::Sender<u64>,
    /// Acks not yet written to the database, and when they last were.
    acked_saved: (u64, Instant),
    /// End of input is recorded in the database.
    input_closed_saved: bool,
    cmd_rx: mpsc::Receiver<Command>,
    out_rx: mpsc::Receiver<OutputEvent>,
    ctl_rx: mpsc::Receiver<ControlEvent>,
    ctl_tx: mpsc::Sender<ControlEvent>,
    input_tx: mpsc::Sender<InputItem>,
    input: Arc<InputProgress>,
    client: Option<Client>,
    /// Another client attaches once this one has left (see `takeover`).
    takeover: Option<takeover::Takeover>,
    next_client_id: u64,
    /// Input ack not yet delivered to the client (its queue was full).
    input_ack: Option<u64>,
    /// Why we are killing the container, if we are.
    kill_reason: Option<ExitReason>,
    exit: Option<ExitInfo>,
    /// Since when no client has been attached (creation, at first).
    detached_since: Instant,
    /// The container's output stream has ended.
    output_closed: bool,
    /// When output last arrived (see [`QUIET_FLUSH`]).
    last_output: Instant,
    /// A frame that waits for the client's acks instead of being spooled
    /// (see [`SPILL_GRACE`]), and since when output has waited.
    held: Option<OutputEvent>,
    spill_wait: Option<Instant>,
    /// See [`ActorInit::restored`].
    restored: bool,
    ended_at: Option<(u64, Instant)>,
    deadline: Option<Instant>,
    shutdown: CancellationToken,
    /// Every task the session starts, so that shutdown waits for them.
    tracker: TaskTracker,
    /// Called once when the session is reaped, to forget it.
    on_reaped: Option<Box<dyn FnOnce() + Send>>,
    /// A removal asked for (see [`Command::Remove`]), answered once reaped.
    removing: Option<oneshot::Sender<Result<(), StillRunning>>>,
    /// See [`ActorInit::ended`].
    ended: Arc<AtomicBool>,
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
pub struct ActorInit {
    pub meta: SessionMeta,
    pub limits: SessionLimits,
    pub runtime: Arc<dyn Runtime>,
    pub db: Arc<Db>,
    pub log: OutputLog,
    pub parts: ActorParts,
    pub shutdown: CancellationToken,
    /// Where the session's tasks are spawned (the actor's own helpers,
    /// like its kill and exit watcher), so that shutdown waits for them.
    pub tracker: TaskTracker,
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
    /// Set when the function ends, for the registry's count of ended
    /// sessions (it starts out set when `exit` is).
    pub ended: Arc<AtomicBool>,
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Actor {
    pub fn new(init: ActorInit) -> Actor {
        let ActorInit {
            meta,
            limits,
            runtime,
            db,
            mut log,
            parts,
            shutdown,
            tracker,
            on_reaped,
            kill_reason,
            exit,
            output_closed,
            restored,
            ended,
        } = init;
        // Nobody is attached yet: nothing to serve from memory. (A new or
        // recovered log holds nothing unspooled, so this writes nothing.)
        if let Err(e) = log.set_window(0) {
            tracing::warn!(session = %meta.id, error = %e, "spool write failed");
        }
        let now = now_secs();
        let deadline = meta
            .deadline
            .map(|d| Instant::now() + Duration::from_secs(d.saturating_sub(now)));
        let ended_at = exit.as_ref().map(|(_, at)| {
            // An end before a restart counts from its own time for the ttl.
            let ago = Duration::from_secs(now.saturating_sub(*at));
            (
                *at,
                Instant::now().checked_sub(ago).unwrap_or_else(Instant::now),
            )
        });
        Actor {
            deadline,
            acked_saved: (log.acked(), Instant::now()),
            input_closed_saved: parts.input.closed.load(Ordering::Acquire),
            log,
            meta,
            limits,
            runtime,
            db,
            acks: parts.acks,
            cmd_rx: parts.cmd_rx,
            out_rx: parts.out_rx,
            ctl_rx: parts.ctl_rx,
            ctl_tx: parts.ctl_tx,
            input_tx: parts.input_tx,
            input: parts.input,
            client: None,
            takeover: None,
            next_client_id: 1,
            input_ack: None,
            kill_reason,
            exit: exit.map(|(e, _)| e),
            detached_since: Instant::now(),
            output_closed,
            last_output: Instant::now(),
            held: None,
            spill_wait: None,
            restored,
            ended_at,
            shutdown,
            tracker,
            on_reaped: Some(on_reaped),
            removing: None,
            ended,
        }
    }

    pub async fn run(mut self) {
        let id = self.meta.id.clone();
        tracing::info!(session = %id, container = %short(&self.meta.container), "session started");
        loop {
            // Acks may have made room for a frame that waits (or the
            // client left): try it again first.
            if let Some(ev) = self.held.take() {
                self.on_output(Some(ev));
            }
            self.pump();
            if let Some(reply) = self.removing.take() {
                self.reap("removed with its unread output").await;
                let _ = reply.send(Ok(()));
                return;
            }
            if self.reapable() {
                metrics::add(&metrics::METRICS.reaped_delivered, 1);
                self.reap("function ended and all output was delivered")
                    .await;
                return;
            }
            // Stop taking output at the cap, unless the container is being
            // killed anyway: then drain it so the exit can be recorded.
            let at_cap = self.log.pending_cost() >= self.limits.output_cap
                || self.log.pending_messages() >= self.limits.output_max_messages;
            if at_cap && self.limits.output_policy == OutputPolicy::Kill {
                self.kill(ExitReason::OutputCap);
            }
            let paused = (at_cap && self.kill_reason.is_none()) || self.held.is_some();
            let hold_until = self
                .spill_wait
                .filter(|_| self.held.is_some())
                .map(|t| t + SPILL_GRACE);
            // Not to a client being taken over: see `pump`.
            let blocked = self
                .client
                .as_ref()
                .filter(|c| c.blocked && self.takeover.is_none())
                .map(|c| c.tx.clone());
            let is_blocked = blocked.is_some();
            let takeover_at = self.takeover_deadline();
            let running = self.exit.is_none();
            let deadline = self.deadline.filter(|_| running);
            let slow_at = self
                .client
                .as_ref()
                .and_then(|c| c.blocked_since)
                .map(|t| t + self.limits.slow_client_timeout);
            let abandoned_at = match (&self.client, self.meta.transient && running) {
                (None, true) => Some(self.detached_since + self.limits.transient_grace),
                _ => None,
            };
            let ttl_at = match (self.ended_at, &self.client) {
                (Some((_, at)), None) => Some(at + self.limits.session_ttl),
                _ => None,
            };
            // Not while a frame waits for acks: output has not gone quiet.
            let flush_at = (self.log.unspooled_bytes() > 0 && self.held.is_none())
                .then(|| self.last_output + QUIET_FLUSH);
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    // The function keeps running; only our side goes away.
                    if let Some(c) = self.client.take() {
                        c.close(CloseReason::ServerShutdown);
                    }
                    self.abandon_takeover();
                    self.save_acked(true);
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
                _ = sleep_until(takeover_at), if takeover_at.is_some() => self.takeover_expired(),
                permit = reserve(blocked), if is_blocked => {
                    match permit {
                        Some(p) => self.send_one(p),
                        None => self.client_gone(false),
                    }
                }
                ev = self.out_rx.recv(), if !paused && !self.output_closed => self.on_output(ev),
                _ = sleep_until(deadline), if deadline.is_some() => {
                    tracing::info!(session = %id, "timeout: killing function");
                    self.kill(ExitReason::Timeout);
                    self.deadline = None;
                }
                // The grace is over: the top of the loop retries the frame,
                // and on_output sees the wait has expired and takes it in,
                // spooling the oldest output.
                _ = sleep_until(hold_until), if hold_until.is_some() => {}
                _ = sleep_until(flush_at), if flush_at.is_some() => {
                    let flushed = self.log.flush();
                    self.spool_result(flushed);
                }
                _ = sleep_until(slow_at), if slow_at.is_some() => {
                    self.close_client(CloseReason::SlowClient);
                }
                _ = sleep_until(abandoned_at), if abandoned_at.is_some() => {
                    tracing::info!(session = %id, "transient session without a client: killing function");
                    self.kill(ExitReason::Abandoned);
                }
                _ = sleep_until(ttl_at), if ttl_at.is_some() => {
                    tracing::warn!(
                        session = %id,
                        unread_messages = self.log.pending_messages(),
                        unread_bytes = self.log.pending_bytes(),
                        "session_ttl passed with output unread: discarding it"
                    );
                    metrics::add(&metrics::METRICS.reaped_ttl, 1);
                    self.reap("session_ttl passed").await;
                    return;
                }
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Attach { after, reply } => self.on_attach(after, reply),
            Command::Client { client, event } => {
                if self.client.as_ref().map(|c| c.id) != Some(client) {
                    return; // a stale event from a connection already replaced
                }
                match event {
                    ClientEvent::Ack(seq) => self.on_ack(seq),
                    ClientEvent::Detached => self.client_gone(true),
                    ClientEvent::Gone => self.client_gone(false),
                    ClientEvent::Protocol(message) => {
                        self.close_client(CloseReason::Protocol { message })
                    }
                }
            }
            Command::Close(reply) => {
                self.on_close();
                let _ = reply.send(());
            }
            Command::Kill(reply) => {
                self.kill(ExitReason::Killed);
                let _ = reply.send(());
            }
            Command::Info(reply) => {
                let _ = reply.send(self.info());
            }
            Command::Remove(reply) => {
                if self.exit.is_none() {
                    let _ = reply.send(Err(StillRunning));
                    return;
                }
                self.close_client(CloseReason::SessionGone);
                // Reaped at the top of the loop, which can await it.
                self.removing = Some(reply);
            }
            Command::Page {
                after,
                max_bytes,
                reply,
            } => {
                let _ = reply.send(self.page(after, max_bytes));
            }
        }
    }

    fn on_control(&mut self, ev: ControlEvent) {
        match ev {
            ControlEvent::InputApplied(seq) => {
                self.input_ack = Some(self.input_ack.map_or(seq, |s| s.max(seq)));
                if !self.input_closed_saved && self.input.closed.load(Ordering::Acquire) {
                    // So that a restarted controller never writes input
                    // after end of input.
                    if let Err(e) = self.db.set_input_closed(&self.meta.token) {
                        tracing::warn!(session = %self.meta.id, error = %e, "cannot save end of input");
                    }
                    self.input_closed_saved = true;
                }
            }
            ControlEvent::InputProtocol { client, message } => {
                if self.client.as_ref().map(|c| c.id) == Some(client) {
                    self.close_client(CloseReason::Protocol { message });
                }
            }
            ControlEvent::DriverProtocol(message) => {
                tracing::warn!(session = %self.meta.id, %message, "function broke the input protocol");
                self.kill(ExitReason::ProtocolError { message });
            }
            ControlEvent::Exited(state) => self.on_exit(state),
        }
    }

    /// The output stream has ended, so the container is exiting: poll its
    /// state until the engine reports the exit.
    fn watch_exit(&mut self) {
        if self.output_closed {
            return;
        }
        self.output_closed = true;
        let runtime = self.runtime.clone();
        let container = self.meta.container.clone();
        let tx = self.ctl_tx.clone();
        let session = self.meta.id.clone();
        self.tracker.spawn(async move {
            let watch = async {
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

    fn on_exit(&mut self, state: ContainerState) {
        if self.exit.is_some() {
            return;
        }
        let Some(reason) = exit_reason(self.kill_reason.take(), state) else {
            return;
        };
        tracing::info!(session = %self.meta.id, %reason, "function ended");
        let info = ExitInfo::from(reason);
        let ended_at = now_secs();
        if let Err(e) = self.db.set_exit(&self.meta.token, &info, ended_at) {
            tracing::warn!(session = %self.meta.id, error = %e, "cannot save exit");
        }
        self.exit = Some(info.clone());
        self.ended_at = Some((ended_at, Instant::now()));
        self.ended.store(true, Ordering::Release);
        let offset = self.log.stream_offset();
        let appended = self.log.append(Entry::Exit(info), offset);
        self.spool_result(appended.map(drop));
    }

    fn kill(&mut self, reason: ExitReason) {
        if self.exit.is_some() || self.kill_reason.is_some() {
            return;
        }
        if let Err(e) = self.db.set_kill_reason(&self.meta.token, &reason) {
            tracing::warn!(session = %self.meta.id, error = %e, "cannot save kill reason");
        }
        self.kill_reason = Some(reason);
        let runtime = self.runtime.clone();
        let container = self.meta.container.clone();
        let session = self.meta.id.clone();
        // Tracked, and left to finish at shutdown: the kill reason is saved
        // already, and a kill cut short would leave the function running.
        self.tracker.spawn(async move {
            if let Err(e) = runtime.kill(&container).await {
                tracing::warn!(session = %session, error = %e, "kill failed");
            }
        });
    }

    fn reapable(&self) -> bool {
        self.exit.is_some() && self.log.pending_messages() == 0 && self.client.is_none()
    }

    async fn reap(&mut self, why: &str) {
        if let Err(e) = self.runtime.remove(&self.meta.container).await {
            tracing::warn!(session = %self.meta.id, error = %e, "cannot remove container");
        }
        self.log.remove_spool();
        if let Err(e) = self.db.delete_session(&self.meta.token) {
            tracing::warn!(session = %self.meta.id, error = %e, "cannot forget session");
        }
        if let Some(f) = self.on_reaped.take() {
            f();
        }
        tracing::info!(session = %self.meta.id, why, "session reaped");
    }

    fn info(&self) -> SessionInfo {
        SessionInfo {
            token: self.meta.token.clone(),
            id: self.meta.id.clone(),
            function: self.meta.function.clone(),
            function_name: self.meta.function_name.clone(),
            image: self.meta.image.clone(),
            state: if self.exit.is_some() {
                SessionState::Ended
            } else {
                SessionState::Running
            },
            transient: self.meta.transient,
            attached: self.client.is_some(),
            exit: self.exit.clone(),
            pending_messages: self.log.pending_messages(),
            pending_bytes: self.log.pending_bytes(),
            created_at: self.meta.created_at,
            ended_at: self.ended_at.map(|(s, _)| s),
            last_seq: self.log.last_seq(),
            spooled_bytes: self.log.spooled_bytes(),
            limits: self.meta.limits.clone(),
            deadline: self.meta.deadline,
            warm: self.meta.warm,
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
    })
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

#[cfg(test)]
mod tests;
