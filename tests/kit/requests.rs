//! Raw requests to the API, for the tests of the API itself: one HTTP
//! answer read whole, the documented error answer (`status`, a JSON
//! `{"error": …}` saying what is wrong), checks that collect every mismatch
//! and fail once with the whole list, and the attach WebSocket spoken by
//! hand.

use std::time::Duration;

use bento::wire::api::{CloseReason, ServerMsg, SessionState};
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

use super::{receive, TestServer};

/// A function that runs until killed. Bounded (10 minutes) rather than
/// `while True`, so a failed test cannot leave a container running forever.
pub const SLEEPER: &str = "import time\nfor _ in range(600):\n    time.sleep(1)\n";

/// A function that ends at once.
pub const QUICK: &str = "def main(*args):\n    return None\n";

pub const MIB: usize = 1 << 20;

/// The API key of the tests that set one.
pub const KEY: &str = "0123456789abcdef-test-key";

// ------------------------------------------------------------------ HTTP

/// One HTTP answer, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_else(|e| panic!("reqwest client: {e}"))
}

pub async fn answer(req: reqwest::RequestBuilder) -> Answer {
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match resp.bytes().await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => panic!("reading the body: {e}"),
    };
    Answer {
        status,
        content_type,
        body,
    }
}

/// `method` on `url`, with an optional body and its content type.
pub async fn call(
    method: reqwest::Method,
    url: &str,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
) -> Answer {
    let mut req = http().request(method, url);
    if let Some(ct) = content_type {
        req = req.header(reqwest::header::CONTENT_TYPE, ct);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    answer(req).await
}

pub async fn get(url: &str) -> Answer {
    call(reqwest::Method::GET, url, None, None).await
}

pub async fn post_json(url: &str, body: impl Into<Vec<u8>>) -> Answer {
    call(
        reqwest::Method::POST,
        url,
        Some("application/json"),
        Some(body.into()),
    )
    .await
}

pub fn shorten(s: &str) -> String {
    if s.len() <= 300 {
        return s.to_string();
    }
    let mut end = 300;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

/// Why `a` is not the documented error answer (`status`, JSON
/// `{"error": "…"}` containing every phrase, case-insensitively), if it is not.
pub fn error_mismatch(a: &Answer, status: u16, phrases: &[&str]) -> Option<String> {
    let mut why = Vec::new();
    if a.status != status {
        why.push(format!("status {} (want {status})", a.status));
    }
    if !a
        .content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("application/json"))
    {
        why.push(format!(
            "content-type {:?} (want application/json)",
            a.content_type
        ));
    }
    match serde_json::from_str::<Value>(&a.body) {
        Ok(Value::Object(m)) => match m.get("error") {
            Some(Value::String(e)) => {
                let lower = e.to_lowercase();
                for p in phrases {
                    if !lower.contains(&p.to_lowercase()) {
                        why.push(format!("message {e:?} does not mention {p:?}"));
                    }
                }
                if e.trim().is_empty() {
                    why.push("empty error message".into());
                }
            }
            _ => why.push(format!("no \"error\" string in {}", shorten(&a.body))),
        },
        _ => why.push(format!("body is not a JSON object: {:?}", shorten(&a.body))),
    }
    if why.is_empty() {
        None
    } else {
        Some(why.join("; "))
    }
}

/// Collects mismatches, to report them all at once.
#[derive(Default)]
pub struct Checks(Vec<String>);

impl Checks {
    pub fn error(&mut self, what: &str, a: &Answer, status: u16, phrases: &[&str]) {
        if let Some(why) = error_mismatch(a, status, phrases) {
            self.0.push(format!("{what}: {why}"));
        }
    }

    pub fn fail(&mut self, what: &str, why: impl std::fmt::Display) {
        self.0.push(format!("{what}: {why}"));
    }

    pub fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} check(s) failed:\n  - {}",
            self.0.len(),
            self.0.join("\n  - ")
        );
    }
}

/// A token of the right shape that no session has.
pub fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

// -------------------------------------------------------------- sessions

/// Creates a session through the raw API; returns (token, id).
pub async fn create(s: &TestServer, body: Value) -> (String, String) {
    let a = post_json(&format!("{}/v1/sessions", s.url), body.to_string()).await;
    assert_eq!(a.status, 201, "create session: {a:?}");
    let v: Value = serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{e}: {a:?}"));
    match (v["token"].as_str(), v["id"].as_str()) {
        (Some(t), Some(i)) => (t.to_string(), i.to_string()),
        _ => panic!("create session answered {a:?}"),
    }
}

/// Kills a session, reads (and acks) its exit, and waits until it is reaped,
/// so no container outlives the test.
pub async fn kill_and_reap(s: &TestServer, token: &str) {
    if let Err(e) = s.client.kill_session(token).await {
        panic!("kill: {e}");
    }
    drain_and_reap(s, token).await;
}

/// Attaches, reads and acks everything up to the exit, and waits for the reap.
pub async fn drain_and_reap(s: &TestServer, token: &str) {
    let mut att = s.attach(token, 0).await;
    let r = receive(&mut att, |_| false).await;
    assert!(r.exit.is_some(), "no exit delivered: {:?}", r.end);
    s.wait_reaped(token).await;
}

