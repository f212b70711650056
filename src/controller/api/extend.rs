//! `POST /v1/sessions/{token}/extend`: moves a session's deadline, within
//! its image's maximum timeout counted from the session's start
//! (docs/leases.md).

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::Json;
use std::sync::Arc;

use super::sessions::session;
use super::{ApiError, ApiJson, AppState};
use crate::controller::tenancy::audit::Event;
use crate::controller::tenancy::Principal;
use crate::session::ExtendRefused;
use crate::wire::api::{ExtendSession, SessionExtended, SessionInfo};
use crate::wire::duration::span;

pub(super) async fn extend_session(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Path(token): Path<String>,
    ApiJson(req): ApiJson<ExtendSession>,
) -> Result<Json<SessionExtended>, ApiError> {
    // Another tenant's session is unknown here, as everywhere; a viewer's
    // key is refused before this (it changes the session).
    let handle = session(&s, &p, &token)?;
    let info = handle
        .info()
        .await
        .map_err(|_| ApiError::unknown_session())?;
    let max_timeout = max_timeout(&s, &info);
    let max = max_timeout.map(|t| info.created_at.saturating_add(t));
    let refused = match handle.extend(req.by, max).await {
        Err(_) => return Err(ApiError::unknown_session()),
        Ok(Ok(deadline)) => {
            crate::metrics::add(&crate::metrics::METRICS.extends, 1);
            let by = span(crate::wire::api::ceil_secs(&req.by));
            s.audit
                .record(&p, Event::SessionExtended, &info.id, &format!("by {by}"));
            return Ok(Json(SessionExtended {
                deadline,
                max_deadline: max,
            }));
        }
        Ok(Err(refused)) => refused,
    };
    let id = &info.id;
    Err(match refused {
        ExtendRefused::BeyondMax { asked, max } => ApiError::bad_request(format!(
            "cannot extend session {id} by {}: its deadline would be {} after its start, \
             past the image's maximum timeout of {} (at most {} more)",
            span(crate::wire::api::ceil_secs(&req.by)),
            span(asked.saturating_sub(info.created_at)),
            span(max_timeout.unwrap_or_default()),
            span(max.saturating_sub(info.deadline.unwrap_or(max))),
        )),
        ExtendRefused::Ended => {
            ApiError::new(StatusCode::CONFLICT, format!("session {id} has ended"))
        }
        ExtendRefused::Stopping => ApiError::new(
            StatusCode::CONFLICT,
            format!("session {id} is being stopped: its deadline or idle timeout has come"),
        ),
        ExtendRefused::NoDeadline => ApiError::new(
            StatusCode::CONFLICT,
            format!("session {id} has no timeout, so no deadline to move"),
        ),
    })
}

/// The longest a session of this image may run, in seconds: its image's
/// maximum timeout (`None`: no maximum). An image gone from the config
/// since the session started allows no more than the session had.
fn max_timeout(s: &AppState, info: &SessionInfo) -> Option<u64> {
    let t = match s.config.images.get(&info.image) {
        Some(image) => image.max_limits().timeout,
        None => info.limits.as_ref()?.timeout,
    };
    (!t.is_zero()).then(|| crate::wire::api::ceil_secs(&t))
}
