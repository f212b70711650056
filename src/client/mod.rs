//! Client library for the Bento controller: typed calls for every HTTP route,
//! and [`Attachment`], a resumable attach to a session's I/O that reconnects
//! by itself after transport failures.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bento::client::ClientError> {
//! use bento::client::{AttachOptions, Client, Event};
//! use bento::protocol::CreateSession;
//!
//! let client = Client::new("http://127.0.0.1:7470", None)?;
//! let created = client
//!     .create_session(&CreateSession {
//!         function: "hello".into(),
//!         args: vec![],
//!         transient: false,
//!         limits: Default::default(),
//!     })
//!     .await?;
//! let mut att = client.attach(&created.token, AttachOptions::default()).await?;
//! att.input().eof().await.ok();
//! while let Some(event) = att.next().await {
//!     match event {
//!         Event::Output(frame) => {
//!             // ... write frame.bytes somewhere durable, then:
//!             att.written(frame.seq);
//!         }
//!         Event::Exit { seq, exit } => {
//!             println!("{}", exit.message);
//!             att.written(seq);
//!         }
//!         Event::Ended(end) => println!("{end:?}"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```

mod attach;
mod driver;
mod input;
mod pacing;
#[cfg(test)]
mod tests_attach;
mod ws;

pub use attach::{AttachEnd, AttachOptions, Attachment, DetachHandle, Event, InputSender};
pub use input::{InputError, InputLimits, MAX_INPUT_MESSAGE};

use crate::protocol::{
    CloseReason, CreateSession, ErrorBody, FunctionInfo, SessionCreated, SessionInfo,
    SubmitFunction,
};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// Where the CLI looks for the controller unless told otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7470";

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
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// A handle on one controller. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    /// The URL as the user gave it, for messages.
    display: String,
    api_key: Option<String>,
}

impl Client {
    /// `url` is the controller's base URL, like `http://127.0.0.1:7470`;
    /// `api_key`, when set, goes out as `Authorization: Bearer KEY`.
    pub fn new(url: &str, api_key: Option<String>) -> Result<Client, ClientError> {
        let invalid = |message: String| ClientError::InvalidUrl {
            url: url.to_string(),
            message,
        };
        let base = Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        if base.scheme() != "http" {
            return Err(invalid("only http:// URLs are supported".into()));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(invalid("it has no host".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Generous, because creating a session may wait for a container
            // to start; it only guards against a server that hangs.
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| invalid(error_chain(&e)))?;
        Ok(Client {
            http,
            base,
            display: url.trim_end_matches('/').to_string(),
            api_key: api_key.filter(|k| !k.is_empty()),
        })
    }

    /// The base URL, as given.
    pub fn url(&self) -> &Url {
        &self.base
    }

    pub async fn submit_function(
        &self,
        body: &SubmitFunction,
    ) -> Result<FunctionInfo, ClientError> {
        self.json(Method::POST, &["v1", "functions"], Some(body))
            .await
    }

    pub async fn list_functions(&self) -> Result<Vec<FunctionInfo>, ClientError> {
        self.json(Method::GET, &["v1", "functions"], None::<&()>)
            .await
    }

    pub async fn create_session(
        &self,
        body: &CreateSession,
    ) -> Result<SessionCreated, ClientError> {
        self.json(Method::POST, &["v1", "sessions"], Some(body))
            .await
    }

    pub async fn list_sessions(&self) -> Result<Vec<SessionInfo>, ClientError> {
        self.json(Method::GET, &["v1", "sessions"], None::<&()>)
            .await
    }

    pub async fn session(&self, token: &str) -> Result<SessionInfo, ClientError> {
        self.json(Method::GET, &["v1", "sessions", token], None::<&()>)
            .await
    }

    /// Detaches whoever is attached; the function keeps running.
    pub async fn close_session(&self, token: &str) -> Result<(), ClientError> {
        self.send(
            Method::POST,
            &["v1", "sessions", token, "close"],
            None::<&()>,
        )
        .await
        .map(drop)
    }

    /// Stops the function.
    pub async fn kill_session(&self, token: &str) -> Result<(), ClientError> {
        self.send(
            Method::POST,
            &["v1", "sessions", token, "kill"],
            None::<&()>,
        )
        .await
        .map(drop)
    }

    /// Attaches to a session's I/O. The first connection is made here, so an
    /// unknown token or an unreachable server is an error of this call; later
    /// connection failures are retried in the background (see
    /// [`AttachOptions::reconnect`]).
    pub async fn attach(
        &self,
        token: &str,
        options: AttachOptions,
    ) -> Result<Attachment, ClientError> {
        attach::attach(self.endpoint(token)?, token, options).await
    }

    fn endpoint(&self, token: &str) -> Result<ws::Endpoint, ClientError> {
        let mut url = self.url_for(&["v1", "sessions", token, "attach"]);
        url.set_scheme("ws").map_err(|()| ClientError::InvalidUrl {
            url: self.display.clone(),
            message: "cannot make a WebSocket URL of it".into(),
        })?;
        Ok(ws::Endpoint {
            url,
            display_url: self.display.clone(),
            api_key: self.api_key.clone(),
        })
    }

    fn url_for(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            // Segments are percent-encoded here, so a token can hold anything.
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut req = self.http.request(method, self.url_for(segments));
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| self.request_error(&e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        Err(http_error(status, &body))
    }

    async fn json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let resp = self.send(method, segments, body).await?;
        let bytes = resp.bytes().await.map_err(|e| self.request_error(&e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol(format!("cannot decode the server's answer: {e}")))
    }

    fn request_error(&self, e: &reqwest::Error) -> ClientError {
        if e.is_connect() || e.is_timeout() || e.is_request() {
            ClientError::Unreachable {
                url: self.display.clone(),
                message: root_cause(e),
            }
        } else {
            ClientError::Transport(error_chain(e))
        }
    }
}

/// An error answer: the server's `{"error": ...}` if it sent one, else its text.
pub(crate) fn http_error(status: StatusCode, body: &[u8]) -> ClientError {
    let message = match serde_json::from_slice::<ErrorBody>(body) {
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
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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
    fn urls_are_built_from_segments() -> Result<(), ClientError> {
        let c = Client::new("http://example.com:7470/", None)?;
        assert_eq!(
            c.url_for(&["v1", "sessions", "a/b c"]).as_str(),
            "http://example.com:7470/v1/sessions/a%2Fb%20c"
        );
        let c = Client::new("http://example.com/bento", None)?;
        assert_eq!(
            c.url_for(&["v1", "functions"]).as_str(),
            "http://example.com/bento/v1/functions"
        );
        assert_eq!(
            c.endpoint("tok")?.url.as_str(),
            "ws://example.com/bento/v1/sessions/tok/attach"
        );
        Ok(())
    }

    #[test]
    fn bad_urls_are_rejected() {
        assert!(Client::new("example.com", None).is_err());
        assert!(Client::new("https://example.com", None).is_err());
    }

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
