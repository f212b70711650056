//! The HTTP API (JSON over axum) and the attach WebSocket. `docs/api.md`
//! describes it for clients.

pub(crate) mod auth;
mod error;
mod functions;
pub mod openapi;
mod removal;
mod socket;

use openapi::{Op, Route};

use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;

use crate::config::{valid_name, Config};
use crate::controller::create::{Launcher, NewSession};
use crate::controller::function_store::FunctionStore;
use crate::controller::sessions::Sessions;
use crate::wire::api::{CreateSession, FunctionInfo, SessionInfo, SubmitFunction};

/// The largest function source accepted.
pub const MAX_CODE_BYTES: usize = 1 << 20;
/// Arguments per run, and bytes per argument.
const MAX_ARGS: usize = 256;
const MAX_ARG_BYTES: usize = 64 << 10;

pub struct AppState {
    pub config: Arc<Config>,
    pub functions: FunctionStore,
    pub checker: crate::controller::check::Checker,
    /// The live sessions.
    pub sessions: Arc<Sessions>,
    pub launcher: Launcher,
    pub shutdown: CancellationToken,
}

/// Every route: the router is built from this table and so is the OpenAPI
/// document, so neither can list a route the other lacks.
pub static ROUTES: &[Route] = &[
    Route {
        path: "/v1/functions",
        ops: &[
            Op {
                method: "post",
                summary: "Store a function's code",
                request: openapi::SUBMIT,
                ok: (201, openapi::FUNCTION),
                errors: &[400, 401, 409, 413, 415, 502],
            },
            Op {
                method: "get",
                summary: "List functions, oldest first",
                request: None,
                ok: (200, openapi::FUNCTIONS),
                errors: &[401],
            },
        ],
        handler: || post(submit_function).get(list_functions),
    },
    Route {
        path: "/v1/functions/{id}",
        ops: &[
            Op {
                method: "get",
                summary: "Show a function, by id or name",
                request: None,
                ok: (200, openapi::FUNCTION),
                errors: &[401, 404],
            },
            Op {
                method: "delete",
                summary: "Delete a function (by id or name); its sessions keep running",
                request: None,
                ok: (200, openapi::FUNCTION),
                errors: &[401, 404],
            },
        ],
        handler: || get(functions::get_function).delete(functions::delete_function),
    },
    Route {
        path: "/v1/sessions",
        ops: &[
            Op {
                method: "post",
                summary: "Start a function in a new session",
                request: openapi::CREATE,
                ok: (201, openapi::CREATED),
                errors: &[400, 401, 404, 409, 415, 429, 502],
            },
            Op {
                method: "get",
                summary: "List live sessions",
                request: None,
                ok: (200, openapi::SESSIONS),
                errors: &[401],
            },
        ],
        handler: || post(create_session).get(list_sessions),
    },
    Route {
        path: "/v1/sessions/{token}",
        ops: &[
            Op {
                method: "get",
                summary: "Inspect a session",
                request: None,
                ok: (200, openapi::SESSION),
                errors: &[401, 404],
            },
            Op {
                method: "delete",
                summary: "Remove an ended session, discarding its unread output",
                request: None,
                ok: (204, None),
                errors: &[401, 404, 409, 503],
            },
        ],
        handler: || get(get_session).delete(removal::remove_session),
    },
    Route {
        path: "/v1/sessions/{token}/attach",
        ops: &[Op {
            method: "get",
            summary: "Attach over WebSocket (?after=SEQ); see docs/api.md",
            request: None,
            ok: (101, None),
            errors: &[400, 401, 404],
        }],
        handler: || get(attach),
    },
    Route {
        path: "/v1/sessions/{token}/close",
        ops: &[Op {
            method: "post",
            summary: "Detach whoever is attached; the function keeps running",
            request: None,
            ok: (204, None),
            errors: &[401, 404],
        }],
        handler: || post(close_session),
    },
    Route {
        path: "/v1/sessions/{token}/kill",
        ops: &[Op {
            method: "post",
            summary: "Kill the function",
            request: None,
            ok: (204, None),
            errors: &[401, 404],
        }],
        handler: || post(kill_session),
    },
    Route {
        path: "/v1/sessions/{token}/output",
        ops: &[Op {
            method: "get",
            summary: "A page of held output (?after=SEQ), for read-only watchers",
            request: None,
            ok: (200, openapi::PAGE),
            errors: &[400, 401, 404],
        }],
        handler: || get(session_output),
    },
    Route {
        path: "/healthz",
        ops: &[Op {
            method: "get",
            summary: "Health, including the Docker engine (no key needed)",
            request: None,
            ok: (200, None),
            errors: &[503],
        }],
        handler: || get(healthz),
    },
    Route {
        path: "/metrics",
        ops: &[Op {
            method: "get",
            summary: "Prometheus metrics",
            request: None,
            ok: (200, None),
            errors: &[401],
        }],
        handler: || get(metrics_text),
    },
    Route {
        path: "/openapi.json",
        ops: &[Op {
            method: "get",
            summary: "This document",
            request: None,
            ok: (200, None),
            errors: &[401],
        }],
        handler: || get(|| async { Json(openapi::document()) }),
    },
];

pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new();
    for r in ROUTES {
        router = router.route(r.path, (r.handler)());
    }
    router
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        // Room for the code plus JSON escaping.
        .layer(DefaultBodyLimit::max(MAX_CODE_BYTES * 2 + 4096))
        .with_state(state)
}

/// `Json` whose rejections are JSON errors like every other error.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| {
                let v = v.trim();
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected a JSON body with content-type: application/json",
            ));
        }
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        // serde would fill a struct from an array too; every body here is
        // an object.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::bad_request("expected a JSON object"));
        }
        let Json(v) = Json::<T>::from_bytes(&body)?;
        Ok(ApiJson(v))
    }
}

async fn submit_function(
    State(s): State<Arc<AppState>>,
    ApiJson(req): ApiJson<SubmitFunction>,
) -> Result<(StatusCode, Json<FunctionInfo>), ApiError> {
    if req.code.len() > MAX_CODE_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "code is {} bytes; the limit is {MAX_CODE_BYTES}",
                req.code.len()
            ),
        ));
    }
    if let Some(name) = &req.name {
        if !valid_name(name) || name.starts_with("fn-") {
            return Err(ApiError::bad_request(format!(
                "invalid name {name:?}: use 1-64 lowercase letters, digits, '-' or '_', not starting with \"fn-\""
            )));
        }
    }
    let filename = match req.filename {
        Some(f) if valid_filename(&f) => f,
        Some(f) => {
            return Err(ApiError::bad_request(format!(
                "invalid filename {f:?}: use 1-255 bytes, no '/' and no control characters"
            )))
        }
        None => req
            .name
            .as_ref()
            .map_or_else(crate::wire::api::default_filename, |n| format!("{n}.py")),
    };
    let image = req.image.unwrap_or_else(|| s.config.default_image.clone());
    let Some(spec) = s.config.images.get(&image) else {
        let known: Vec<&str> = s.config.images.keys().map(String::as_str).collect();
        return Err(ApiError::bad_request(format!(
            "unknown image {image:?}; known images: {}",
            known.join(", ")
        )));
    };
    let clock = std::time::Instant::now();
    let checked = s.checker.check(spec, &req.code, &filename).await;
    tracing::debug!(elapsed = ?clock.elapsed(), ok = checked.is_ok(), "syntax check");
    checked?;
    let info = s
        .functions
        .submit(&req.code, req.name, image, filename)
        .await
        .map_err(|e| {
            ApiError::logged(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot store the function",
                &e,
            )
        })?;
    tracing::info!(function = %info.id, "function submitted");
    Ok((StatusCode::CREATED, Json(info)))
}

/// A file name for tracebacks: a plain name, nothing that could pass for a
/// path or move a terminal's cursor.
fn valid_filename(f: &str) -> bool {
    (1..=255).contains(&f.len()) && !f.contains('/') && !f.chars().any(char::is_control)
}

async fn list_functions(State(s): State<Arc<AppState>>) -> Json<Vec<FunctionInfo>> {
    Json(s.functions.list())
}

async fn create_session(
    State(s): State<Arc<AppState>>,
    ApiJson(req): ApiJson<CreateSession>,
) -> Result<Response, ApiError> {
    if req.args.len() > MAX_ARGS || req.args.iter().any(|a| a.len() > MAX_ARG_BYTES) {
        return Err(ApiError::bad_request(format!(
            "too many or too long args: at most {MAX_ARGS} of {MAX_ARG_BYTES} bytes each"
        )));
    }
    let function = s.functions.resolve(&req.function).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown function {:?}", req.function),
        )
    })?;
    let code = s.functions.code(&function.id).await.map_err(|e| {
        let what = format!("cannot read function {}", function.id);
        ApiError::logged(StatusCode::INTERNAL_SERVER_ERROR, &what, &e)
    })?;
    let new = NewSession {
        function: &function,
        code,
        args: req.args,
        transient: req.transient,
        limits: &req.limits,
    };
    let created = s.launcher.create(new).await?;
    tracing::info!(session = %created.id, function = %function.id, "session created");
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn list_sessions(State(s): State<Arc<AppState>>) -> Json<Vec<SessionInfo>> {
    // Resuming ones first: a session is launched before it leaves that set,
    // so each one is in at least one of the two reads; those in both are
    // listed once, as live.
    let resuming = s.sessions.resuming_infos();
    let live = s.sessions.all();
    let mut out: Vec<SessionInfo> = resuming
        .into_iter()
        .filter(|i| !live.iter().any(|h| h.id == i.id))
        .collect();
    for h in live {
        // A session reaped meanwhile is simply not listed.
        if let Ok(info) = h.info().await {
            out.push(info);
        }
    }
    out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Json(out)
}

