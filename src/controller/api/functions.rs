//! One stored function: `GET` and `DELETE /v1/functions/{id}`, where `{id}`
//! is an id or a name (the newest function with that name), as `POST
//! /v1/sessions` takes it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use std::sync::Arc;

use super::{ApiError, AppState};
use crate::wire::api::FunctionInfo;

fn unknown(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("unknown function {id:?}"))
}

pub(super) async fn get_function(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<FunctionInfo>, ApiError> {
    s.functions
        .resolve(&id)
        .map(Json)
        .ok_or_else(|| unknown(&id))
}

/// Deletes the function and answers what was deleted. Its running sessions
/// keep running (their code is in their container); new sessions cannot
/// start it.
pub(super) async fn delete_function(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<FunctionInfo>, ApiError> {
    let removed = s.functions.remove(&id).await.map_err(|e| {
        ApiError::logged(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot delete the function",
            &e,
        )
    })?;
    let info = removed.ok_or_else(|| unknown(&id))?;
    tracing::info!(function = %info.id, "function deleted");
    Ok(Json(info))
}
