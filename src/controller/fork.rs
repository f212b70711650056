//! Forking a session (docs/fork.md): asks the parent where it stands,
//! reads its input history and replay points, works out the replay
//! ([`Plan`]) and creates the fork as a new session of the same function,
//! arguments, image and limits.

use super::create::{CreateError, Launcher, NewSession};
use super::function_store::FunctionStore;
use crate::session::fork::{history, points, Plan, Refused, Source};
use crate::session::record::ForkOrigin;
use crate::session::SessionHandle;
use crate::wire::api::{ForkSession, LimitsRequest, SessionCreated};

#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    #[error("{0}")]
    Refused(#[from] Refused),
    /// The parent was reaped meanwhile.
    #[error("session no longer exists")]
    Gone,
    #[error("the function {0} was deleted, so its sessions cannot be forked")]
    FunctionGone(String),
    #[error("cannot read the parent's input history: {0}")]
    History(std::io::Error),
    #[error("the parent's input history holds {kept} inputs, not the {asked} to replay")]
    Short { asked: u64, kept: u64 },
    #[error(transparent)]
    Create(#[from] CreateError),
}

/// Forks the session behind `parent`.
pub async fn fork(
    launcher: &Launcher,
    functions: &FunctionStore,
    parent: &SessionHandle,
    req: ForkSession,
) -> Result<SessionCreated, ForkError> {
    let source = parent
        .fork_source(req.at_input)
        .await
        .map_err(|_| ForkError::Gone)??;
    let Source {
        record,
        at_input,
        now,
        paths,
    } = source;
    // The files are read off the runtime's threads: a 16 MiB history is a
    // few milliseconds of disk.
    let wanted = now.points;
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let inputs = history::read(&paths.inputs, at_input)?;
        let points = match points::read(&paths.points, wanted) {
            Ok(p) => p,
            // No CREDIT yet: the function has taken no input.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok((inputs, points))
    })
    .await
    .map_err(|e| ForkError::History(std::io::Error::other(e)))?;
    let (inputs, points) = read.map_err(ForkError::History)?;
    if (inputs.len() as u64) < at_input {
        return Err(ForkError::Short {
            asked: at_input,
            kept: inputs.len() as u64,
        });
    }
    let function = functions
        .resolve(&record.tenant, &record.function)
        .ok_or_else(|| ForkError::FunctionGone(record.function.clone()))?;
    let code = functions
        .code(&function.id)
        .await
        .map_err(|_| ForkError::FunctionGone(record.function.clone()))?;
    let origin = ForkOrigin {
        parent: record.id.clone(),
        at_input,
    };
    let plan = Plan::new(
        origin,
        inputs,
        &points,
        &now,
        req.on_divergence.unwrap_or_default(),
    );
    // The parent's resolved limits, asked for again (a fresh timeout).
    let limits = record
        .limits
        .as_ref()
        .map(|l| LimitsRequest {
            memory: Some(l.memory),
            cpus: Some(l.cpus),
            pids: Some(l.pids),
            timeout: Some(l.timeout),
            idle_timeout: Some(l.idle_timeout),
        })
        .unwrap_or_default();
    let created = launcher
        .create(NewSession {
            function: &function,
            code,
            args: record.args.clone(),
            transient: record.transient,
            limits: &limits,
            forkable: true,
            fork: Some(plan),
            // The same variables and secrets (read again: a secret removed
            // since refuses the fork, naming it).
            env: record.env.clone(),
            tenant: record.tenant.clone(),
        })
        .await?;
    crate::metrics::add(&crate::metrics::METRICS.forks, 1);
    tracing::info!(session = %created.id, parent = %record.id, at_input, "session forked");
    Ok(created)
}
