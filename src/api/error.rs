//! Every error answer of the API: a status and `{"error": "message"}`.

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::protocol::ErrorBody;
use crate::registry::CreateError;
use crate::runtime::RuntimeError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// The same answer for a wrong token and a reaped session, so a token
    /// cannot be probed.
    pub fn unknown_session() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "unknown session token")
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: self.message,
        });
        (self.status, body).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        // axum's text says what is wrong (syntax, type, missing field, size).
        // A body that parses but does not fit is a bad request like any
        // other, not axum's 422.
        let status = match r.status() {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            s => s,
        };
        ApiError::new(status, r.body_text())
    }
}

impl From<CreateError> for ApiError {
    fn from(e: CreateError) -> ApiError {
        match e {
            CreateError::UnknownImage(_) | CreateError::Limits(_) => {
                ApiError::bad_request(e.to_string())
            }
            CreateError::Runtime(RuntimeError::ImageMissing(..)) => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            CreateError::AtCapacity(_) | CreateError::TooManyEnded(_) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())
            }
            CreateError::Db(_) => ApiError::internal(e.to_string()),
            CreateError::Runtime(_) | CreateError::Handover(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, e.to_string())
            }
        }
    }
}
