//! Request-level tests of the HTTP API and the attach WebSocket, against a
//! real controller and the real Docker engine: every bad request gets a 4xx
//! with a JSON `{"error": …}` that says what is wrong, bad frames close the
//! attach connection with a reason while the session lives on, API keys,
//! capacity, and secrets kept out of the logs. The behaviour expected is the
//! one `docs/api.md` and `docs/security.md` document.
//!
//! Checks of many malformed requests collect every mismatch and fail once
//! with the whole list, so one run shows everything that is off.

mod kit;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bento::client::{AttachOptions, Client, Event};
use bento::wire::api::{CloseReason, OutputFrame, ServerMsg, SessionState, Stream};
use futures_util::{SinkExt, StreamExt};
use kit::{receive, TestServer};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

/// A function that runs until killed. Bounded (10 minutes) rather than
/// `while True`, so a failed test cannot leave a container running forever.
const SLEEPER: &str = "import time\nfor _ in range(600):\n    time.sleep(1)\n";

/// A function that ends at once.
const QUICK: &str = "def main(*args):\n    return None\n";

const MIB: usize = 1 << 20;

const KEY: &str = "0123456789abcdef-test-key";

// ------------------------------------------------------------------ helpers

/// One HTTP answer, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    body: String,
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_else(|e| panic!("reqwest client: {e}"))
}

