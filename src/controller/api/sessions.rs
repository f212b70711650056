//! Sessions: create, list, inspect, close, kill, read held output, attach.

use axum::extract::{Extension, Path, Query, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

use super::{socket, ApiError, ApiJson, AppState, MAX_ARGS, MAX_ARG_BYTES};
use crate::controller::create::NewSession;
use crate::controller::fork::{self, ForkError};
use crate::controller::tenancy::audit::Event;
use crate::controller::tenancy::quota::Ask;
use crate::controller::tenancy::{Credential, Principal, Role};
use crate::session::record::RunEnv;
use crate::wire::api::{CreateSession, ForkSession, SessionInfo};

pub(super) async fn create_session(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<CreateSession>,
) -> Result<Response, ApiError> {
    if req.args.len() > MAX_ARGS || req.args.iter().any(|a| a.len() > MAX_ARG_BYTES) {
        return Err(ApiError::bad_request(format!(
            "too many or too long args: at most {MAX_ARGS} of {MAX_ARG_BYTES} bytes each"
        )));
    }
    let function = s
        .functions
        .resolve(&p.tenant, &req.function)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("unknown function {:?}", req.function),
            )
        })?;
    may_use(&s, &p, &function.image, &function.id)?;
    // Limits the run cannot have are refused by create, with the reason.
    let ask = s
        .config
        .images
        .get(&function.image)
        .and_then(|image| image.resolve_limits(&req.limits).ok())
        .map(|l| Ask {
            memory: l.memory,
            cpus: l.cpus,
        })
        .unwrap_or_default();
    let _reserved = super::quotas::reserve(&s, &p, ask).await?;
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
        forkable: req.forkable.unwrap_or(true),
        fork: None,
        env: RunEnv {
            vars: req.env,
            secrets: req.secrets,
        },
        tenant: p.tenant.clone(),
    };
    let created = s.launcher.create(new).await?;
    tracing::info!(session = %created.id, function = %function.id, "session created");
    s.audit
        .record(&p, Event::SessionCreated, &created.id, &function.id);
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Forks a session: refused (409) when it cannot be, with the reason.
pub(super) async fn fork_session(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Path(token): Path<String>,
    ApiJson(req): ApiJson<ForkSession>,
) -> Result<Response, ApiError> {
    let parent = session(&s, &p, &token)?;
    if let Ok(info) = parent.info().await {
        may_use(&s, &p, &info.image, &info.function)?;
    }
    let ask = Ask {
        memory: parent.memory,
        cpus: parent.cpus,
    };
    let _reserved = super::quotas::reserve(&s, &p, ask).await?;
    let created = fork::fork(&s.launcher, &s.functions, &parent, req)
        .await
        .map_err(|e| match e {
            ForkError::Gone => ApiError::unknown_session(),
            ForkError::Create(e) => ApiError::from(e),
            ForkError::History(_) => ApiError::logged(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read the input history",
                &e,
            ),
            ForkError::Refused(_) | ForkError::FunctionGone(_) | ForkError::Short { .. } => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
        })?;
    s.audit
        .record(&p, Event::SessionForked, &created.id, &parent.id);
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Refuses to start `function` in `image` when its tenant may no longer
/// use that image (the config changed since the function was stored).
fn may_use(s: &AppState, p: &Principal, image: &str, function: &str) -> Result<(), ApiError> {
    if s.config.tenant(&p.tenant).may_use(image) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "function {function} runs in image {image:?}, which tenant {} may not use",
            p.tenant
        ),
    ))
}

pub(super) async fn list_sessions(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
) -> Json<Vec<SessionInfo>> {
    // Resuming ones first: a session is launched before it leaves that set,
    // so each one is in at least one of the two reads; those in both are
    // listed once, as live.
    let resuming = s.sessions.resuming_infos_of(&p.tenant);
    let live = s.sessions.of_tenant(&p.tenant);
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
    Json(out.into_iter().map(|i| for_role(&p, i)).collect())
}

/// A session as `p` may see it: a viewer gets its id where the token
/// would be, since a token alone may attach (docs/tenants.md). Every read
/// route takes the id as well.
fn for_role(p: &Principal, mut info: SessionInfo) -> SessionInfo {
    if p.role == Role::Viewer {
        info.token = info.id.clone();
    }
    info
}

