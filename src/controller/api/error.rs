//! Every error answer of the API: a status and `{"error": "message"}`.

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::controller::check::CheckError;
use crate::controller::create::CreateError;
use crate::runtime::RuntimeError;
use crate::wire::api::{ErrorBody, ErrorCode, SyntaxProblem};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// For a submit whose code does not compile.
    pub syntax: Option<SyntaxProblem>,
    /// For a quota refusal: which quota, and the `RateLimit-*` and
    /// `Retry-After` headers.
    /// Boxed: it is rare, and every other error stays small.
    pub quota: Option<Box<QuotaAnswer>>,
}

/// What a 429 from a tenant quota adds: the quota's name in the body, and
/// the rate-limit headers.
#[derive(Debug)]
pub struct QuotaAnswer {
    pub quota: String,
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            syntax: None,
            quota: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// The same answer for a wrong token and a reaped session, so a token
    /// cannot be probed.
    pub fn unknown_session() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "unknown session token")
    }

    /// A session whose driver is being resumed after a controller restart:
    /// it is there, and will answer in a moment.
    pub fn resuming(id: &str) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("session {id} is resuming after a controller restart; try again in a moment"),
        )
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// An error whose detail stays in the controller's log: the engine's
    /// and the database's messages name container ids, cgroup and file
    /// paths, which are nothing a client should learn. The answer carries
    /// an id that finds the log line, which carries the detail at warn.
    pub fn logged(status: StatusCode, what: &str, detail: &dyn std::fmt::Display) -> ApiError {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let id = &id[..12];
        tracing::warn!(error_id = %id, %status, error = %detail, "{what}");
        ApiError::new(
            status,
            format!("{what}; see the controller's log (error id {id})"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (quota, headers) = self.quota.map(|b| (b.quota, b.headers)).unzip();
        let body = Json(ErrorBody {
            error: self.message,
            code: ErrorCode::of(self.status.as_u16()),
            syntax: self.syntax,
            quota,
        });
        let mut r = (self.status, body).into_response();
        for (name, value) in headers.into_iter().flatten() {
            if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
                r.headers_mut().insert(name, v);
            }
        }
        r
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        // axum's text says what is wrong (syntax, type, missing field, size).
        // A body that parses but does not fit is a bad request like any
        // other, not axum's 422.
        let status = match r.status() {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            s => s,
        };
        ApiError::new(status, r.body_text())
    }
}

impl From<CheckError> for ApiError {
    fn from(e: CheckError) -> ApiError {
        match e {
            CheckError::Syntax(problem) => ApiError {
                status: StatusCode::BAD_REQUEST,
                message: format!("the code does not compile: {problem}"),
                syntax: Some(problem),
                quota: None,
            },
            CheckError::Runtime(RuntimeError::ImageMissing(..)) => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            CheckError::Runtime(_) | CheckError::Failed(_) => ApiError::logged(
                StatusCode::BAD_GATEWAY,
                "the syntax check could not run",
                &e,
            ),
        }
    }
}

impl From<CreateError> for ApiError {
    fn from(e: CreateError) -> ApiError {
        match e {
            CreateError::UnknownImage(_) | CreateError::Limits(_) | CreateError::Env(_) => {
                ApiError::bad_request(e.to_string())
            }
            CreateError::Secret(_) => ApiError::logged(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the controller could not read a secret",
                &e,
            ),
            CreateError::Runtime(RuntimeError::ImageMissing(..)) => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            CreateError::AtCapacity(_) | CreateError::TooManyEnded(_) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())
            }
            CreateError::Db(_) => ApiError::logged(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the controller could not record the session",
                &e,
            ),
            CreateError::Runtime(_) | CreateError::Handover(_) => {
                ApiError::logged(StatusCode::BAD_GATEWAY, "the container engine failed", &e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Log lines, collected.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut v = self
                .0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?;
            v.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn text(&self) -> String {
            let v = self.0.lock().map(|v| v.clone()).unwrap_or_default();
            String::from_utf8_lossy(&v).into_owned()
        }
    }

    /// Converts `e` as the API does, with the log collected.
    fn answer(e: CreateError) -> (ApiError, String) {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let api = tracing::subscriber::with_default(subscriber, || ApiError::from(e));
        (api, lines.text())
    }

    const ID: &str = "6953efff34fbafdf22ad8a23f15f3aabfa2e9c3f4f03dd8f85b104e6b1038edd";

    #[test]
    fn engine_failures_name_an_error_id_and_keep_the_detail_in_the_log() {
        let detail = format!(
            "Error response from daemon: failed to create shim task: OCI runtime create \
             failed: /sys/fs/cgroup/pids/docker/{ID}/pids.max: permission denied"
        );
        let (api, log) = answer(CreateError::Runtime(RuntimeError::Engine(detail)));
        assert_eq!(api.status, StatusCode::BAD_GATEWAY);
        for leak in [&ID[..12], "/sys/fs", "cgroup", "daemon", "OCI"] {
            assert!(!api.message.contains(leak), "{leak} in {:?}", api.message);
        }
        let id = api
            .message
            .split("error id ")
            .nth(1)
            .map(|s| s.trim_end_matches(')'))
            .unwrap_or_default();
        assert_eq!(id.len(), 12, "{:?}", api.message);
        assert!(api.message.starts_with("the container engine failed"));
        // The same id finds the whole story in the log, at warn.
        let line = log.lines().find(|l| l.contains(id)).unwrap_or_default();
        assert!(line.contains("WARN"), "{log}");
        assert!(
            line.contains(ID) && line.contains("/sys/fs/cgroup"),
            "{log}"
        );
        // Two failures, two ids.
        let (again, _) = answer(CreateError::Handover(std::io::Error::other("pipe")));
        assert!(!again.message.contains(id) && !again.message.contains("pipe"));
    }

    #[test]
    fn client_errors_still_say_what_is_wrong() {
        let (api, _) = answer(CreateError::Limits("cpus 0.001 is outside 0.01..=2".into()));
        assert_eq!(api.status, StatusCode::BAD_REQUEST);
        assert!(api.message.contains("cpus 0.001"));
        let missing = RuntimeError::ImageMissing("bento/python:latest".into(), "python".into());
        let (api, _) = answer(CreateError::Runtime(missing));
        assert_eq!(api.status, StatusCode::CONFLICT);
        assert!(api.message.contains("bento images build python"));
    }
}
