//! Secrets (`docs/env.md`): set, list by name, remove. No route returns a
//! value; a session gets one only in its function's environment.

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use schemars::{schema_for, Schema};
use std::sync::Arc;

use super::{ApiError, ApiJson, AppState};
use crate::controller::secrets::SecretError;
use crate::controller::tenancy::Principal;
use crate::wire::api::{SecretInfo, SetSecret};

/// The OpenAPI schema of the list.
pub(super) fn list_schema() -> (&'static str, Schema) {
    ("SecretInfoList", schema_for!(Vec<SecretInfo>))
}

fn answer(e: SecretError) -> ApiError {
    match e {
        SecretError::Io(_) => ApiError::logged(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the controller could not use its secret store",
            &e,
        ),
        SecretError::Unknown(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
        SecretError::Full => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        SecretError::BadName(_) | SecretError::TooLarge(..) | SecretError::Nul(_) => {
            ApiError::bad_request(e.to_string())
        }
    }
}

/// Sets a secret: 201 when it is new, 200 when it replaced one.
pub(super) async fn set_secret(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<SetSecret>,
) -> Result<Response, ApiError> {
    let store = s.launcher.secrets.tenant(&p.tenant);
    let name2 = name.clone();
    // A file write and an fsync: off the async workers.
    let created = tokio::task::spawn_blocking(move || store.set(&name2, &req.value))
        .await
        .map_err(|e| ApiError::logged(StatusCode::INTERNAL_SERVER_ERROR, "secret store", &e))?
        .map_err(answer)?;
    tracing::info!(secret = %name, created, "secret set");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let info = SecretInfo {
        name,
        updated_at: crate::session::record::now_secs(),
    };
    Ok((status, Json(info)).into_response())
}

pub(super) async fn list_secrets(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Vec<SecretInfo>>, ApiError> {
    s.launcher
        .secrets
        .tenant(&p.tenant)
        .list()
        .map(Json)
        .map_err(answer)
}

pub(super) async fn delete_secret(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if s.launcher
        .secrets
        .tenant(&p.tenant)
        .remove(&name)
        .map_err(answer)?
    {
        tracing::info!(secret = %name, "secret removed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(answer(SecretError::Unknown(name)))
    }
}
