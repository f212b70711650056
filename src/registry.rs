//! The live sessions, by token: creating them (container created, attached,
//! started, code handed over) and forgetting them when their actor reaps them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, LimitsRequest};
use crate::driver_frame::KIND_START;
use crate::protocol::{FunctionInfo, SessionCreated};
use crate::runtime::{ContainerSpec, Runtime, RuntimeError};
use crate::session::actor::{now_secs, Actor, ActorParts, SessionLimits, SessionMeta};
use crate::session::{io, SessionHandle};

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
    #[error("the server is at capacity ({0} live sessions); try again later")]
    AtCapacity(usize),
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
    /// Sessions being created, counted against `max_sessions` too.
    starting: AtomicUsize,
    runtime: Arc<dyn Runtime>,
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

/// A short id for logs and container names. It is not a secret.
fn new_short_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("s-{}", &u[..10])
}

impl Registry {
    pub fn new(
        runtime: Arc<dyn Runtime>,
        config: Arc<Config>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Arc<Registry> {
        Arc::new(Registry {
            sessions: Mutex::new(HashMap::new()),
            starting: AtomicUsize::new(0),
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

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    /// Creates a session: creates the container, attaches to it *before*
    /// starting it (so a fast function's output is not lost), starts it,
    /// hands over the code and args as the driver's START frame, and spawns
    /// the session's actor.
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
        let max = self.config.max_sessions;
        if self.len() + starting > max {
            return Err(CreateError::AtCapacity(max));
        }
        let image = self
            .config
            .images
            .get(&function.image)
            .ok_or_else(|| CreateError::UnknownImage(function.image.clone()))?;
        let limits = image.resolve_limits(limits).map_err(CreateError::Limits)?;
        let tag = image.tag();
        if !self.runtime.image_exists(&tag).await? {
            return Err(RuntimeError::ImageMissing(tag, image.name.clone()).into());
        }
        let token = new_token();
        let id = new_short_id();
        let prefix = &self.config.label_prefix;
        let spec = ContainerSpec {
            name: format!("bento-{id}"),
            image: tag,
            image_name: image.name.clone(),
            labels: HashMap::from([
                (format!("{prefix}.session"), id.clone()),
                (format!("{prefix}.function"), function.id.clone()),
            ]),
            limits: limits.clone(),
            sandbox: image.sandbox.clone(),
        };
        let container = self.runtime.create(&spec).await?;
        let started = self.start(&container, &code, &args).await;
        let mut container_io = match started {
            Ok(io) => io,
            Err(e) => {
                if let Err(re) = self.runtime.remove(&container).await {
                    tracing::warn!(session = %id, error = %re, "cannot remove failed container");
                }
                return Err(e);
            }
        };
        drop(code);

        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (out_tx, out_rx) = mpsc::channel(16);
        let (ctl_tx, ctl_rx) = mpsc::channel(64);
        let (input_tx, input_rx) = mpsc::channel(64);
        let input = Arc::new(io::InputProgress::default());
        let output = std::mem::replace(
            &mut container_io.output,
            Box::pin(futures_util::stream::empty()),
        );
        io::spawn_reader(output, out_tx, id.clone());
        io::spawn_stdin_writer(container_io.input, input_rx, ctl_tx.clone(), input.clone());

        let timeout = limits.timeout;
        let meta = SessionMeta {
            id: id.clone(),
            token: token.clone(),
            function: function.id.clone(),
            function_name: function.name.clone(),
            image: image.name.clone(),
            transient,
            container,
            created_at: now_secs(),
            timeout: (!timeout.is_zero()).then_some(timeout),
        };
        let session_limits = SessionLimits {
            memory_window: usize::try_from(self.config.output_memory_window).unwrap_or(4 << 20),
            client_queue: self.config.client_queue,
            output_cap: self.config.output_cap,
            output_policy: self.config.output_policy,
            session_ttl: self.config.session_ttl,
            slow_client_timeout: self.config.slow_client_timeout,
            transient_grace: self.config.transient_grace,
        };
        let weak: Weak<Registry> = Arc::downgrade(self);
        let reaped_token = token.clone();
        let on_reaped = Box::new(move || {
            if let Some(r) = weak.upgrade() {
                r.lock().remove(&reaped_token);
            }
        });
        let parts = ActorParts {
            cmd_rx,
            out_rx,
            ctl_rx,
            ctl_tx,
            input_tx,
            input,
        };
        let spool = self
            .config
            .data_dir
            .join("spool")
            .join(format!("{id}.spool"));
        let actor = Actor::new(
            meta,
            session_limits,
            self.runtime.clone(),
            spool,
            parts,
            self.shutdown.child_token(),
            on_reaped,
        );
        self.lock().insert(
            token.clone(),
            SessionHandle {
                id: id.clone(),
                tx: cmd_tx,
            },
        );
        self.tracker.spawn(actor.run());
        Ok(SessionCreated { token, id })
    }

    async fn start(
        &self,
        container: &str,
        code: &str,
        args: &[String],
    ) -> Result<crate::runtime::ContainerIo, CreateError> {
        let mut cio = self.runtime.attach(container).await?;
        self.runtime.start(container).await?;
        let start = serde_json::json!({
            "code": code,
            "args": args,
            "filename": "function.py",
        });
        let payload = serde_json::to_vec(&start).map_err(|e| CreateError::Handover(e.into()))?;
        io::write_message(&mut cio.input, KIND_START, &payload)
            .await
            .map_err(CreateError::Handover)?;
        Ok(cio)
    }
}
