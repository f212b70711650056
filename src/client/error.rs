//! [`ClientError`], and turning HTTP answers and transport failures into it.

use crate::wire::api::{CloseReason, ErrorBody, SyntaxProblem};
use reqwest::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection could be made (refused, DNS, timeout).
    #[error("cannot reach the Bento server at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The server answered with an error status; `message` is its own words.
    #[error("{}", http_message(*.status, .message))]
    Http { status: u16, message: String },
    /// The server said something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// An established connection failed.
    #[error("connection to the Bento server lost: {0}")]
    Transport(String),
    /// The server closed the attach connection, for this reason.
    #[error("{0}")]
    Closed(CloseReason),
    #[error("invalid server URL {url:?}: {message}")]
    InvalidUrl { url: String, message: String },
    /// A submit refused (400) because the code does not compile.
    #[error("{message}")]
    Syntax {
        message: String,
        problem: SyntaxProblem,
    },
}

fn http_message(status: u16, message: &str) -> String {
    match (status, message.is_empty()) {
        (500.., true) => format!("server error (HTTP {status})"),
        (500.., false) => format!("server error (HTTP {status}): {message}"),
        (_, true) => format!("request failed (HTTP {status})"),
        (_, false) => message.to_string(),
    }
}

impl ClientError {
    /// The HTTP status, for errors the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Http { status, .. } => Some(*status),
            ClientError::Syntax { .. } => Some(400),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// An error answer: the server's `{"error": ...}` if it sent one, else its text.
pub(crate) fn http_error(status: StatusCode, body: &[u8]) -> ClientError {
    let message = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            error,
            syntax: Some(problem),
            ..
        }) => {
            return ClientError::Syntax {
                message: error,
                problem,
            }
        }
        Ok(b) => b.error,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            // An HTML error page from a proxy is noise on a terminal.
            if text.is_empty() || text.len() > 200 || text.starts_with('<') {
                status.canonical_reason().unwrap_or("").to_string()
            } else {
                text.to_string()
            }
        }
    };
    ClientError::Http {
        status: status.as_u16(),
        message,
    }
}

/// The innermost cause, which is the part that says what happened
/// ("Connection refused") rather than what was being done.
pub(super) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e;
    while let Some(next) = cur.source() {
        let s = next.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = next;
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_read() {
        let e = http_error(
            StatusCode::NOT_FOUND,
            br#"{"error":"unknown session token"}"#,
        );
        assert_eq!(e.to_string(), "unknown session token");
        assert!(e.is_not_found());
        let e = http_error(StatusCode::BAD_GATEWAY, b"<html>bad</html>");
        assert_eq!(e.to_string(), "server error (HTTP 502): Bad Gateway");
    }
}
