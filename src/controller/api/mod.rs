//! The HTTP API (JSON over axum) and the attach WebSocket. `docs/api.md`
//! describes it for clients.

pub mod asyncapi;
pub(crate) mod auth;
pub mod console;
mod error;
mod extend;
mod functions;
mod history;
mod images;
pub mod openapi;
mod quotas;
mod removal;
mod secrets;
mod sessions;
mod socket;
mod tenants;

use openapi::{Op, Route};

use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;

use crate::config::Config;
use crate::controller::create::Launcher;
use crate::controller::function_store::FunctionStore;
use crate::controller::sessions::Sessions;

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
    /// Tenants and their keys.
    pub keys: crate::controller::tenancy::keys::KeyStore,
    pub audit: crate::controller::tenancy::audit::AuditLog,
    /// Sessions being created per tenant, and each tenant's recent starts.
    pub quotas: std::sync::Arc<crate::controller::tenancy::quota::QuotaTracker>,
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
        handler: || post(functions::submit_function).get(functions::list_functions),
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
                errors: &[400, 401, 403, 404, 409, 415, 429, 502],
            },
            Op {
                method: "get",
                summary: "List live sessions",
                request: None,
                ok: (200, openapi::SESSIONS),
                errors: &[401],
            },
        ],
        handler: || post(sessions::create_session).get(sessions::list_sessions),
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
        handler: || get(sessions::get_session).delete(removal::remove_session),
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
        handler: || get(sessions::attach),
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
        handler: || post(sessions::close_session),
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
        handler: || post(sessions::kill_session),
    },
    Route {
        path: "/v1/sessions/{token}/extend",
        ops: &[Op {
            method: "post",
            summary: "Move the session's deadline later, within the image's maximum timeout \
                      (docs/leases.md)",
            request: openapi::EXTEND,
            ok: (200, openapi::EXTENDED),
            errors: &[400, 401, 404, 409, 503],
        }],
        handler: || post(extend::extend_session),
    },
    Route {
        path: "/v1/sessions/{token}/fork",
        ops: &[Op {
            method: "post",
            summary: "Fork the session: a new session replayed to its state (docs/fork.md)",
            request: openapi::FORK,
            ok: (201, openapi::CREATED),
            errors: &[400, 401, 403, 404, 409, 429, 502, 503],
        }],
        handler: || post(sessions::fork_session),
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
        handler: || get(sessions::session_output),
    },
    Route {
        path: "/v1/history",
        ops: &[Op {
            method: "get",
            summary: "List reaped sessions' records, newest first, a page at a time \
                      (?state=reaped&function=ID|NAME&since=EPOCH&until=EPOCH&limit=N&cursor=NEXT; \
                      live and ended sessions are in GET /v1/sessions)",
            request: None,
            ok: (200, openapi::HISTORY),
            errors: &[400, 401],
        }],
        handler: || get(history::list_history),
    },
    Route {
        path: "/v1/history/{ref}",
        ops: &[Op {
            method: "get",
            summary: "A reaped session's record, by its token or its s-… id",
            request: None,
            ok: (200, openapi::HISTORY_ONE),
            errors: &[401, 404],
        }],
        handler: || get(history::get_history),
    },
    Route {
        path: "/v1/secrets",
        ops: &[Op {
            method: "get",
            summary: "List secrets by name (values are never shown); see docs/env.md",
            request: None,
            ok: (200, Some(secrets::list_schema)),
            errors: &[401],
        }],
        handler: || get(secrets::list_secrets),
    },
    Route {
        path: "/v1/secrets/{name}",
        ops: &[
            Op {
                method: "put",
                summary: "Set a secret (201 when new, 200 when replaced)",
                request: openapi::SET_SECRET,
                ok: (201, openapi::SECRET),
                errors: &[400, 401, 409, 415],
            },
            Op {
                method: "delete",
                summary: "Remove a secret; sessions already started keep their copy",
                request: None,
                ok: (204, None),
                errors: &[400, 401, 404],
            },
        ],
        handler: || put(secrets::set_secret).delete(secrets::delete_secret),
    },
    Route {
        path: "/v1/tenants",
        ops: &[
            Op {
                method: "get",
                summary:
                    "List tenants (an admin of another tenant sees its own); see docs/tenants.md",
                request: None,
                ok: (200, Some(tenants::tenants_schema)),
                errors: &[401, 403],
            },
            Op {
                method: "post",
                summary: "Add a tenant (admins of the default tenant only)",
                request: openapi::ADD_TENANT,
                ok: (201, openapi::TENANT),
                errors: &[400, 401, 403, 409, 413, 415],
            },
        ],
        handler: || get(tenants::list_tenants).post(tenants::add_tenant),
    },
    Route {
        path: "/v1/keys",
        ops: &[
            Op {
                method: "get",
                summary: "List API keys (?tenant=NAME), never their secrets",
                request: None,
                ok: (200, Some(tenants::keys_schema)),
                errors: &[400, 401, 403],
            },
            Op {
                method: "post",
                summary: "Make an API key; the answer is the only time it is shown",
                request: openapi::CREATE_KEY,
                ok: (201, openapi::NEW_KEY),
                errors: &[400, 401, 403, 404, 413, 415],
            },
        ],
        handler: || get(tenants::list_keys).post(tenants::create_key),
    },
    Route {
        path: "/v1/keys/{key}",
        ops: &[Op {
            method: "delete",
            summary: "Revoke a key: its next request is refused and its open attaches close now",
            request: None,
            ok: (200, openapi::KEY),
            errors: &[400, 401, 403, 404],
        }],
        handler: || delete(tenants::revoke_key),
    },
    Route {
        path: "/v1/images",
        ops: &[Op {
            method: "get",
            summary: "List the function images, with their limits and warm pools",
            request: None,
            ok: (200, Some(images::list_schema)),
            errors: &[401],
        }],
        handler: || get(images::list_images),
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
        handler: || {
            get(
                |State(s): State<Arc<AppState>>| async move { Json(openapi::document_for(&s.config)) },
            )
        },
    },
    Route {
        path: "/asyncapi.json",
        ops: &[Op {
            method: "get",
            summary: "The attach WebSocket's AsyncAPI document",
            request: None,
            ok: (200, None),
            errors: &[401],
        }],
        handler: || get(|| async { Json(asyncapi::document()) }),
    },
];

pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new();
    for r in ROUTES {
        router = router.route(r.path, (r.handler)());
    }
    router
        // The web console (`/ui/`): static assets, not part of the API.
        .merge(console::routes())
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

async fn metrics_text(State(s): State<Arc<AppState>>) -> Response {
    let mut snap = crate::metrics::Snapshot::default();
    // One round trip to each session serves the quota lines too.
    let mut spooled = std::collections::HashMap::<String, u64>::new();
    for h in s.sessions.all() {
        let Ok(i) = h.info().await else { continue };
        *spooled.entry(h.tenant.to_string()).or_default() += i.spooled_bytes;
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
    let mut text = crate::metrics::render(&snap);
    text.push_str(&quotas::render(&s, &spooled));
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
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