/// The session behind `token`, if `p` may see it. Another tenant's
/// session is answered exactly as a token that never existed.
pub(super) fn session(
    s: &AppState,
    p: &Principal,
    token: &str,
) -> Result<crate::session::SessionHandle, ApiError> {
    let found = if token.starts_with("s-") {
        s.sessions.by_id(token)
    } else {
        s.sessions.get(token)
    };
    if let Some(h) = found {
        if p.sees(&h.tenant) {
            return Ok(h);
        }
        return Err(ApiError::unknown_session());
    }
    match s.sessions.resuming(token) {
        Some(id)
            if s.sessions
                .resuming_tenant(token)
                .is_some_and(|t| p.sees(&t)) =>
        {
            Err(ApiError::resuming(&id))
        }
        _ => Err(ApiError::unknown_session()),
    }
}

pub(super) async fn get_session(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Path(token): Path<String>,
) -> Result<Json<SessionInfo>, ApiError> {
    if let Some(info) = s.sessions.resuming_info(&token) {
        if s.sessions
            .resuming_tenant(&token)
            .is_some_and(|t| p.sees(&t))
        {
            return Ok(Json(for_role(&p, info)));
        }
    }
    let info = session(&s, &p, &token)?
        .info()
        .await
        .map_err(|_| ApiError::unknown_session())?;
    Ok(Json(for_role(&p, info)))
}

pub(super) async fn close_session(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Path(token): Path<String>,
) -> Result<StatusCode, ApiError> {
    let h = session(&s, &p, &token)?;
    h.close().await.map_err(|_| ApiError::unknown_session())?;
    s.audit.record(&p, Event::SessionClosed, &h.id, "");
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn kill_session(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Path(token): Path<String>,
) -> Result<StatusCode, ApiError> {
    let h = session(&s, &p, &token)?;
    h.kill().await.map_err(|_| ApiError::unknown_session())?;
    s.audit.record(&p, Event::SessionKilled, &h.id, "");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PageQuery {
    #[serde(default)]
    after: u64,
}

/// Output the session still holds, a page at a time, for read-only
/// watchers: many may read, nobody is taken over, nothing is acknowledged.
pub(super) async fn session_output(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Path(token): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<crate::wire::api::OutputPage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let page = session(&s, &p, &token)?
        .page(q.after, 1 << 20)
        .await
        .map_err(|_| ApiError::unknown_session())?;
    Ok(Json(page))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AttachQuery {
    #[serde(default)]
    after: u64,
}

pub(super) async fn attach(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Path(token): Path<String>,
    query: Result<Query<AttachQuery>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let handle = attachable(&s, &p, &token)?;
    let ws = ws.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let attached = match handle.attach(q.after).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return Err(ApiError::bad_request(e.to_string())),
        Err(_) => return Err(ApiError::unknown_session()),
    };
    let shutdown = s.shutdown.clone();
    let heartbeat = s.config.heartbeat_interval;
    let revoked = p.revoked.clone();
    Ok(ws
        // Twice the limit, so that a message just over it is read and
        // refused with a reason rather than cut off by the socket layer.
        .max_message_size(
            2 * crate::wire::api::MAX_INPUT_BYTES + crate::wire::api::INPUT_HEADER_LEN,
        )
        .on_upgrade(move |socket| {
            socket::serve(socket, handle, attached, shutdown, heartbeat, revoked)
        }))
}

/// The session a request may attach to. With a key, as [`session`]. With
/// the token alone (the capability model), any session whose tenant does
/// not also ask for its key.
fn attachable(
    s: &AppState,
    p: &Principal,
    token: &str,
) -> Result<crate::session::SessionHandle, ApiError> {
    if p.credential != Credential::TokenOnly {
        return session(s, p, token);
    }
    // Without a key, anything but a live session's token (its id, which
    // anyone who may list sees, included) is answered as the missing key
    // it is: the key guards everything a token does not open.
    let missing = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing API key: send Authorization: Bearer KEY (bento --api-key or BENTO_API_KEY)",
        )
    };
    if token.starts_with("s-") {
        return Err(missing());
    }
    let tenant = match s.sessions.get(token) {
        Some(h) => h.tenant.to_string(),
        None => s.sessions.resuming_tenant(token).ok_or_else(missing)?,
    };
    if s.config.tenant(&tenant).attach_requires_key {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing API key: this session's tenant requires a key to attach \
             (bento --api-key or BENTO_API_KEY)",
        ));
    }
    let as_owner = Principal {
        tenant,
        ..p.clone()
    };
    // Seen as its own tenant's, for this one lookup only.
    session(
        s,
        &Principal {
            credential: Credential::Open,
            ..as_owner
        },
        token,
    )
}
