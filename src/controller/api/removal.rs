//! `DELETE /v1/sessions/{token}`: an ended session goes now, with the
//! output nobody read, instead of at `session_ttl`.

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use std::sync::Arc;

use super::{ApiError, AppState};
use crate::controller::tenancy::Principal;

/// Reaps an ended session now, with whatever output it still holds. A
/// running one is refused rather than killed: removing must never be how
/// a function gets stopped by accident.
pub(super) async fn remove_session(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Path(token): Path<String>,
) -> Result<StatusCode, ApiError> {
    let handle = super::sessions::session(&s, &p, &token)?;
    match handle.remove().await {
        Ok(Ok(())) => {
            tracing::info!(session = %handle.id, "session removed");
            Ok(StatusCode::NO_CONTENT)
        }
        Ok(Err(crate::session::StillRunning)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "session {} is still running: kill it first (bento kill, or bento rm -f)",
                handle.id
            ),
        )),
        Err(_) => Err(ApiError::unknown_session()),
    }
}
