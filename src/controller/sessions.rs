//! The live sessions, by token: creating them (container created, attached,
//! started, code handed over) and forgetting them when their actor reaps them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::controller::pool::{Pool, WarmContainer};
use crate::metrics;
use crate::runtime::{ContainerIo, ContainerSpec, Runtime, RuntimeError};
use crate::session::actor::{now_secs, Actor, ActorInit, ActorParts, SessionLimits, SessionMeta};
use crate::session::io::{self, InputProgress, StdinParts};
use crate::session::log::OutputLog;
use crate::session::store::{Db, DbError, SessionRow};
use crate::session::SessionHandle;
use crate::wire::api::LimitsRequest;
use crate::wire::api::{ExitInfo, FunctionInfo, SessionCreated, SessionInfo, SessionState};
use crate::wire::driver::KIND_START;

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("unknown image {0}")]
    UnknownImage(String),
    #[error("limits: {0}")]
    Limits(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("cannot hand the code to the container: {0}")]
    Handover(std::io::Error),
    #[error("the server is at capacity ({0} running sessions); try again later")]
    AtCapacity(usize),
    #[error(
        "the server holds {0} ended sessions whose output nobody has read \
         (max_ended_sessions); read them to the end (bento attach TOKEN; bento ls \
         lists them) or wait for session_ttl to reap them, then try again"
    )]
    TooManyEnded(usize),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A container's stdio and where its driver's streams stand.
pub(crate) struct AttachedIo {
    pub io: ContainerIo,
    /// Where in the driver's frame stream the output continues.
    pub offset: u64,
    pub progress: InputProgress,
    /// Inputs the function has consumed.
    pub consumed: u64,
}

/// What [`Registry::launch`] starts a session from.
pub(crate) struct Launch {
    pub row: SessionRow,
    pub log: OutputLog,
    /// The container's stdio; `None` when the container is gone or ended.
    pub io: Option<AttachedIo>,
    /// The function has ended (exit info, end time in seconds).
    pub exit: Option<(ExitInfo, u64)>,
    /// The log was recovered after a restart (see `ActorInit::restored`).
    pub restored: bool,
}

/// Counts a session being created until it is registered or has failed.
struct Starting<'a>(&'a AtomicUsize);

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub struct Registry {
    sessions: Mutex<HashMap<String, SessionHandle>>,
    /// Sessions whose function runs but whose driver is still being resumed
    /// after a controller restart (see `reconcile`), by token.
    resuming: Mutex<HashMap<String, SessionRow>>,
    db: Arc<Db>,
    /// Sessions being created, counted against `max_sessions` too.
    starting: AtomicUsize,
    runtime: Arc<dyn Runtime>,
    pool: Arc<Pool>,
    config: Arc<Config>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// A new session token: 256 bits from the OS's random source, as hex.
/// (Two v4 UUIDs give 244 random bits; the fixed version bits are dropped
/// from the count, not from the string.)
fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// A session being resumed, as far as the database knows it.
fn resuming_info(r: &SessionRow) -> SessionInfo {
    SessionInfo {
        token: r.token.clone(),
        id: r.id.clone(),
        function: r.function.clone(),
        function_name: r.function_name.clone(),
        image: r.image.clone(),
        state: SessionState::Resuming,
        transient: r.transient,
        attached: false,
        exit: None,
        pending_messages: 0,
        pending_bytes: 0,
        created_at: r.created_at,
        ended_at: None,
        last_seq: r.acked,
        spooled_bytes: 0,
        limits: r.limits.clone(),
        deadline: r.deadline,
        warm: r.warm,
    }
}

/// A short id for logs and container names. It is not a secret.
fn new_short_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("s-{}", &u[..10])
}

