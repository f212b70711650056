//! Creating a session: admission, a container (warm or new), the driver's
//! START, the durable record, and then [`Sessions::launch`].

use std::collections::HashMap;
use std::sync::Arc;

use super::pool::{Pool, WarmContainer};
use super::secrets::{SecretError, SecretStore};
use super::sessions::Sessions;
use crate::config::env::{self, Env};
use crate::config::Config;
use crate::metrics;
use crate::runtime::{ContainerIo, ContainerSpec, RuntimeError};
use crate::session::fork::Plan;
use crate::session::io::INPUT_RESERVATION_STEP;
use crate::session::record::{now_secs, RunEnv, SessionRecord};
use crate::session::spawn::{AttachedIo, Launch, SessionContext};
use crate::session::store::{DbError, SessionRow};
use crate::wire::api::{FunctionInfo, LimitsRequest, SessionCreated};
use crate::wire::driver::{self, Start, ToDriver};

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
    /// The environment asked for cannot be given (a bad name, a reserved
    /// one, an unknown secret); the message never holds a value.
    #[error("env: {0}")]
    Env(String),
    /// A secret exists but cannot be read.
    #[error(transparent)]
    Secret(SecretError),
}

/// What a new session is created from: the function and the run's request.
pub struct NewSession<'a> {
    pub function: &'a FunctionInfo,
    pub code: String,
    pub args: Vec<String>,
    pub transient: bool,
    pub limits: &'a LimitsRequest,
    /// Keep its input history, so that it can be forked.
    pub forkable: bool,
    /// It is a fork: what it replays.
    pub fork: Option<Plan>,
    /// Its own variables and secrets, over the image's `env:`.
    pub env: RunEnv,
    /// The tenant it belongs to.
    pub tenant: String,
}

/// Creates sessions. Cheap to share: it holds only handles.
pub struct Launcher {
    pub sessions: Arc<Sessions>,
    pub pool: Arc<Pool>,
    pub ctx: SessionContext,
    pub config: Arc<Config>,
    pub secrets: Arc<SecretStore>,
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

impl Launcher {
    /// A launcher with an empty live table and a warm pool per image (not
    /// filling yet: see `Pool::spawn`).
    pub fn new(config: Arc<Config>, ctx: SessionContext) -> Launcher {
        Launcher {
            sessions: Sessions::new(),
            pool: Pool::new(&config, ctx.runtime.clone()),
            ctx,
            secrets: Arc::new(SecretStore::new(&config.data_dir)),
            config,
        }
    }

    /// Creates a session. Its container comes from the image's warm pool
    /// when one is ready and the run asks for the pool's limits; otherwise
    /// it is created and attached *before* it starts (so a fast function's
    /// output is not lost). Either way the code and args are handed over as
    /// the driver's START frame, and the session's actor is spawned.
    pub async fn create(&self, new: NewSession<'_>) -> Result<SessionCreated, CreateError> {
        let _admitted = self.sessions.admit(&self.config)?;
        let function = new.function;
        let image = self
            .config
            .images
            .get(&function.image)
            .ok_or_else(|| CreateError::UnknownImage(function.image.clone()))?;
        let limits = image
            .resolve_limits(new.limits)
            .map_err(CreateError::Limits)?;
        let env = self.environment(&image.env, &new.env, &new.tenant)?;
        let token = new_token();
        let id = new_short_id();
        let clock = std::time::Instant::now();
        let runtime = &self.ctx.runtime;
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
                let created = runtime.create(&spec).await?;
                tracing::debug!(session = %id, elapsed = ?clock.elapsed(), "container created");
                created
            }
        };
        let created_at = now_secs();
        let record = SessionRecord {
            token: token.clone(),
            id: id.clone(),
            function: function.id.clone(),
            function_name: function.name.clone(),
            image: image.name.clone(),
            transient: new.transient,
            container: container.clone(),
            created_at,
            deadline: (!limits.timeout.is_zero()).then(|| created_at + limits.timeout.as_secs()),
            stop_grace: image.stop_grace,
            limits: Some(limits.clone()),
            warm: warm.is_some(),
            forkable: new.forkable && self.config.fork_history_max > 0,
            fork: new.fork.as_ref().map(|p| p.origin.clone()),
            args: new.args.clone(),
            env: new.env,
            tenant: new.tenant,
        };
        // The input bound is recorded with the row, so short sessions never
        // write it again.
        let row = SessionRow::new(record, Some(INPUT_RESERVATION_STEP));
        // Recorded before it starts, so a crash from here on leaves a
        // session to adopt rather than an orphan to remove.
        let started = match self.ctx.store.insert_session(&row) {
            Ok(()) => {
                let start = Start::new(&new.code, &new.args, &function.filename).with_env(&env);
                self.start(&container, warm, start).await
            }
            Err(e) => Err(CreateError::Db(e)),
        };
        let container_io = match started {
            Ok(io) => io,
            Err(e) => {
                if let Err(re) = runtime.remove(&container).await {
                    tracing::warn!(session = %id, error = %re, "cannot remove failed container");
                }
                let _ = self.ctx.store.delete_session(&token);
                return Err(e);
            }
        };
        drop(new.code);
        metrics::METRICS.observe_start(clock.elapsed());
        metrics::add(&metrics::METRICS.sessions_created, 1);
        tracing::debug!(session = %id, warm = row.record.warm, elapsed = ?clock.elapsed(), "session started");
        let launch = Launch {
            log: self.ctx.log(&id),
            row,
            io: Some(AttachedIo::new(container_io)),
            exit: None,
            restored: false,
            fork: new.fork,
        };
        self.sessions.launch(launch, &self.ctx);
        Ok(SessionCreated { token, id })
    }

    /// The function's environment: the image's, the run's, and the run's
    /// secrets read from the store now (so a fork gets their current
    /// values, and the session's record never holds one).
    fn environment(
        &self,
        image: &std::collections::BTreeMap<String, String>,
        run: &RunEnv,
        tenant: &str,
    ) -> Result<Env, CreateError> {
        if run.secrets.len() > env::MAX_VARS {
            return Err(CreateError::Env(format!(
                "{} secrets; the most is {}",
                run.secrets.len(),
                env::MAX_VARS
            )));
        }
        let mut secrets = Vec::with_capacity(run.secrets.len());
        let store = self.secrets.tenant(tenant);
        for s in &run.secrets {
            let value = store.get(&s.name).map_err(|e| match e {
                SecretError::Io(_) => CreateError::Secret(e),
                other => CreateError::Env(other.to_string()),
            })?;
            secrets.push((s.var().to_owned(), value));
        }
        Env::merge(image, &run.vars, secrets).map_err(CreateError::Env)
    }

    /// Brings the container to a running driver (a warm one is there
    /// already) and hands it the code.
    async fn start(
        &self,
        container: &str,
        warm: Option<WarmContainer>,
        start: Start<'_>,
    ) -> Result<ContainerIo, CreateError> {
        let runtime = &self.ctx.runtime;
        let mut cio = match warm {
            Some(w) => w.io,
            None => {
                let clock = std::time::Instant::now();
                let cio = runtime.attach(container).await?;
                let attached = clock.elapsed();
                runtime.start(container).await?;
                tracing::debug!(?attached, started = ?clock.elapsed(), "container attached and started");
                cio
            }
        };
        driver::write(&mut cio.input, &ToDriver::Start(start))
            .await
            .map_err(CreateError::Handover)?;
        Ok(cio)
    }
}