pub async fn state_of(s: &TestServer, token: &str) -> Result<SessionState, String> {
    s.client
        .session(token)
        .await
        .map(|i| i.state)
        .map_err(|e| e.to_string())
}

// ------------------------------------------------------------- WebSocket

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub fn ws_url(s: &TestServer, token: &str, query: &str) -> String {
    format!(
        "{}/v1/sessions/{token}/attach{query}",
        s.url.replacen("http://", "ws://", 1)
    )
}

pub async fn ws_connect(url: &str, key: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let mut req = url
        .into_client_request()
        .unwrap_or_else(|e| panic!("request for {url}: {e}"));
    if let Some(k) = key {
        let v =
            HeaderValue::from_str(&format!("Bearer {k}")).unwrap_or_else(|e| panic!("header: {e}"));
        req.headers_mut().insert("authorization", v);
    }
    match tokio::time::timeout(
        Duration::from_secs(20),
        tokio_tungstenite::connect_async(req),
    )
    .await
    {
        Ok(r) => r.map(|(ws, _)| ws),
        Err(_) => panic!("WebSocket handshake with {url} hung"),
    }
}

/// The HTTP answer to a WebSocket handshake that should be refused; an
/// accepted handshake reads as status 101.
pub async fn ws_refused(url: &str, key: Option<&str>) -> Answer {
    match ws_connect(url, key).await {
        Err(tungstenite::Error::Http(resp)) => Answer {
            status: resp.status().as_u16(),
            content_type: resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: resp
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
        },
        Err(e) => panic!("handshake with {url} failed without an HTTP answer: {e}"),
        Ok(mut ws) => {
            let _ = ws.close(None).await;
            Answer {
                status: 101,
                content_type: None,
                body: "(the WebSocket handshake was accepted)".into(),
            }
        }
    }
}

/// The next WebSocket message, or a panic after `secs` of silence.
pub async fn next_msg(
    ws: &mut Ws,
    secs: u64,
    what: &str,
) -> Option<Result<Message, tungstenite::Error>> {
    match tokio::time::timeout(Duration::from_secs(secs), ws.next()).await {
        Ok(m) => m,
        Err(_) => panic!("nothing received within {secs} s while waiting for {what}"),
    }
}

/// Reads the `hello` every attach starts with.
pub async fn read_hello(ws: &mut Ws) -> ServerMsg {
    loop {
        match next_msg(ws, 20, "hello").await {
            Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerMsg>(t.as_str()) {
                Ok(h @ ServerMsg::Hello { .. }) => return h,
                other => panic!("first message is not hello: {t} ({other:?})"),
            },
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected hello, got {other:?}"),
        }
    }
}

/// Waits for `{"type":"closed","reason":{"kind":"protocol",…}}` and a close
/// frame with code 1008; returns the protocol message, or what went wrong.
pub async fn expect_protocol_close(ws: &mut Ws) -> Result<String, String> {
    let mut closed: Option<Value> = None;
    loop {
        let msg = match tokio::time::timeout(Duration::from_secs(15), ws.next()).await {
            Err(_) => {
                return Err(format!(
                    "connection still open 15 s after the bad frame (closed message: {closed:?})"
                ))
            }
            Ok(None) => return Err(format!("socket ended without a close frame ({closed:?})")),
            Ok(Some(Err(e))) => {
                return Err(format!(
                    "socket failed before a close frame: {e} ({closed:?})"
                ))
            }
            Ok(Some(Ok(m))) => m,
        };
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str())
                    .map_err(|e| format!("server sent non-JSON text {t:?}: {e}"))?;
                match v["type"].as_str() {
                    Some("closed") => closed = Some(v),
                    Some("ping") | Some("pong") => {}
                    _ => return Err(format!("unexpected message before the close: {t}")),
                }
            }
            Message::Ping(_) | Message::Pong(_) => {}
            Message::Close(frame) => {
                let code = frame.as_ref().map(|f| u16::from(f.code));
                let Some(v) = closed else {
                    return Err(format!(
                        "close frame {frame:?} without a preceding \"closed\" message"
                    ));
                };
                if v["reason"]["kind"] != "protocol" {
                    return Err(format!("closed with reason {}, not protocol", v["reason"]));
                }
                // The typed form must parse too.
                if !matches!(
                    serde_json::from_value::<ServerMsg>(v.clone()),
                    Ok(ServerMsg::Closed {
                        reason: CloseReason::Protocol { .. }
                    })
                ) {
                    return Err(format!("\"closed\" message does not parse: {v}"));
                }
                if code != Some(1008) {
                    return Err(format!("close code {code:?}, want 1008"));
                }
                return Ok(v["reason"]["message"].as_str().unwrap_or("").to_string());
            }
            other => return Err(format!("unexpected message {other:?}")),
        }
    }
}

/// Input frame bytes: kind 1, seq, payload.
pub fn input_frame(seq: u64, payload_len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(9 + payload_len);
    f.push(1u8);
    f.extend_from_slice(&seq.to_be_bytes());
    f.resize(9 + payload_len, b'a');
    f
}
