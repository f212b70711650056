//! API-key authentication: `Authorization: Bearer KEY` on every request,
//! compared in constant time. On loopback the key is optional; elsewhere the
//! server refuses to start without one (see [`crate::controller::run`]).

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use super::{ApiError, AppState};

/// Compares two byte strings in time that depends only on their lengths, so
/// the comparison does not reveal how much of a guessed key was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

pub async fn require_key(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(key) = s.config.api_key.as_deref() else {
        return next.run(req).await;
    };
    // The health check stays open so orchestrators can probe it.
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), key.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "wrong API key").into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing API key: send Authorization: Bearer KEY (bento --api-key or BENTO_API_KEY)",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn equal_only_when_identical() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
