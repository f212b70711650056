//! Client library for the Bento controller: typed calls for every HTTP route,
//! and [`Attachment`], a resumable attach to a session's I/O that reconnects
//! by itself after transport failures.
//!
//! The HTTP calls are in this file and their errors in `error.rs`; the
//! attach is in `attach/`, whose module doc draws how its files depend on
//! one another.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bento::client::ClientError> {
//! use bento::client::{AttachOptions, Client, Event};
//! use bento::wire::api::CreateSession;
//!
//! let client = Client::new("http://127.0.0.1:7470", None)?;
//! let created = client
//!     .create_session(&CreateSession {
//!         function: "hello".into(),
//!         args: vec![],
//!         transient: false,
//!         limits: Default::default(),
//!         forkable: None,
//!         env: Default::default(),
//!         secrets: Vec::new(),
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
mod error;
mod history;
mod tenants;
pub use history::HistoryFilter;
#[cfg(test)]
mod tests_submit;

pub use error::ClientError;
use error::{error_chain, http_error, root_cause};

pub use attach::{
    AttachEnd, AttachOptions, Attachment, DetachHandle, Event, InputError, InputLimits,
    InputSender, WrittenHandle, MAX_INPUT_MESSAGE,
};

use crate::wire::api::{
    CreateSession, ExtendSession, ForkSession, FunctionInfo, OutputPage, SecretInfo,
    SessionCreated, SessionExtended, SessionInfo, SetSecret, SubmitFunction,
};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// Where the CLI looks for the controller unless told otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7470";

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
        let base = Url::parse(&with_scheme(url)).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid(
                "only http:// and https:// URLs are supported".into(),
            ));
        }

        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(invalid("it has no host".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Generous, because creating a session may wait for a container
            // to start; it only guards against a server that hangs.
            .timeout(Duration::from_secs(300))
            // Below the server's header timeout (20 s by default), after
            // which it closes idle connections: a pooled connection is
            // then rarely reused just as the server closes it.
            .pool_idle_timeout(Duration::from_secs(10))
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

    /// Submits a function. A controller from before file names refuses
    /// the `filename` field (its bodies allow no unknown fields): the
    /// function is then submitted again without it, and runs under the
    /// name that controller gives every function.
    pub async fn submit_function(
        &self,
        body: &SubmitFunction,
    ) -> Result<FunctionInfo, ClientError> {
        let first = self
            .json(Method::POST, &["v1", "functions"], Some(body))
            .await;
        match first {
            Err(ClientError::Http {
                status: 400,
                ref message,
            }) if body.filename.is_some() && message.contains("unknown field `filename`") => {
                let plain = SubmitFunction {
                    filename: None,
                    ..body.clone()
                };
                self.json(Method::POST, &["v1", "functions"], Some(&plain))
                    .await
            }
            other => other,
        }
    }

    pub async fn list_functions(&self) -> Result<Vec<FunctionInfo>, ClientError> {
        self.json(Method::GET, &["v1", "functions"], None::<&()>)
            .await
    }

    /// One function, by id or name (the newest with that name).
    pub async fn function(&self, id_or_name: &str) -> Result<FunctionInfo, ClientError> {
        self.json(Method::GET, &["v1", "functions", id_or_name], None::<&()>)
            .await
    }

    /// [`Client::function`] as the server's JSON text, verbatim.
    pub async fn function_json(&self, id_or_name: &str) -> Result<String, ClientError> {
        self.json_text(&["v1", "functions", id_or_name]).await
    }

    /// Deletes a function (by id or name); answers what was deleted. Its
    /// sessions keep running.
    pub async fn delete_function(&self, id_or_name: &str) -> Result<FunctionInfo, ClientError> {
        self.json(
            Method::DELETE,
            &["v1", "functions", id_or_name],
            None::<&()>,
        )
        .await
    }

    pub async fn create_session(
        &self,
        body: &CreateSession,
    ) -> Result<SessionCreated, ClientError> {
        self.json(Method::POST, &["v1", "sessions"], Some(body))
            .await
    }

    /// Forks a session (`POST /v1/sessions/{token}/fork`): a new session
    /// replayed to its state. Refusals (not forkable, past the history
    /// bound) are `409` errors with the reason.
    pub async fn fork_session(
        &self,
        token: &str,
        body: &ForkSession,
    ) -> Result<SessionCreated, ClientError> {
        self.json(Method::POST, &["v1", "sessions", token, "fork"], Some(body))
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

    /// A page of the output the session still holds (not yet acknowledged
    /// by a client) with seq above `after`. Read-only: nothing is
    /// acknowledged and an attached client is not disturbed. Ask again with
    /// `after = page.next_after` until `page.complete`.
    pub async fn output_page(&self, token: &str, after: u64) -> Result<OutputPage, ClientError> {
        let mut url = self.url_for(&["v1", "sessions", token, "output"]);
        url.query_pairs_mut()
            .append_pair("after", &after.to_string());
        self.json_at(Method::GET, url, None::<&()>).await
    }

    /// [`Client::list_functions`] as the server's JSON text, verbatim: for
    /// callers that pass the API's answer on (`bento functions --json`).
    pub async fn functions_json(&self) -> Result<String, ClientError> {
        self.json_text(&["v1", "functions"]).await
    }

    /// [`Client::list_sessions`] as the server's JSON text, verbatim.
    pub async fn sessions_json(&self) -> Result<String, ClientError> {
        self.json_text(&["v1", "sessions"]).await
    }

    /// [`Client::session`] as the server's JSON text, verbatim.
    pub async fn session_json(&self, token: &str) -> Result<String, ClientError> {
        self.json_text(&["v1", "sessions", token]).await
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

    /// Moves the session's deadline `by` later, within its image's maximum
    /// timeout counted from its start (400 beyond it, naming the maximum;
    /// 409 once it has ended). Answers the new deadline.
    pub async fn extend(
        &self,
        token: &str,
        by: std::time::Duration,
    ) -> Result<SessionExtended, ClientError> {
        let body = ExtendSession { by };
        self.json(
            Method::POST,
            &["v1", "sessions", token, "extend"],
            Some(&body),
        )
        .await
    }

    /// Removes an ended session, discarding the output it still holds.
    /// A session whose function still runs is refused with 409.
    pub async fn remove_session(&self, token: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &["v1", "sessions", token], None::<&()>)
            .await
            .map(drop)
    }

    /// Sets a secret (creating or replacing it): true when it is new.
    pub async fn set_secret(&self, name: &str, value: String) -> Result<bool, ClientError> {
        let body = SetSecret { value };
        self.send(Method::PUT, &["v1", "secrets", name], Some(&body))
            .await
            .map(|r| r.status() == reqwest::StatusCode::CREATED)
    }

    /// The secrets the controller keeps, by name (values never leave it).
    pub async fn list_secrets(&self) -> Result<Vec<SecretInfo>, ClientError> {
        self.json(Method::GET, &["v1", "secrets"], None::<&()>)
            .await
    }

    /// Removes a secret; sessions already started keep their copy.
    pub async fn delete_secret(&self, name: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &["v1", "secrets", name], None::<&()>)
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

    fn endpoint(&self, token: &str) -> Result<attach::Endpoint, ClientError> {
        let mut url = self.url_for(&["v1", "sessions", token, "attach"]);
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme)
            .map_err(|()| ClientError::InvalidUrl {
                url: self.display.clone(),
                message: "cannot make a WebSocket URL of it".into(),
            })?;
        Ok(attach::Endpoint {
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
        self.send_to(method, self.url_for(segments), body).await
    }

    async fn send_to<B: Serialize>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut req = self.http.request(method, url);
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
        self.json_at(method, self.url_for(segments), body).await
    }

    async fn json_at<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let resp = self.send_to(method, url, body).await?;
        let bytes = resp.bytes().await.map_err(|e| self.request_error(&e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol(format!("cannot decode the server's answer: {e}")))
    }

    /// A GET answer as text, checked to be JSON but otherwise untouched.
    async fn json_text(&self, segments: &[&str]) -> Result<String, ClientError> {
        let resp = self.send(Method::GET, segments, None::<&()>).await?;
        let bytes = resp.bytes().await.map_err(|e| self.request_error(&e))?;
        let bad = |e: &dyn std::fmt::Display| {
            ClientError::Protocol(format!("the server's answer is not JSON: {e}"))
        };
        serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).map_err(|e| bad(&e))?;
        String::from_utf8(bytes.to_vec()).map_err(|e| bad(&e))
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

/// `127.0.0.1:7470` or `bento.local:7470/x` means http: without a `://`,
/// `Url::parse` would take `bento.local` for a scheme (or fail on an IP).
fn with_scheme(url: &str) -> std::borrow::Cow<'_, str> {
    if url.contains("://") {
        url.into()
    } else {
        format!("http://{url}").into()
    }
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
        let c = Client::new("https://example.com/bento", None)?;
        assert_eq!(
            c.endpoint("tok")?.url.as_str(),
            "wss://example.com/bento/v1/sessions/tok/attach"
        );
        Ok(())
    }

    #[test]
    fn urls_without_a_scheme_are_http() -> Result<(), ClientError> {
        for (given, want) in [
            ("127.0.0.1:7470", "http://127.0.0.1:7470/"),
            ("localhost:7470", "http://localhost:7470/"),
            ("bento.example/api", "http://bento.example/api"),
        ] {
            assert_eq!(Client::new(given, None)?.url().as_str(), want, "{given}");
        }
        Ok(())
    }

    #[test]
    fn bad_urls_are_rejected() {
        assert!(Client::new("ftp://example.com", None).is_err());
        assert!(Client::new("http://", None).is_err());
        assert!(Client::new("https://", None).is_err());
    }
}
