//! `run(listener, config, shutdown)`: the whole controller, callable from
//! `bento serve` and from tests.

mod accept;
pub mod api;
pub(crate) mod check;
pub(crate) mod create;
pub(crate) mod fork;
pub(crate) mod function_store;
pub(crate) mod identity;
pub mod nofile;
pub(crate) mod pool;
pub(crate) mod recovery;
pub(crate) mod secrets;
pub(crate) mod sessions;
pub mod tenancy;

use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Engine};
use crate::controller::create::Launcher;
use crate::controller::function_store::FunctionStore;
use crate::controller::recovery::{reconcile, resume_all, Recovery};
use crate::runtime::{DockerRuntime, Runtime, SwarmRuntime};
use crate::session::spawn::SessionContext;
use crate::session::store::Db;
use api::AppState;
use tenancy::audit::AuditLog;
use tenancy::keys::KeyStore;

/// Serves the API on `listener` until `shutdown` is cancelled. Running
/// functions are left running; see `docs/` for what happens on restart.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let runtime: Arc<dyn Runtime> = match config.engine {
        Engine::Docker => {
            let docker = DockerRuntime::connect(config.docker_host.as_deref())
                .await
                .map_err(|e| anyhow::anyhow!("cannot connect to Docker: {e}"))?;
            docker
                .ping()
                .await
                .map_err(|e| anyhow::anyhow!("Docker does not answer: {e}"))?;
            if config.build_images_on_start {
                build_missing_images(&docker, &config).await?;
            }
            Arc::new(docker)
        }
        Engine::Swarm => {
            let swarm = SwarmRuntime::connect(&config.swarm, &config.label_prefix)
                .await
                .map_err(|e| anyhow::anyhow!("cannot reach the Swarm: {e}"))?;
            if config.build_images_on_start {
                tracing::warn!(
                    "build_images_on_start does nothing with engine: swarm; put the images \
                     on every node (docs/scale-out.md)"
                );
            }
            tracing::info!(manager = %config.swarm.manager, nodes = ?swarm.nodes(), "Swarm engine");
            Arc::new(swarm)
        }
    };
    run_with_runtime(listener, config, runtime, shutdown).await
}

/// Builds the configured function images that do not exist yet.
async fn build_missing_images(docker: &DockerRuntime, config: &Config) -> anyhow::Result<()> {
    for spec in config.images.values() {
        if docker.image_exists(&spec.tag()).await? {
            continue;
        }
        let (base, note) = crate::runtime::images::choose_base(docker.docker(), config, spec)
            .await
            .map_err(|e| anyhow::anyhow!("cannot build image {}: {e}", spec.name))?;
        if let Some(note) = note {
            tracing::warn!(image = %spec.name, "{note}");
        }
        tracing::info!(image = %spec.name, %base, "building missing function image");
        crate::runtime::images::build_image_from(docker.docker(), config, spec, &base, |line| {
            tracing::info!(image = %spec.name, "{}", line.trim_end());
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot build image {}: {e}", spec.name))?;
    }
    Ok(())
}

/// [`run`] with a given container runtime.
pub async fn run_with_runtime(
    listener: TcpListener,
    config: Config,
    runtime: Arc<dyn Runtime>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        anyhow::anyhow!("cannot create data dir {}: {e}", config.data_dir.display())
    })?;
    // Held until this function returns: one controller per data dir.
    let _lock = identity::lock(&config.data_dir)?;
    let keys = KeyStore::open(&config.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the tenants database in {}: {e}",
            config.data_dir.display()
        )
    })?;
    // Once any key was made, every request needs one (even if all are
    // revoked since): keys are never optional again by accident.
    let keyed = config.api_key.is_some() || keys.has_keys();
    if !addr.ip().is_loopback() && !keyed && config.allow_unauthenticated {
        tracing::warn!(%addr, "serving without an API key (allow_unauthenticated)");
    }
    if !addr.ip().is_loopback() && !keyed && !config.allow_unauthenticated {
        anyhow::bail!(
            "refusing to listen on {addr} without an API key: set BENTO_API_KEY, api_key or \
             api_key_file, or make keys with `bento keys create` (only loopback addresses may \
             run without one)"
        );
    }
    let mut config = config;
    config.controller_id = identity::load_or_create(&config.data_dir)?;
    let functions = FunctionStore::open(&config.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot open function store in {}: {e}",
            config.data_dir.display()
        )
    })?;
    let db = Db::open(&config.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the state database in {}: {e}",
            config.data_dir.display()
        )
    })?;
    db.set_retention(crate::session::history::Retention {
        ttl: config.history_ttl,
        max: config.history_max,
    });
    let config = Arc::new(config);
    let tracker = TaskTracker::new();
    let ctx = SessionContext::new(
        &config,
        runtime.clone(),
        Arc::new(db),
        shutdown.clone(),
        tracker.clone(),
    );
    let launcher = Launcher::new(config.clone(), ctx);
    // Secrets are files only the controller's user may read: said again at
    // every start, in case the directory was copied or restored loosely.
    launcher.secrets.ensure_private().map_err(|e| {
        anyhow::anyhow!(
            "cannot make the secret store {}/secrets private: {e}",
            config.data_dir.display()
        )
    })?;
    let recovery = Recovery::new(&launcher);
    // Before serving: every session the database knows is live again, ended
    // or marked as resuming, and no orphan container is left. The drivers
    // of running sessions are resumed while the API serves.
    let (_, pending) = reconcile(&recovery).await?;
    tracker.spawn(resume_all(recovery, pending, shutdown.clone()));
    // Filled only now that reconcile has removed what an earlier
    // controller left.
    launcher.pool.spawn(&tracker, &shutdown);
    tracker.spawn(crate::mem::trim::run(shutdown.clone()));
    let checker = check::Checker::new(runtime, &config, tracker.clone());
    let audit = AuditLog::open(&config.data_dir, config.audit_max_bytes);
    let state = Arc::new(AppState {
        checker,
        config,
        functions,
        sessions: launcher.sessions.clone(),
        audit,
        quotas: tenancy::quota::QuotaTracker::new(),
        keys,
        launcher,
        shutdown: shutdown.clone(),
    });
    let settings = connection_settings(&state.config);
    tracing::info!(
        %addr,
        auth = keyed,
        controller = %state.config.controller_id,
        max_connections = settings.max_connections,
        "bento controller listening"
    );
    let app = api::router(state);
    accept::serve(listener, app, settings, shutdown).await;
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// The connection cap (`max_connections`, else derived from the open-file
/// limit as it is now) and the header timeout.
fn connection_settings(config: &Config) -> accept::Settings {
    let max_connections = config.max_connections.unwrap_or_else(|| {
        let soft = match nofile::limits() {
            Ok((soft, _)) => soft,
            Err(e) => {
                // 1024 is the usual soft limit when nothing raised it.
                tracing::warn!(error = %e, "cannot read the open-file limit; assuming 1024");
                1024
            }
        };
        nofile::default_max_connections(soft, config.max_sessions)
    });
    accept::Settings {
        max_connections,
        header_timeout: config.header_timeout,
    }
}
