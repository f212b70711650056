//! Calls to the manager and the nodes: the clients (TLS or, when allowed,
//! plain TCP) and the deadline every call runs under.

use bollard::errors::Error as DockerError;
use bollard::Docker;
use std::future::Future;
use std::time::Duration;

use crate::config::TlsFiles;
use crate::runtime::{Result, RuntimeError};

/// The client-side timeout bollard applies per request. Attach streams stay
/// open for as long as a function runs, so it must not cut them; every
/// other call gets [`within`]'s deadline instead.
const NO_TIMEOUT_SECS: u64 = 365 * 24 * 3600;

/// A call that failed, kept apart from [`RuntimeError`] so that callers can
/// tell "not there" and "did not answer" from the rest.
#[derive(Debug)]
pub(super) enum CallError {
    /// No answer within the deadline.
    Deadline {
        what: String,
        after: Duration,
    },
    Docker(DockerError),
}

impl CallError {
    /// The engine answered 404.
    pub(super) fn is_not_found(&self) -> bool {
        matches!(self, CallError::Docker(e) if crate::runtime::docker::is_not_found(e))
    }

    /// The engine answered with this HTTP status.
    pub(super) fn status(&self) -> Option<u16> {
        match self {
            CallError::Docker(DockerError::DockerResponseServerError { status_code, .. }) => {
                Some(*status_code)
            }
            _ => None,
        }
    }

    /// No answer at all: a deadline, a refused or broken connection.
    pub(super) fn is_unreachable(&self) -> bool {
        self.status().is_none()
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Deadline { what, after } => {
                write!(f, "{what}: no answer within {}s", after.as_secs_f64())
            }
            CallError::Docker(e) => write!(f, "{e}"),
        }
    }
}

impl From<CallError> for RuntimeError {
    fn from(e: CallError) -> RuntimeError {
        crate::metrics::add(&crate::metrics::METRICS.docker_errors, 1);
        RuntimeError::Engine(e.to_string())
    }
}

/// Runs one engine call with a deadline; `what` names it in the error.
pub(super) async fn within<T>(
    deadline: Duration,
    what: impl Into<String>,
    call: impl Future<Output = std::result::Result<T, DockerError>>,
) -> std::result::Result<T, CallError> {
    match tokio::time::timeout(deadline, call).await {
        Ok(r) => r.map_err(CallError::Docker),
        Err(_) => Err(CallError::Deadline {
            what: what.into(),
            after: deadline,
        }),
    }
}

/// A client of the engine at `endpoint` (`tcp://HOST:PORT`): TLS with the
/// client files, or plain TCP when there are none (the config allows that
/// only with `allow_plain_tcp`). The API version is negotiated, since the
/// engines may be older than bollard's default, within `deadline`.
pub(super) async fn connect(
    endpoint: &str,
    tls: Option<&TlsFiles>,
    deadline: Duration,
) -> Result<Docker> {
    let docker = match tls {
        Some(t) => Docker::connect_with_ssl(
            endpoint,
            &t.key,
            &t.cert,
            &t.ca,
            NO_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        ),
        None => Docker::connect_with_http(endpoint, NO_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION),
    }
    .map_err(|e| RuntimeError::Engine(format!("{endpoint}: {e}")))?;
    let what = format!("{endpoint}: version negotiation");
    within(deadline, what, docker.negotiate_version())
        .await
        .map_err(|e| RuntimeError::Engine(format!("{endpoint}: {e}")))
}