impl Registry {
    pub fn new(
        db: Arc<Db>,
        runtime: Arc<dyn Runtime>,
        config: Arc<Config>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Arc<Registry> {
        Arc::new(Registry {
            sessions: Mutex::new(HashMap::new()),
            resuming: Mutex::new(HashMap::new()),
            db,
            starting: AtomicUsize::new(0),
            pool: Pool::new(&config, runtime.clone()),
            runtime,
            config,
            shutdown,
            tracker,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionHandle>> {
        // Every update is one insert or remove; a poisoned map is still whole.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, token: &str) -> Option<SessionHandle> {
        self.lock().get(token).cloned()
    }

    pub fn all(&self) -> Vec<SessionHandle> {
        self.lock().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock_resuming(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionRow>> {
        // As `lock`: every update is one insert or remove.
        self.resuming.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a session as being resumed; it has no actor yet.
    pub(crate) fn set_resuming(&self, row: SessionRow) {
        self.lock_resuming().insert(row.token.clone(), row);
    }

    /// The session has been resumed (and launched) or has failed to.
    pub(crate) fn resumed(&self, token: &str) {
        self.lock_resuming().remove(token);
    }

    /// The short id of a session being resumed, if this token is one.
    pub fn resuming(&self, token: &str) -> Option<String> {
        self.lock_resuming().get(token).map(|r| r.id.clone())
    }

    /// What is known of the sessions being resumed, for listings: what the
    /// database says (their output counts are known once they are back).
    pub fn resuming_infos(&self) -> Vec<SessionInfo> {
        self.lock_resuming().values().map(resuming_info).collect()
    }

    /// The same, for one token.
    pub fn resuming_info(&self, token: &str) -> Option<SessionInfo> {
        self.lock_resuming().get(token).map(resuming_info)
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

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Starts filling the warm pools (after reconcile has removed what an
    /// earlier controller left).
    pub fn start_pool(&self) {
        self.pool.spawn(&self.tracker, &self.shutdown);
    }

    /// Creates a session. Its container comes from the image's warm pool
    /// when one is ready and the run asks for the pool's limits; otherwise
    /// it is created and attached *before* it starts (so a fast function's
    /// output is not lost). Either way the code and args are handed over as
    /// the driver's START frame, and the session's actor is spawned.
    pub async fn create(
        self: &Arc<Self>,
        function: &FunctionInfo,
        code: String,
        args: Vec<String>,
        transient: bool,
        limits: &LimitsRequest,
    ) -> Result<SessionCreated, CreateError> {
        let starting = self.starting.fetch_add(1, Ordering::AcqRel) + 1;
        let _starting = Starting(&self.starting);
        // Only running functions use the machine; an ended session holds
        // only its unread output, and is bounded on its own. Refusing,
        // rather than reaping the oldest ended session, never discards
        // output a client has not read.
        let (running, ended) = self.counts();
        let max = self.config.max_sessions;
        // Sessions being resumed after a restart run too.
        let resuming = self.lock_resuming().len();
        if running + resuming + starting > max {
            return Err(CreateError::AtCapacity(max));
        }
        if ended >= self.config.max_ended_sessions {
            return Err(CreateError::TooManyEnded(ended));
        }
        let image = self
            .config
            .images
            .get(&function.image)
            .ok_or_else(|| CreateError::UnknownImage(function.image.clone()))?;
        let limits = image.resolve_limits(limits).map_err(CreateError::Limits)?;
        let token = new_token();
        let id = new_short_id();
        let clock = std::time::Instant::now();
        let warm = self.pool.take(&image.name, &limits).await;
        let container = match &warm {
            Some(w) => w.container.clone(),
            None => {
                let prefix = &self.config.label_prefix;
                let labels = HashMap::from([
                    (format!("{prefix}.session"), id.clone()),
                    (format!("{prefix}.function"), function.id.clone()),
                    self.config.controller_label(),
                ]);
                let spec =
                    ContainerSpec::for_image(image, format!("bento-{id}"), labels, limits.clone());
                // A missing image is the engine's 404, reported as such.
                let created = self.runtime.create(&spec).await?;
                tracing::debug!(session = %id, elapsed = ?clock.elapsed(), "container created");
                created
            }
        };
        let created_at = now_secs();
        let row = SessionRow {
            token: token.clone(),
            id: id.clone(),
            function: function.id.clone(),
            function_name: function.name.clone(),
            image: image.name.clone(),
            transient,
            container: container.clone(),
            created_at,
            deadline: (!limits.timeout.is_zero()).then(|| created_at + limits.timeout.as_secs()),
            exit: None,
            ended_at: None,
            acked: 0,
            kill_reason: None,
            input_closed: false,
            limits: Some(limits.clone()),
            warm: warm.is_some(),
            // Recorded with the row, so short sessions never write it again.
            input_reserved: Some(io::INPUT_RESERVATION_STEP),
        };
        // Recorded before it starts, so a crash from here on leaves a
        // session to adopt rather than an orphan to remove.
        let started = match self.db.insert_session(&row) {
            Ok(()) => {
                self.start(&container, warm, &code, &args, &function.filename)
                    .await
            }
            Err(e) => Err(CreateError::Db(e)),
        };
        let container_io = match started {
            Ok(io) => io,
            Err(e) => {
                if let Err(re) = self.runtime.remove(&container).await {
                    tracing::warn!(session = %id, error = %re, "cannot remove failed container");
                }
                let _ = self.db.delete_session(&token);
                return Err(e);
            }
        };
        drop(code);
        metrics::METRICS.observe_start(clock.elapsed());
        metrics::add(&metrics::METRICS.sessions_created, 1);
        tracing::debug!(session = %id, warm = row.warm, elapsed = ?clock.elapsed(), "session started");
        let log = OutputLog::new(self.spool_path(&id), self.memory_window());
        self.launch(Launch {
            row,
            log,
            io: Some(AttachedIo {
                io: container_io,
                offset: 0,
                progress: InputProgress::default(),
                consumed: 0,
            }),
            exit: None,
            restored: false,
        });
        Ok(SessionCreated { token, id })
    }

    pub(crate) fn db(&self) -> &Arc<Db> {
        &self.db
    }

    pub(crate) fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub(crate) fn spool_path(&self, id: &str) -> PathBuf {
        self.config
            .data_dir
            .join("spool")
            .join(format!("{id}.spool"))
    }

    pub(crate) fn memory_window(&self) -> usize {
        usize::try_from(self.config.output_memory_window).unwrap_or(4 << 20)
    }

    /// Builds a session's channels, spawns its reader, stdin writer and
    /// actor, and registers it.
    pub(crate) fn launch(self: &Arc<Self>, l: Launch) {
        let Launch {
            row,
            log,
            io,
            exit,
            restored,
        } = l;
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (out_tx, out_rx) = mpsc::channel(16);
        let (ctl_tx, ctl_rx) = mpsc::channel(64);
        let (input_tx, input_rx) = mpsc::channel(64);
        let (acks_tx, acks_rx) = watch::channel(log.durable_offset());
        let output_closed = io.is_none();
        let ended = Arc::new(AtomicBool::new(exit.is_some()));
        let input = match io {
            Some(a) => {
                let progress = Arc::new(a.progress);
                let (credits_tx, credits_rx) = watch::channel(a.consumed);
                io::spawn_reader(
                    a.io.output,
                    out_tx,
                    credits_tx,
                    row.id.clone(),
                    a.offset,
                    &self.tracker,
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
                        db: self.db.clone(),
                        token: row.token.clone(),
                        // Old rows have no bound: the next input records one.
                        upto: row.input_reserved.unwrap_or(0),
                    },
                };
                io::spawn_stdin_writer(stdin, &self.tracker);
                progress
            }
            // No container to talk to: input is never applied.
            None => Arc::new(InputProgress::after(0, true)),
        };
        let meta = SessionMeta {
            id: row.id.clone(),
            token: row.token.clone(),
            function: row.function.clone(),
            function_name: row.function_name.clone(),
            image: row.image.clone(),
            transient: row.transient,
            container: row.container.clone(),
            created_at: row.created_at,
            deadline: row.deadline,
            limits: row.limits.clone(),
            warm: row.warm,
        };
        let limits = SessionLimits {
            memory_window: self.memory_window(),
            client_queue: self.config.client_queue,
            output_cap: self.config.output_cap,
            output_max_messages: self.config.output_max_messages,
            output_policy: self.config.output_policy,
            session_ttl: self.config.session_ttl,
            slow_client_timeout: self.config.slow_client_timeout,
            transient_grace: self.config.transient_grace,
        };
        let weak: Weak<Registry> = Arc::downgrade(self);
        let reaped_token = row.token.clone();
        let on_reaped = Box::new(move || {
            if let Some(r) = weak.upgrade() {
                r.lock().remove(&reaped_token);
            }
        });
        let actor = Actor::new(ActorInit {
            meta,
            limits,
            runtime: self.runtime.clone(),
            db: self.db.clone(),
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
            shutdown: self.shutdown.child_token(),
            tracker: self.tracker.clone(),
            on_reaped,
            kill_reason: row.kill_reason.clone(),
            exit,
            output_closed,
            restored,
            ended: ended.clone(),
        });
        self.lock().insert(
            row.token.clone(),
            SessionHandle {
                id: row.id.clone(),
                tx: cmd_tx,
                ended,
            },
        );
        self.tracker.spawn(actor.run());
    }

    /// Brings the container to a running driver (a warm one is there
    /// already) and hands it the code.
    async fn start(
        &self,
        container: &str,
        warm: Option<WarmContainer>,
        code: &str,
        args: &[String],
        filename: &str,
    ) -> Result<ContainerIo, CreateError> {
        let mut cio = match warm {
            Some(w) => w.io,
            None => {
                let clock = std::time::Instant::now();
                let cio = self.runtime.attach(container).await?;
                let attached = clock.elapsed();
                self.runtime.start(container).await?;
                tracing::debug!(?attached, started = ?clock.elapsed(), "container attached and started");
                cio
            }
        };
        let start = serde_json::json!({
            "code": code,
            "args": args,
            "filename": filename,
            "window": io::DRIVER_WINDOW,
            "max_inputs": io::MAX_INPUTS_IN_FLIGHT,
            "max_input_bytes": io::MAX_INPUT_BYTES_IN_FLIGHT,
        });
        let payload = serde_json::to_vec(&start).map_err(|e| CreateError::Handover(e.into()))?;
        if payload.len() > crate::wire::driver::MAX_PAYLOAD * 4 {
            return Err(CreateError::Handover(std::io::Error::other(
                "code too large",
            )));
        }
        io::write_message(&mut cio.input, KIND_START, &payload)
            .await
            .map_err(CreateError::Handover)?;
        Ok(cio)
    }
}