pub(super) fn session(
    s: &AppState,
    token: &str,
) -> Result<crate::session::SessionHandle, ApiError> {
    if let Some(h) = s.sessions.get(token) {
        return Ok(h);
    }
    match s.sessions.resuming(token) {
        Some(id) => Err(ApiError::resuming(&id)),
        None => Err(ApiError::unknown_session()),
    }
}

async fn get_session(
    State(s): State<Arc<AppState>>,
    Path(token): Path<String>,
) -> Result<Json<SessionInfo>, ApiError> {
    if let Some(info) = s.sessions.resuming_info(&token) {
        return Ok(Json(info));
    }
    let info = session(&s, &token)?
        .info()
        .await
        .map_err(|_| ApiError::unknown_session())?;
    Ok(Json(info))
}

async fn close_session(
    State(s): State<Arc<AppState>>,
    Path(token): Path<String>,
) -> Result<StatusCode, ApiError> {
    session(&s, &token)?
        .close()
        .await
        .map_err(|_| ApiError::unknown_session())?;
    Ok(StatusCode::NO_CONTENT)
}

async fn kill_session(
    State(s): State<Arc<AppState>>,
    Path(token): Path<String>,
) -> Result<StatusCode, ApiError> {
    session(&s, &token)?
        .kill()
        .await
        .map_err(|_| ApiError::unknown_session())?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    #[serde(default)]
    after: u64,
}

/// Output the session still holds, a page at a time, for read-only
/// watchers: many may read, nobody is taken over, nothing is acknowledged.
async fn session_output(
    State(s): State<Arc<AppState>>,
    Path(token): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<crate::wire::api::OutputPage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let page = session(&s, &token)?
        .page(q.after, 1 << 20)
        .await
        .map_err(|_| ApiError::unknown_session())?;
    Ok(Json(page))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachQuery {
    #[serde(default)]
    after: u64,
}

async fn attach(
    State(s): State<Arc<AppState>>,
    Path(token): Path<String>,
    query: Result<Query<AttachQuery>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let handle = session(&s, &token)?;
    let ws = ws.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let attached = match handle.attach(q.after).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return Err(ApiError::bad_request(e.to_string())),
        Err(_) => return Err(ApiError::unknown_session()),
    };
    let shutdown = s.shutdown.clone();
    let heartbeat = s.config.heartbeat_interval;
    Ok(ws
        // Twice the limit, so that a message just over it is read and
        // refused with a reason rather than cut off by the socket layer.
        .max_message_size(
            2 * crate::wire::api::MAX_INPUT_BYTES + crate::wire::api::INPUT_HEADER_LEN,
        )
        .on_upgrade(move |socket| socket::serve(socket, handle, attached, shutdown, heartbeat)))
}

async fn metrics_text(State(s): State<Arc<AppState>>) -> Response {
    let mut snap = crate::metrics::Snapshot::default();
    for h in s.sessions.all() {
        let Ok(i) = h.info().await else { continue };
        match i.state {
            crate::wire::api::SessionState::Starting => snap.starting += 1,
            // (Never from an actor: resuming sessions have none yet.)
            crate::wire::api::SessionState::Resuming => snap.starting += 1,
            crate::wire::api::SessionState::Running => snap.running += 1,
            crate::wire::api::SessionState::Ended => snap.ended += 1,
        }
        snap.attached += i.attached as u64;
        snap.buffered_bytes += i.pending_bytes;
        snap.spooled_bytes += i.spooled_bytes;
    }
    snap.warm_ready = s.launcher.pool.ready_all();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::metrics::render(&snap),
    )
        .into_response()
}

async fn healthz(State(s): State<Arc<AppState>>) -> Response {
    match s
        .launcher
        .ctx
        .runtime
        .image_exists("bento-healthz-probe")
        .await
    {
        Ok(_) => (StatusCode::OK, Json(serde_json::json!({"status": "ok"}))).into_response(),
        // Open to anyone: the engine's own words stay in the log.
        Err(e) => ApiError::logged(
            StatusCode::SERVICE_UNAVAILABLE,
            "the container engine is unreachable",
            &e,
        )
        .into_response(),
    }
}
