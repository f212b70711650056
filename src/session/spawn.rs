//! Building a session: its channels, the two tasks serving its container's
//! stdio, and its actor. A new session and one recovered after a restart
//! are built the same way, from a [`Launch`].

use bytes::Bytes;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::actor::{Actor, ActorInit, ActorParts, SessionLimits};
use super::fork::history::InputHistory;
use super::fork::{ForkSide, Paths, Plan};
use super::io::{self, InputProgress, StdinParts};
use super::log::OutputLog;
use super::store::{Db, SessionRow};
use super::usage::{spawn_sampler, Meter};
use super::SessionHandle;
use crate::config::Config;
use crate::runtime::{ContainerIo, Runtime};
use crate::wire::api::ExitInfo;

/// What every session of a controller is built with.
#[derive(Clone)]
pub struct SessionContext {
    pub runtime: Arc<dyn Runtime>,
    pub store: Arc<Db>,
    pub limits: SessionLimits,
    /// Where sessions spool their output.
    pub spool_dir: PathBuf,
    pub shutdown: CancellationToken,
    /// Every task of every session is spawned on it, so that shutdown
    /// waits for them.
    pub tracker: TaskTracker,
    /// The bound on a session's input history (`fork_history_max`).
    pub fork_history_max: u64,
}

impl SessionContext {
    pub fn new(
        config: &Config,
        runtime: Arc<dyn Runtime>,
        store: Arc<Db>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> SessionContext {
        SessionContext {
            runtime,
            store,
            limits: SessionLimits::from_config(config),
            spool_dir: config.data_dir.join("spool"),
            shutdown,
            tracker,
            fork_history_max: config.fork_history_max,
        }
    }

    /// A new, empty output log for the session with this short id (or the
    /// one to recover, after a restart).
    pub fn log(&self, id: &str) -> OutputLog {
        OutputLog::new(
            self.spool_dir.join(format!("{id}.spool")),
            self.limits.memory_window,
        )
    }

    /// The log of a session recovered after a restart, from its spool.
    pub fn recover_log(&self, id: &str, acked: u64) -> std::io::Result<OutputLog> {
        OutputLog::recover(
            self.spool_dir.join(format!("{id}.spool")),
            self.limits.memory_window,
            acked,
        )
    }
}

/// A container's stdio and where its driver's streams stand.
pub struct AttachedIo {
    pub io: ContainerIo,
    /// Where in the driver's frame stream the output continues.
    pub offset: u64,
    pub progress: InputProgress,
    /// Inputs the function has consumed.
    pub consumed: u64,
}

impl AttachedIo {
    /// A driver that has just been handed START.
    pub fn new(io: ContainerIo) -> AttachedIo {
        AttachedIo {
            io,
            offset: 0,
            progress: InputProgress::default(),
            consumed: 0,
        }
    }
}

/// What a session starts from: a new one, or one recovered after a
/// controller restart.
pub struct Launch {
    pub row: SessionRow,
    pub log: OutputLog,
    /// The container's stdio; `None` when the container is gone or ended.
    pub io: Option<AttachedIo>,
    /// The function has ended (exit info, end time in seconds).
    pub exit: Option<(ExitInfo, u64)>,
    /// The log was recovered after a restart (see `ActorInit::restored`).
    pub restored: bool,
    /// A new fork's replay.
    pub fork: Option<Plan>,
}

/// Builds a session's channels, spawns its reader, stdin writer and actor,
/// and returns its handle.
///
/// `register` is given the handle before the actor starts, and `on_reaped`
/// is called once when the session is reaped: a session that is reaped at
/// once (recovered ended, with nothing unread) must be forgotten *after* it
/// was registered, never before.
pub fn spawn(
    launch: Launch,
    ctx: &SessionContext,
    register: impl FnOnce(&SessionHandle),
    on_reaped: Box<dyn FnOnce() + Send>,
) -> SessionHandle {
    let Launch {
        row,
        log,
        io,
        exit,
        restored,
        fork: plan,
    } = launch;
    let paths = Paths::new(&ctx.spool_dir, &row.record.id);
    // Opened for an ended session too: a fork of it reads the count.
    let mut history = row
        .record
        .forkable
        .then(|| InputHistory::open(paths.inputs.clone(), ctx.fork_history_max));
    let history_state = history.as_ref().map(|h| h.state());
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (out_tx, out_rx) = mpsc::channel(16);
    let (ctl_tx, ctl_rx) = mpsc::channel(64);
    let (input_tx, input_rx) = mpsc::channel(64);
    let (acks_tx, acks_rx) = watch::channel(log.durable_offset());
    let output_closed = io.is_none();
    let ended = Arc::new(AtomicBool::new(exit.is_some()));
    let replay: VecDeque<Bytes> = plan
        .as_ref()
        .map(|p| p.inputs.iter().cloned().collect())
        .unwrap_or_default();
    let input = match io {
        Some(a) => {
            let progress = Arc::new(match &plan {
                // Clients of a fork number their input on from its replay.
                Some(p) => InputProgress::after(p.inputs.len() as u64, false),
                None => a.progress,
            });
            let (credits_tx, credits_rx) = watch::channel(a.consumed);
            io::spawn_reader(
                a.io.output,
                out_tx,
                credits_tx,
                row.record.id.clone(),
                a.offset,
                &ctx.tracker,
            );
            let stdin = StdinParts {
                input: a.io.input,
                rx: input_rx,
                events: ctl_tx.clone(),
                progress: progress.clone(),
                acks: acks_rx,
                credits: credits_rx,
                consumed: a.consumed,
                reservation: io::InputReservation {
                    db: ctx.store.clone(),
                    token: row.record.token.clone(),
                    // Old rows have no bound: the next input records one.
                    upto: row.input_reserved.unwrap_or(0),
                },
                replay,
                history: history.take(),
            };
            io::spawn_stdin_writer(stdin, &ctx.tracker);
            progress
        }
        // No container to talk to: input is never applied.
        None => Arc::new(InputProgress::after(0, true)),
    };
    // The start is now for a new session; one recovered after a restart
    // started at its creation, as far as seconds tell.
    let ago = crate::session::record::now_secs().saturating_sub(row.record.created_at);
    let started = tokio::time::Instant::now()
        .checked_sub(std::time::Duration::from_secs(if restored {
            ago
        } else {
            0
        }))
        .unwrap_or_else(tokio::time::Instant::now);
    let usage = Meter::new(started);
    let sampling = ctx.shutdown.child_token();
    if !output_closed && exit.is_none() {
        spawn_sampler(
            usage.clone(),
            ctx.runtime.clone(),
            row.record.container.clone(),
            row.record.id.clone(),
            sampling.clone(),
            &ctx.tracker,
        );
    }
    let handle = SessionHandle {
        id: row.record.id.clone(),
        tenant: Arc::from(row.record.tenant.as_str()),
        memory: row.record.limits.as_ref().map_or(0, |l| l.memory),
        cpus: row.record.limits.as_ref().map_or(0.0, |l| l.cpus),
        tx: cmd_tx,
        ended: ended.clone(),
    };
    let fork = ForkSide::new(
        paths,
        history_state,
        restored,
        ctx.fork_history_max,
        row.fork_state,
        plan,
    );
    let actor = Actor::new(ActorInit {
        meta: row.record,
        ctx,
        log,
        parts: ActorParts {
            cmd_rx,
            out_rx,
            ctl_rx,
            ctl_tx,
            input_tx,
            input,
            acks: acks_tx,
        },
        on_reaped,
        kill_reason: row.kill_reason,
        exit,
        output_closed,
        restored,
        ended,
        fork,
        usage,
        sampling,
    });
    register(&handle);
    ctx.tracker.spawn(actor.run());
    handle
}
