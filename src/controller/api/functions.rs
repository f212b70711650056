//! Functions: `POST` and `GET /v1/functions`, and one stored function:
//! `GET` and `DELETE /v1/functions/{id}`, where `{id}` is an id or a name
//! (the newest function with that name), as `POST /v1/sessions` takes it.

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::Json;
use std::sync::Arc;

use super::{ApiError, ApiJson, AppState, MAX_CODE_BYTES};
use crate::config::valid_name;
use crate::controller::tenancy::Principal;
use crate::wire::api::{FunctionInfo, SubmitFunction};

fn unknown(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("unknown function {id:?}"))
}

pub(super) async fn get_function(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<FunctionInfo>, ApiError> {
    s.functions
        .resolve(&p.tenant, &id)
        .map(Json)
        .ok_or_else(|| unknown(&id))
}

/// Deletes the function and answers what was deleted. Its running sessions
/// keep running (their code is in their container); new sessions cannot
/// start it.
pub(super) async fn delete_function(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<FunctionInfo>, ApiError> {
    let removed = s.functions.remove(&p.tenant, &id).await.map_err(|e| {
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

pub(super) async fn submit_function(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
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
    // Held through the syntax check until the store has it.
    let _place = super::quotas::reserve_function(&s, &p, req.code.len() as u64)?;
    let chosen = req.image.is_some();
    let image = req.image.unwrap_or_else(|| s.config.default_image.clone());
    // An image the tenant may not use is, to it, no image at all.
    let tenant = s.config.tenant(&p.tenant);
    let spec = s
        .config
        .images
        .get(&image)
        .filter(|_| tenant.may_use(&image));
    let Some(spec) = spec else {
        let known: Vec<&str> = s
            .config
            .images
            .keys()
            .filter(|i| tenant.may_use(i))
            .map(String::as_str)
            .collect();
        let known = known.join(", ");
        return Err(ApiError::bad_request(if chosen {
            format!("unknown image {image:?}; known images: {known}")
        } else {
            format!("the default image {image:?} is not one of yours: choose one of: {known}")
        }));
    };
    let clock = std::time::Instant::now();
    let checked = s.checker.check(spec, &req.code, &filename).await;
    tracing::debug!(elapsed = ?clock.elapsed(), ok = checked.is_ok(), "syntax check");
    checked?;
    let info = s
        .functions
        .submit(&req.code, req.name, image, filename, &p.tenant)
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

pub(super) async fn list_functions(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
) -> Json<Vec<FunctionInfo>> {
    Json(s.functions.list(&p.tenant))
}
