//! The history of reaped sessions: `GET /v1/history` (a page, newest
//! first, with filters) and `GET /v1/history/{ref}` (one, by its short id
//! or its former token). Live sessions stay in `GET /v1/sessions`.

use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

use super::{ApiError, AppState};
use crate::controller::tenancy::Principal;
use crate::session::history::{self, Cursor};
use crate::wire::api::{HistoryPage, HistoryRecord};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    /// A function's id or name.
    function: Option<String>,
    /// Sessions created at or after, seconds since the epoch.
    since: Option<u64>,
    /// Sessions created at or before, seconds since the epoch.
    until: Option<u64>,
    /// Only `reaped` is kept here: any other state gives an empty page.
    state: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// The default page size.
const PAGE: usize = 100;

pub(super) async fn list_history(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<HistoryPage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    // Everything is checked before anything is answered, so that a bad
    // query is refused whatever else it asks.
    let cursor = match q.cursor.as_deref() {
        None => None,
        Some(c) => {
            Some(Cursor::decode(c).ok_or_else(|| ApiError::bad_request("malformed cursor"))?)
        }
    };
    // A page size outside the spec's 1..=500 is said to be wrong rather
    // than quietly clamped.
    if let Some(l) = q.limit.filter(|l| !(1..=history::MAX_PAGE).contains(l)) {
        return Err(ApiError::bad_request(format!(
            "limit {l}: a page holds 1 to {} records",
            history::MAX_PAGE
        )));
    }
    // Times beyond 2^53 s are no time at all, and what the spec bounds.
    let max = crate::wire::whole::MAX_SAFE;
    if q.since.max(q.until).is_some_and(|t| t > max) {
        return Err(ApiError::bad_request(format!(
            "since and until are seconds since the epoch, at most {max}"
        )));
    }
    match q.state.as_deref() {
        None | Some("reaped") => {}
        Some("starting" | "resuming" | "running" | "ended") => {
            return Ok(Json(HistoryPage {
                sessions: vec![],
                next: None,
            }))
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown state {other:?}: starting, resuming, running, ended or reaped"
            )))
        }
    }
    let query = history::Query {
        function: q.function,
        since: q.since,
        until: q.until,
        limit: q.limit.unwrap_or(PAGE),
        cursor,
        tenant: Some(p.tenant.clone()),
    };
    let (sessions, next) = s.launcher.ctx.store.history(&query).map_err(|e| {
        ApiError::logged(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot read the history",
            &e,
        )
    })?;
    Ok(Json(HistoryPage {
        sessions,
        next: next.map(|c| c.encode()),
    }))
}

pub(super) async fn get_history(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Path(reference): Path<String>,
) -> Result<Json<HistoryRecord>, ApiError> {
    let found = s
        .launcher
        .ctx
        .store
        .history_one(&p.tenant, &reference)
        .map_err(|e| {
            ApiError::logged(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read the history",
                &e,
            )
        })?;
    found.map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no reaped session by that token or id",
        )
    })
}