async fn answer(req: reqwest::RequestBuilder) -> Answer {
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
async fn call(
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

async fn get(url: &str) -> Answer {
    call(reqwest::Method::GET, url, None, None).await
}

async fn post_json(url: &str, body: impl Into<Vec<u8>>) -> Answer {
    call(
        reqwest::Method::POST,
        url,
        Some("application/json"),
        Some(body.into()),
    )
    .await
}

fn shorten(s: &str) -> String {
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
fn error_mismatch(a: &Answer, status: u16, phrases: &[&str]) -> Option<String> {
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
struct Checks(Vec<String>);

impl Checks {
    fn error(&mut self, what: &str, a: &Answer, status: u16, phrases: &[&str]) {
        if let Some(why) = error_mismatch(a, status, phrases) {
            self.0.push(format!("{what}: {why}"));
        }
    }

    fn fail(&mut self, what: &str, why: impl std::fmt::Display) {
        self.0.push(format!("{what}: {why}"));
    }

    fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} check(s) failed:\n  - {}",
            self.0.len(),
            self.0.join("\n  - ")
        );
    }
}

/// A token of the right shape that no session has.
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// A label prefix no other controller uses. A starting controller removes
/// every container carrying its prefix that its own database does not know
/// (`src/reconcile.rs`), so servers of tests running at the same time (in
/// this binary or another) must not share one, or each start kills the
/// others' containers.
fn unique_label_prefix() -> String {
    format!(
        "dev.bento.test-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// `TestServer::start_with`, with a label prefix of its own.
async fn server(tweak: impl FnOnce(&mut bento::config::Config)) -> TestServer {
    let prefix = unique_label_prefix();
    TestServer::start_with(move |c| {
        c.label_prefix = prefix;
        tweak(c);
    })
    .await
}

/// Creates a session through the raw API; returns (token, id).
async fn create(s: &TestServer, body: Value) -> (String, String) {
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
async fn kill_and_reap(s: &TestServer, token: &str) {
    if let Err(e) = s.client.kill_session(token).await {
        panic!("kill: {e}");
    }
    drain_and_reap(s, token).await;
}

/// Attaches, reads and acks everything up to the exit, and waits for the reap.
async fn drain_and_reap(s: &TestServer, token: &str) {
    let mut att = s.attach(token, 0).await;
    let r = receive(&mut att, |_| false).await;
    assert!(r.exit.is_some(), "no exit delivered: {:?}", r.end);
    s.wait_reaped(token).await;
}

async fn state_of(s: &TestServer, token: &str) -> Result<SessionState, String> {
    s.client
        .session(token)
        .await
        .map(|i| i.state)
        .map_err(|e| e.to_string())
}

// ----------------------------------------------------------- WebSocket helpers

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn ws_url(s: &TestServer, token: &str, query: &str) -> String {
    format!(
        "{}/v1/sessions/{token}/attach{query}",
        s.url.replacen("http://", "ws://", 1)
    )
}

async fn ws_connect(url: &str, key: Option<&str>) -> Result<Ws, tungstenite::Error> {
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
async fn ws_refused(url: &str, key: Option<&str>) -> Answer {
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
async fn next_msg(
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
async fn read_hello(ws: &mut Ws) -> ServerMsg {
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
async fn expect_protocol_close(ws: &mut Ws) -> Result<String, String> {
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
fn input_frame(seq: u64, payload_len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(9 + payload_len);
    f.push(1u8);
    f.extend_from_slice(&seq.to_be_bytes());
    f.resize(9 + payload_len, b'a');
    f
}

// ----------------------------------------------------- 1. bad HTTP requests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_function_rejects_bad_input_with_json_errors() {
    let s = server(|_| {}).await;
    let url = format!("{}/v1/functions", s.url);
    let mut c = Checks::default();

    // (what, body, status, phrases): every one sent as application/json.
    // docs/api.md: malformed JSON, wrong types, unknown fields, bad names,
    // unknown image are all 400.
    // BUG (src/api): wrong types, missing and unknown fields currently get
    // 422 (axum's JsonDataError status, passed through by
    // `From<JsonRejection> for ApiError`) instead of the documented 400.
    let long_name = "a".repeat(65);
    let cases: Vec<(&str, String, u16, Vec<&str>)> = vec![
        (
            "malformed JSON",
            r#"{"code": "x""#.into(),
            400,
            vec!["json"],
        ),
        ("empty body", String::new(), 400, vec!["json"]),
        ("JSON that is not an object", "[1, 2]".into(), 400, vec![]),
        // BUG (src/protocol.rs via serde): a JSON array is accepted in place
        // of the object (serde maps it onto the struct's fields in order), so
        // `["print(1)"]` is stored as a function (201).
        (
            "JSON array shaped like the fields",
            r#"["x = 1"]"#.into(),
            400,
            vec![],
        ),
        (
            "code of the wrong type",
            r#"{"code": 5}"#.into(),
            400,
            vec!["code", "invalid type"],
        ),
        (
            "missing code",
            r#"{"name": "x"}"#.into(),
            400,
            vec!["missing field", "code"],
        ),
        (
            "unknown field",
            r#"{"code": "x", "colour": "red"}"#.into(),
            400,
            vec!["unknown field", "colour"],
        ),
        (
            "name of the wrong type",
            r#"{"code": "x", "name": 7}"#.into(),
            400,
            vec!["name"],
        ),
        (
            "name with a space",
            json!({"code": "x", "name": "Bad Name"}).to_string(),
            400,
            vec!["invalid name"],
        ),
        (
            "name with a path",
            json!({"code": "x", "name": "../x"}).to_string(),
            400,
            vec!["invalid name"],
        ),
        (
            "65-character name",
            json!({"code": "x", "name": long_name}).to_string(),
            400,
            vec!["invalid name"],
        ),
        (
            "name starting with fn-",
            json!({"code": "x", "name": "fn-abc"}).to_string(),
            400,
            vec!["invalid name"],
        ),
        (
            "empty name",
            json!({"code": "x", "name": ""}).to_string(),
            400,
            vec!["invalid name"],
        ),
        (
            "name starting with -",
            json!({"code": "x", "name": "-x"}).to_string(),
            400,
            vec!["invalid name"],
        ),
        (
            "unknown image",
            json!({"code": "x", "image": "nope"}).to_string(),
            400,
            vec!["unknown image", "nope"],
        ),
    ];
    for (what, body, status, phrases) in cases {
        let a = post_json(&url, body).await;
        c.error(what, &a, status, &phrases);
    }

    // The content type must be JSON.
    let body = r#"{"code": "x"}"#.as_bytes().to_vec();
    let a = call(
        reqwest::Method::POST,
        &url,
        Some("text/plain"),
        Some(body.clone()),
    )
    .await;
    c.error("text/plain body", &a, 415, &["content-type"]);
    let a = call(reqwest::Method::POST, &url, None, Some(body)).await;
    c.error("body without a content type", &a, 415, &["content-type"]);

    // Code: 1 MiB is the limit.
    let over = json!({"code": "x".repeat(MIB + 1)}).to_string();
    let a = post_json(&url, over).await;
    c.error("code of 1 MiB + 1", &a, 413, &["code", "limit"]);
    // A body past the request limit (2 MiB + 4 KiB) is refused before parsing.
    let huge = json!({"code": "x".repeat(3 * MIB)}).to_string();
    let a = post_json(&url, huge).await;
    c.error("3 MiB body", &a, 413, &[]);

    // The boundaries themselves are accepted.
    let exact = json!({"code": format!("#{}", "x".repeat(MIB - 1))}).to_string();
    let a = post_json(&url, exact).await;
    if a.status != 201 {
        c.fail(
            "code of exactly 1 MiB",
            format!("{} {}", a.status, shorten(&a.body)),
        );
    }
    let name64 = format!("f{}", "0".repeat(63));
    let a = post_json(&url, json!({"code": "x = 1\n", "name": name64}).to_string()).await;
    if a.status != 201 {
        c.fail(
            "64-character name",
            format!("{} {}", a.status, shorten(&a.body)),
        );
    }

    c.finish();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_session_rejects_bad_input_with_json_errors() {
    let s = server(|_| {}).await;
    let f = s.submit(QUICK).await;
    let url = format!("{}/v1/sessions", s.url);
    let mut c = Checks::default();

    // BUG (src/api): as for functions, type errors and missing or unknown
    // fields are answered 422 instead of the documented 400.
    let many_args: Vec<String> = (0..257).map(|i| i.to_string()).collect();
    let long_arg = "x".repeat((64 << 10) + 1);
    let cases: Vec<(&str, String, u16, Vec<&str>)> = vec![
        (
            "malformed JSON",
            r#"{"function": "#.into(),
            400,
            vec!["json"],
        ),
        (
            "missing function",
            r#"{"args": []}"#.into(),
            400,
            vec!["missing field", "function"],
        ),
        (
            "function of the wrong type",
            r#"{"function": 1}"#.into(),
            400,
            vec!["function"],
        ),
        (
            "unknown function",
            json!({"function": "no-such-fn"}).to_string(),
            404,
            vec!["unknown function", "no-such-fn"],
        ),
        (
            "unknown field",
            json!({"function": f, "priority": 1}).to_string(),
            400,
            vec!["unknown field", "priority"],
        ),
        (
            "args not a list",
            json!({"function": f, "args": "x"}).to_string(),
            400,
            vec!["args"],
        ),
        (
            "args not strings",
            json!({"function": f, "args": [1, 2]}).to_string(),
            400,
            vec!["args"],
        ),
        (
            "257 args",
            json!({"function": f, "args": many_args}).to_string(),
            400,
            vec!["args"],
        ),
        (
            "an arg over 64 KiB",
            json!({"function": f, "args": [long_arg]}).to_string(),
            400,
            vec!["args"],
        ),
        (
            "transient not a bool",
            json!({"function": f, "transient": "yes"}).to_string(),
            400,
            vec!["transient"],
        ),
        (
            "limits not an object",
            json!({"function": f, "limits": 5}).to_string(),
            400,
            vec!["limits"],
        ),
        (
            "memory 100 GiB",
            json!({"function": f, "limits": {"memory": 100u64 << 30}}).to_string(),
            400,
            vec!["memory"],
        ),
        (
            "memory 1 byte",
            json!({"function": f, "limits": {"memory": 1}}).to_string(),
            400,
            vec!["memory"],
        ),
        (
            "memory negative",
            json!({"function": f, "limits": {"memory": -1}}).to_string(),
            400,
            vec!["memory"],
        ),
        (
            "pids 0",
            json!({"function": f, "limits": {"pids": 0}}).to_string(),
            400,
            vec!["pids"],
        ),
        (
            "pids -1",
            json!({"function": f, "limits": {"pids": -1}}).to_string(),
            400,
            vec!["pids"],
        ),
        (
            "pids 100000",
            json!({"function": f, "limits": {"pids": 100000}}).to_string(),
            400,
            vec!["pids"],
        ),
        (
            "cpus 0",
            json!({"function": f, "limits": {"cpus": 0}}).to_string(),
            400,
            vec!["cpus"],
        ),
        // Below the engine's minimum NanoCpus became 0: no limit at all.
        (
            "cpus 1e-300",
            json!({"function": f, "limits": {"cpus": 1e-300}}).to_string(),
            400,
            vec!["cpus", "0.01"],
        ),
        (
            "cpus 0.001",
            json!({"function": f, "limits": {"cpus": 0.001}}).to_string(),
            400,
            vec!["cpus", "0.01"],
        ),
        (
            "cpus 64",
            json!({"function": f, "limits": {"cpus": 64}}).to_string(),
            400,
            vec!["cpus"],
        ),
        (
            "unknown field in limits",
            json!({"function": f, "limits": {"disk": 1}}).to_string(),
            400,
            vec!["unknown field", "disk"],
        ),
        (
            "timeout \"forever\"",
            json!({"function": f, "limits": {"timeout": "forever"}}).to_string(),
            400,
            vec!["timeout"],
        ),
        // BUG (src/config/duration.rs): a number that is not a u64 gets
        // "data did not match any variant of untagged enum Raw", which names
        // an internal type instead of saying what a duration looks like (as
        // the "forever" case does: "invalid duration …").
        (
            "timeout negative",
            json!({"function": f, "limits": {"timeout": -5}}).to_string(),
            400,
            vec!["timeout", "duration"],
        ),
        (
            "timeout fractional",
            json!({"function": f, "limits": {"timeout": 1.5}}).to_string(),
            400,
            vec!["timeout", "duration"],
        ),
        // BUG (serde): as for functions, `["FUNCTION"]` is taken for
        // `{"function": "FUNCTION"}` and creates a session (201).
        (
            "JSON array shaped like the fields",
            json!([f]).to_string(),
            400,
            vec![],
        ),
        (
            "timeout beyond the maximum",
            json!({"function": f, "limits": {"timeout": "30d"}}).to_string(),
            400,
            vec!["timeout"],
        ),
        (
            "timeout 0 (none)",
            json!({"function": f, "limits": {"timeout": 0}}).to_string(),
            400,
            vec!["timeout"],
        ),
    ];
    for (what, body, status, phrases) in cases {
        let a = post_json(&url, body).await;
        c.error(what, &a, status, &phrases);
        if a.status == 201 {
            // Accepted by mistake: do not leave the session behind.
            let v: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
            if let Some(t) = v["token"].as_str() {
                drain_and_reap(&s, t).await;
            }
        }
    }
    let body = json!({"function": f}).to_string().into_bytes();
    let a = call(reqwest::Method::POST, &url, Some("text/plain"), Some(body)).await;
    c.error("text/plain body", &a, 415, &["content-type"]);

    // And a good request still works.
    let (token, _) = create(
        &s,
        json!({"function": f, "limits": {"memory": 64 << 20, "pids": 16, "timeout": "30s"}}),
    )
    .await;
    drain_and_reap(&s, &token).await;

    c.finish();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_and_reaped_tokens_get_the_same_404() {
    let s = server(|_| {}).await;
    let f = s.submit(QUICK).await;
    let (reaped, _) = s.session(&f, &[]).await;
    drain_and_reap(&s, &reaped).await;
    // A live token with its last character changed: a near miss.
    let (live, _) = s.session(&s.submit(SLEEPER).await, &[]).await;
    let mut near = live.clone();
    let last = if near.ends_with('0') { '1' } else { '0' };
    near.pop();
    near.push(last);

    let mut c = Checks::default();
    let mut reference: Option<Answer> = None;
    for (label, token) in [
        ("reaped token", reaped.clone()),
        ("random token", random_token()),
        ("near-miss token", near),
        ("short token", "abc".to_string()),
    ] {
        let base = format!("{}/v1/sessions/{token}", s.url);
        let answers = [
            ("GET", get(&base).await),
            (
                "POST close",
                call(reqwest::Method::POST, &format!("{base}/close"), None, None).await,
            ),
            (
                "POST kill",
                call(reqwest::Method::POST, &format!("{base}/kill"), None, None).await,
            ),
            (
                "GET attach (plain HTTP)",
                get(&format!("{base}/attach?after=0")).await,
            ),
            (
                "WebSocket attach",
                ws_refused(&ws_url(&s, &token, "?after=0"), None).await,
            ),
        ];
        for (what, a) in answers {
            let what = format!("{what} with a {label}");
            c.error(&what, &a, 404, &["session"]);
            // Every one of them gets exactly the same answer.
            match &reference {
                None => reference = Some(a),
                Some(r) if r.status == a.status && r.body == a.body => {}
                Some(r) => c.fail(
                    &what,
                    format!(
                        "answer differs: {} {:?} vs {} {:?}",
                        a.status, a.body, r.status, r.body
                    ),
                ),
            }
        }
    }
    // The live session itself is untouched by the near miss.
    match state_of(&s, &live).await {
        Ok(SessionState::Running) => {}
        other => c.fail("live session", format!("state {other:?}")),
    }
    kill_and_reap(&s, &live).await;
    c.finish();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_rejects_bad_queries_and_plain_http() {
    let s = server(|_| {}).await;
    let (token, _) = s.session(&s.submit(SLEEPER).await, &[]).await;
    let mut c = Checks::default();

    let base = format!("{}/v1/sessions/{token}/attach", s.url);
    c.error(
        "after=abc (plain HTTP)",
        &get(&format!("{base}?after=abc")).await,
        400,
        &["after"],
    );
    for (what, query, phrases) in [
        ("after=abc", "?after=abc", vec!["after"]),
        ("after=-1", "?after=-1", vec!["after"]),
        ("unknown query parameter", "?after=0&from=3", vec!["from"]),
        // The sleeper has produced nothing: last_seq is 0.
        ("after beyond the last seq", "?after=1", vec!["after"]),
        (
            "after far beyond the last seq",
            "?after=18446744073709551615",
            vec!["after"],
        ),
    ] {
        let a = ws_refused(&ws_url(&s, &token, query), None).await;
        c.error(what, &a, 400, &phrases);
    }

    // A GET without the upgrade headers: some 4xx, as JSON.
    let a = get(&format!("{base}?after=0")).await;
    if !(400..500).contains(&a.status) {
        c.fail(
            "attach without upgrade headers",
            format!("status {}", a.status),
        );
    }
    c.error("attach without upgrade headers", &a, a.status, &["upgrade"]);

    match state_of(&s, &token).await {
        Ok(SessionState::Running) => {}
        other => c.fail("session after refused attaches", format!("state {other:?}")),
    }
    kill_and_reap(&s, &token).await;
    c.finish();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_get_json_errors() {
    let s = server(|_| {}).await;
    let mut c = Checks::default();
    for path in [
        "/nope",
        "/v1",
        "/v1/function",
        "/v1/sessions/a/b/c",
        "/v2/functions",
    ] {
        let a = get(&format!("{}{path}", s.url)).await;
        c.error(&format!("GET {path}"), &a, 404, &["route"]);
    }
    // docs/api.md: "Every error is a 4xx or 5xx status with a JSON body".
    // BUG (src/api/mod.rs): a known path with the wrong method gets axum's
    // default 405 with an empty body and no content type. A
    // `.method_not_allowed_fallback(...)` answering ApiError would fix it.
    for (method, path) in [
        (reqwest::Method::DELETE, "/v1/functions"),
        (reqwest::Method::PUT, "/v1/sessions"),
        (reqwest::Method::GET, "/v1/sessions/abc/kill"),
        (reqwest::Method::POST, "/v1/sessions/abc/attach"),
        (reqwest::Method::POST, "/healthz"),
    ] {
        let a = call(method.clone(), &format!("{}{path}", s.url), None, None).await;
        c.error(&format!("{method} {path}"), &a, 405, &[]);
    }
    c.finish();
    s.stop().await;
}

// ------------------------------------------------- 2. bad WebSocket frames

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_the_connection_with_a_reason_and_the_session_lives_on() {
    let s = server(|_| {}).await;
    let (token, _) = s.session(&s.submit(SLEEPER).await, &[]).await;
    let url = ws_url(&s, &token, "?after=0");
    let mut c = Checks::default();

    let mut kind7 = input_frame(1, 1);
    kind7[0] = 7;
    let cases: Vec<(&str, Message, &str)> = vec![
        (
            "text that is not JSON",
            Message::text("hello there"),
            "control message",
        ),
        (
            "JSON of an unknown type",
            Message::text(r#"{"type":"launch_missiles"}"#),
            "control message",
        ),
        (
            "JSON without a type",
            Message::text(r#"{"seq":1}"#),
            "control message",
        ),
        (
            "ack with a string seq",
            Message::text(r#"{"type":"ack","seq":"1"}"#),
            "control message",
        ),
        (
            "binary shorter than 9 bytes",
            Message::binary(vec![1u8, 0, 0, 0]),
            "shorter",
        ),
        ("empty binary", Message::binary(Vec::<u8>::new()), "shorter"),
        ("binary of kind 7", Message::binary(kind7), "kind"),
        (
            "input with a gap (seq 5, 1 expected)",
            Message::binary(input_frame(5, 3)),
            "skips",
        ),
    ];
    for (what, frame, phrase) in cases {
        let mut ws = match ws_connect(&url, None).await {
            Ok(ws) => ws,
            Err(e) => panic!("attach for {what}: {e}"),
        };
        let hello = read_hello(&mut ws).await;
        assert!(
            matches!(hello, ServerMsg::Hello { input_next: 1, .. }),
            "no input was ever accepted, so input_next stays 1: {hello:?}"
        );
        if let Err(e) = ws.send(frame).await {
            c.fail(what, format!("sending the frame failed: {e}"));
            continue;
        }
        match expect_protocol_close(&mut ws).await {
            Ok(message) if message.to_lowercase().contains(phrase) => {}
            Ok(message) => c.fail(
                what,
                format!("protocol message {message:?} lacks {phrase:?}"),
            ),
            Err(e) => c.fail(what, e),
        }
        drop(ws);
        match state_of(&s, &token).await {
            Ok(SessionState::Running) => {}
            other => c.fail(what, format!("session afterwards: {other:?}")),
        }
    }

    // An input message over 1 MiB closes the connection (any close) instead
    // of hanging, and the session goes on.
    let mut ws = match ws_connect(&url, None).await {
        Ok(ws) => ws,
        Err(e) => panic!("attach for the oversize input: {e}"),
    };
    read_hello(&mut ws).await;
    let big = Message::binary(input_frame(1, MIB + 1));
    // A server that already closed may make the send itself fail; only a
    // send that never finishes is wrong.
    if tokio::time::timeout(Duration::from_secs(30), ws.send(big))
        .await
        .is_err()
    {
        c.fail("input over 1 MiB", "sending it hung");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => break Err("the connection stayed open for 30 s".to_string()),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => break Ok(()),
            Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains("\"closed\"") => {}
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains("\"ping\"") => {}
            Ok(Some(Ok(m))) => break Err(format!("unexpected message {m:?}")),
        }
    };
    if let Err(e) = closed {
        c.fail("input over 1 MiB", e);
    }
    drop(ws);
    match state_of(&s, &token).await {
        Ok(SessionState::Running) => {}
        other => c.fail("input over 1 MiB", format!("session afterwards: {other:?}")),
    }

    // And the session still serves a well-behaved client.
    let mut ws = match ws_connect(&url, None).await {
        Ok(ws) => ws,
        Err(e) => panic!("attach after the bad frames: {e}"),
    };
    read_hello(&mut ws).await;
    let _ = ws.close(None).await;
    drop(ws);

    kill_and_reap(&s, &token).await;
    c.finish();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_of_exactly_1_mib_is_taken_and_one_byte_more_is_not() {
    let s = server(|_| {}).await;
    let f = s
        .submit("def main():\n    while True:\n        m = recv()\n        if m is None:\n            break\n        send(str(len(m)))\n")
        .await;
    let (token, _) = s.session(&f, &[]).await;
    let url = ws_url(&s, &token, "?after=0");
    let mut ws = match ws_connect(&url, None).await {
        Ok(ws) => ws,
        Err(e) => panic!("attach: {e}"),
    };
    read_hello(&mut ws).await;
    if let Err(e) = ws.send(Message::binary(input_frame(1, MIB))).await {
        panic!("sending 1 MiB of input: {e}");
    }
    let (mut acked, mut echoed) = (false, None);
    while !(acked && echoed.is_some()) {
        match next_msg(&mut ws, 60, "the ack and echo of 1 MiB of input").await {
            Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerMsg>(t.as_str()) {
                Ok(ServerMsg::InputAck { seq }) => {
                    assert_eq!(seq, 1, "input ack");
                    acked = true;
                }
                Ok(ServerMsg::Ping) => {}
                other => panic!("unexpected {t}: {other:?}"),
            },
            Some(Ok(Message::Binary(b))) => match OutputFrame::decode(b) {
                Ok(f) if f.stream == Stream::Data && f.end => {
                    echoed = Some(String::from_utf8_lossy(&f.bytes).into_owned());
                }
                other => panic!("unexpected output {other:?}"),
            },
            other => panic!("1 MiB input: {other:?}"),
        }
    }
    assert_eq!(echoed.as_deref(), Some("1048576"));

    // One byte more: the connection is closed, the function lives on.
    let _ = ws.send(Message::binary(input_frame(2, MIB + 1))).await;
    loop {
        match next_msg(&mut ws, 30, "the close after an oversize input").await {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
            Some(Ok(_)) => {}
        }
    }
    drop(ws);
    assert_eq!(state_of(&s, &token).await, Ok(SessionState::Running));
    kill_and_reap(&s, &token).await;
    s.stop().await;
}

// ----------------------------------------------------------------- 3. auth

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_guards_everything_but_healthz() {
    let s = server(|c| c.api_key = Some(KEY.into())).await;
    let url = format!("{}/v1/functions", s.url);
    let mut c = Checks::default();

    let a = get(&url).await;
    c.error("no Authorization", &a, 401, &["api key"]);
    let a = answer(http().get(&url).bearer_auth("0123456789abcdef-test-kez")).await;
    c.error("wrong key", &a, 401, &["api key"]);
    let a = answer(http().get(&url).bearer_auth("short")).await;
    c.error("short wrong key", &a, 401, &["api key"]);
    let a = answer(http().get(&url).header("authorization", KEY)).await;
    c.error("key without Bearer", &a, 401, &["api key"]);
    let a = answer(http().get(&url).basic_auth("user", Some(KEY))).await;
    c.error("basic auth", &a, 401, &["api key"]);
    // Unknown routes and bad requests are refused before anything else.
    c.error(
        "unknown route without key",
        &get(&format!("{}/nope", s.url)).await,
        401,
        &["api key"],
    );
    let a = post_json(&url, "{").await;
    c.error("malformed submit without key", &a, 401, &["api key"]);
    // The error message never echoes the key that was sent.
    let a = answer(http().get(&url).bearer_auth("some-guess-that-is-wrong")).await;
    if a.body.contains("some-guess-that-is-wrong") {
        c.fail(
            "wrong key",
            format!("the answer echoes the key: {}", a.body),
        );
    }

    let a = answer(http().get(&url).bearer_auth(KEY)).await;
    if a.status != 200 || serde_json::from_str::<Vec<Value>>(&a.body).is_err() {
        c.fail("right key", format!("{a:?}"));
    }
    let a = get(&format!("{}/healthz", s.url)).await;
    if a.status != 200 {
        c.fail("/healthz without key", format!("{a:?}"));
    }

    // The WebSocket too: without a key 401, with it the token decides (404).
    let ws = ws_url(&s, &random_token(), "?after=0");
    c.error(
        "attach without key",
        &ws_refused(&ws, None).await,
        401,
        &["api key"],
    );
    c.error(
        "attach with a wrong key",
        &ws_refused(&ws, Some("nope-nope-nope-nope")).await,
        401,
        &["api key"],
    );
    c.error(
        "attach with the key",
        &ws_refused(&ws, Some(KEY)).await,
        404,
        &["session"],
    );

    c.finish();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_address_without_a_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let mut config = kit::repo_config();
    config.data_dir = dir.path().join("data");
    config.api_key = None;
    config.api_key_file = None;
    config.label_prefix = unique_label_prefix();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let shutdown = CancellationToken::new();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        bento::controller::run(listener, config, shutdown.clone()),
    )
    .await;
    shutdown.cancel();
    match result {
        Err(_) => panic!("server::run on 0.0.0.0 without a key did not return within 10 s"),
        Ok(Ok(())) => panic!("server::run on 0.0.0.0 without a key returned Ok"),
        Ok(Err(e)) => {
            let msg = format!("{e:#}");
            assert!(
                msg.to_lowercase().contains("api key"),
                "the error should name the API key: {msg}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_address_with_a_key_starts() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let mut config = kit::repo_config();
    config.data_dir = dir.path().join("data");
    config.api_key = Some(KEY.into());
    config.label_prefix = unique_label_prefix();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"))
        .port();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(bento::controller::run(listener, config, shutdown.clone()));

    // The listener is bound already: the request waits in its backlog.
    let health = tokio::time::timeout(
        Duration::from_secs(30),
        get(&format!("http://127.0.0.1:{port}/healthz")),
    )
    .await;
    let guarded = tokio::time::timeout(
        Duration::from_secs(30),
        get(&format!("http://127.0.0.1:{port}/v1/functions")),
    )
    .await;
    shutdown.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(10), task).await;

    match health {
        Ok(a) => {
            assert_eq!(a.status, 200, "/healthz: {a:?}");
            let v: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
            assert_eq!(v["status"], "ok", "/healthz: {a:?}");
        }
        Err(_) => panic!("/healthz did not answer within 30 s"),
    }
    match guarded {
        Ok(a) => {
            if let Some(why) = error_mismatch(&a, 401, &["api key"]) {
                panic!("/v1/functions without key: {why}");
            }
        }
        Err(_) => panic!("/v1/functions did not answer within 30 s"),
    }
    match ended {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => panic!("server failed: {e:#}"),
        Ok(Err(e)) => panic!("server task: {e}"),
        Err(_) => panic!("server did not stop within 10 s of the cancel"),
    }
}

// ------------------------------------------------------------- 4. capacity

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_sessions_creating_is_429_until_one_is_reaped() {
    let s = server(|c| c.max_sessions = 2).await;
    let f = s.submit(SLEEPER).await;
    let (a, _) = s.session(&f, &[]).await;
    let (b, _) = s.session(&f, &[]).await;

    let url = format!("{}/v1/sessions", s.url);
    let third = post_json(&url, json!({"function": f}).to_string()).await;
    if third.status == 201 {
        let v: Value = serde_json::from_str(&third.body).unwrap_or(Value::Null);
        if let Some(t) = v["token"].as_str() {
            kill_and_reap(&s, t).await;
        }
    }
    if let Some(why) = error_mismatch(&third, 429, &["capacity"]) {
        kill_and_reap(&s, &a).await;
        kill_and_reap(&s, &b).await;
        panic!("third session: {why}");
    }

    if let Err(e) = s.client.kill_session(&a).await {
        panic!("kill: {e}");
    }

    // Read its exit so it is reaped; then there is room again.
    let mut att = match s.client.attach(&a, AttachOptions::default()).await {
        Ok(att) => att,
        Err(e) => panic!("attach: {e}"),
    };
    let mut exit = None;
    while let Some(ev) = att.next().await {
        match ev {
            Event::Exit { seq, exit: e } => {
                exit = Some(e);
                att.written(seq);
            }
            Event::Output(o) => att.written(o.seq),
            Event::Ended(_) => break,
            _ => {}
        }
    }
    assert!(
        exit.is_some_and(|e| e.reason == bento::wire::api::ExitReason::Killed),
        "the killed session's exit"
    );
    s.wait_reaped(&a).await;
    let (c, _) = create(&s, json!({"function": f})).await;

    kill_and_reap(&s, &b).await;
    kill_and_reap(&s, &c).await;
    s.stop().await;
}

// ----------------------------------------------------------------- 5. logs

/// A `MakeWriter` appending everything to a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

/// `TestServer::wait_reaped` through a client that carries the API key.
async fn wait_reaped_with(client: &Client, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match client.session(token).await {
            Err(e) if e.is_not_found() => return,
            _ => {}
        }
        assert!(Instant::now() < deadline, "session was not reaped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the client side of the log test did, for checking the log.
struct Secrets {
    token: String,
    id: String,
    wrong_key: String,
    guessed: String,
}

/// The client side of the log test: submit, create, a refused key and an
/// unknown token, attach, close, reattach, kill, read the exit, wait for
/// the reap.
async fn client_flow(url: String) -> Secrets {
    let client = Client::new(&url, Some(KEY.into())).unwrap_or_else(|e| panic!("client: {e}"));
    let f = match client
        .submit_function(&bento::wire::api::SubmitFunction {
            code: SLEEPER.into(),
            name: Some("sleeper".into()),
            image: None,
            filename: None,
        })
        .await
    {
        Ok(f) => f.id,
        Err(e) => panic!("submit: {e}"),
    };
    let created = match client
        .create_session(&bento::wire::api::CreateSession {
            function: f,
            args: vec!["\"an-argument\"".into()],
            transient: false,
            limits: Default::default(),
        })
        .await
    {
        Ok(c) => c,
        Err(e) => panic!("create: {e}"),
    };
    let token = created.token.clone();

    // Requests that fail must not get what they were given logged either.
    let wrong_key = "wrong-key-0123456789-abcdef".to_string();
    let guessed = random_token();
    let a = answer(
        http()
            .get(format!("{url}/v1/sessions/{token}"))
            .bearer_auth(&wrong_key),
    )
    .await;
    assert_eq!(a.status, 401, "{a:?}");
    let a = answer(
        http()
            .get(format!("{url}/v1/sessions/{guessed}/attach?after=0"))
            .bearer_auth(KEY),
    )
    .await;
    assert_eq!(a.status, 404, "{a:?}");
    match client.session(&token).await {
        Ok(i) => assert_eq!(i.state, SessionState::Running),
        Err(e) => panic!("session: {e}"),
    }

    // Attach, be closed by the API, reattach, kill, read the exit.
    let mut att = match client.attach(&token, AttachOptions::default()).await {
        Ok(a) => a,
        Err(e) => panic!("attach: {e}"),
    };
    if let Err(e) = client.close_session(&token).await {
        panic!("close: {e}");
    }
    let r = receive(&mut att, |_| false).await;
    assert!(
        matches!(
            r.end,
            Some(bento::client::AttachEnd::Closed(CloseReason::ClosedByUser))
        ),
        "{:?}",
        r.end
    );
    let mut att = match client.attach(&token, AttachOptions::default()).await {
        Ok(a) => a,
        Err(e) => panic!("reattach: {e}"),
    };
    if let Err(e) = client.kill_session(&token).await {
        panic!("kill: {e}");
    }
    let r = receive(&mut att, |_| false).await;
    assert_eq!(
        r.exit.map(|e| e.reason),
        Some(bento::wire::api::ExitReason::Killed)
    );
    wait_reaped_with(&client, &token).await;
    Secrets {
        token,
        id: created.id,
        wrong_key,
        guessed,
    }
}

// `set_default` is per thread: the server runs on this test's single thread
// and logs into the capture, at TRACE, through `tracing` and (via the `log`
// bridge) through the `log` crate, as `bento serve` does. The client runs on
// a thread of its own, so what is checked is what the controller logs.
#[tokio::test(flavor = "current_thread")]
async fn tokens_and_keys_never_appear_in_logs() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    {
        // Forward `log` records (bollard, tungstenite) to `tracing`, as
        // `bento serve`'s `tracing_subscriber::fmt().init()` does. This sets
        // a global default too: an empty registry, so other threads' events
        // go nowhere; this thread keeps the capture above.
        use tracing_subscriber::util::SubscriberInitExt;
        let _ = tracing_subscriber::registry().try_init();
    }

    let s = server(|c| c.api_key = Some(KEY.into())).await;
    let url = s.url.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let client_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("client runtime: {e}"));
        let _ = tx.send(rt.block_on(client_flow(url)));
    });
    let secrets = match tokio::time::timeout(Duration::from_secs(300), rx).await {
        Ok(Ok(secrets)) => secrets,
        Ok(Err(_)) => match client_thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => panic!("the client thread ended without a result"),
        },
        Err(_) => panic!("the client side did not finish within 300 s"),
    };
    s.stop().await;

    let log = capture.text();
    assert!(!log.is_empty(), "nothing was logged");
    for want in [
        "session created",
        "client attached",
        "function ended",
        "session reaped",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(want) && l.contains(&secrets.id)),
            "the log should have {want:?} with the session id {} (proves the server's log was captured)",
            secrets.id
        );
    }
    let named = [
        ("session token", secrets.token.as_str()),
        ("API key", KEY),
        ("wrong API key", secrets.wrong_key.as_str()),
        ("guessed token", secrets.guessed.as_str()),
    ];
    let leaks: Vec<String> = log
        .lines()
        .filter_map(|l| {
            named
                .iter()
                .find(|(_, secret)| l.contains(secret))
                .map(|(what, _)| format!("[{what}] {}", shorten(l)))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets in the controller's log ({} of {} lines):\n{}",
        leaks.len(),
        log.lines().count(),
        leaks.join("\n")
    );
}

// The client side: `bento attach` with RUST_LOG=trace must not print the
// token or the key on stderr either ("neither the token nor the API key is
// ever logged", docs/security.md).
// BUG (src/main.rs / src/client/ws.rs): tungstenite's client handshake logs
// `Request: "GET /v1/sessions/TOKEN/attach?… authorization: Bearer KEY"` at
// TRACE, and `bento` forwards `log` records (fmt().init()), so both reach
// stderr. E.g. main.rs could always add the directive
// `tungstenite::handshake::client=off` (or `tungstenite=debug`) to its filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_never_logs_the_token_or_key_even_at_trace() {
    let s = server(|c| c.api_key = Some(KEY.into())).await;
    let client = Client::new(&s.url, Some(KEY.into())).unwrap_or_else(|e| panic!("client: {e}"));
    let f = match client
        .submit_function(&bento::wire::api::SubmitFunction {
            code: "def main():\n    return 'done'\n".into(),
            name: None,
            image: None,
            filename: None,
        })
        .await
    {
        Ok(f) => f.id,
        Err(e) => panic!("submit: {e}"),
    };
    let created = match client
        .create_session(&bento::wire::api::CreateSession {
            function: f,
            args: vec![],
            transient: false,
            limits: Default::default(),
        })
        .await
    {
        Ok(c) => c,
        Err(e) => panic!("create: {e}"),
    };
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_bento"))
        .args(["attach", "--no-stdin", &created.token])
        .env("BENTO_URL", &s.url)
        .env("BENTO_API_KEY", KEY)
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(Duration::from_secs(60), out).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => panic!("bento attach: {e}"),
        Err(_) => panic!("bento attach did not finish within 60 s"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("done"),
        "bento attach should print the result: status {:?}, stdout {stdout:?}",
        out.status
    );
    assert!(!stderr.is_empty(), "RUST_LOG=trace should log something");
    let leaks: Vec<String> = stderr
        .lines()
        .filter_map(|l| {
            let what: Vec<&str> = [("session token", created.token.as_str()), ("API key", KEY)]
                .iter()
                .filter(|(_, secret)| l.contains(secret))
                .map(|(what, _)| *what)
                .collect();
            (!what.is_empty()).then(|| format!("[{}] {l}", what.join(", ")))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "`RUST_LOG=trace bento attach` logs secrets:\n{}",
        leaks.join("\n")
    );
    // The CLI read and acked the exit, so the session goes away.
    wait_reaped_with(&client, &created.token).await;
    s.stop().await;
}

/// The seq of the next output message on `att`.
async fn first_output_seq(att: &mut bento::client::Attachment) -> u64 {
    loop {
        match att.next().await {
            Some(Event::Output(o)) => return o.seq,
            Some(_) => continue,
            None => panic!("the attachment ended before any output"),
        }
    }
}

/// A client that has stopped reading (its socket full, the server's write
/// to it waiting) can still ack what it wrote out and detach. The server
/// reads while it writes, so the ack counts and the next attach starts
/// after it; before, it was lost and the output came again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_from_a_client_that_stopped_reading_is_not_lost() {
    let s = TestServer::start().await;
    let f = s
        .submit(
            "def main(n):\n    b = b'x' * 65536\n    for _ in range(int(n)):\n        send(b)\n",
        )
        .await;
    // 32 MiB: far more than the attachment's queue and both sockets hold.
    let (token, _) = s.session(&f, &["512"]).await;
    let mut att = s.attach(&token, 0).await;
    let first = first_output_seq(&mut att).await;
    // Read no more. Once the function has produced all of it, the server
    // is stuck writing to this client.
    s.wait_session(&token, "the function to finish", |i| {
        i.state != SessionState::Running
    })
    .await;
    // Only now is the first message written out: its ack goes with the
    // detach, to a server that is waiting to write.
    att.written(first);
    att.detach().await;

    let mut again = s.attach(&token, 0).await;
    let next = first_output_seq(&mut again).await;
    assert_eq!(next, first + 1, "the ack for {first} was lost");
    drop(again);
    drain_and_reap(&s, &token).await;
    s.stop().await;
}
