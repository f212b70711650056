//! Showing and deleting functions, and removing ended sessions, through the
//! raw HTTP API against a real controller and the real Docker engine.

mod kit;

use std::time::Duration;

use bento::wire::api::SessionState;
use kit::{receive, TestServer};
use serde_json::{json, Value};

/// Runs until killed; bounded, so a failed test leaves nothing for long.
const SLEEPER: &str = "import time\nfor _ in range(600):\n    time.sleep(1)\n";

/// `(status, body as JSON or Null)` of `method url`.
async fn call(method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_else(|e| panic!("reqwest: {e}"));
    let mut req = http.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status().as_u16();
    let bytes = resp
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("{url} body: {e}"));
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn submit(s: &TestServer, code: &str, name: &str) -> String {
    let body = json!({"code": code, "name": name});
    let (status, v) = call(
        reqwest::Method::POST,
        &format!("{}/v1/functions", s.url),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_are_shown_and_deleted_by_id_or_name_and_their_sessions_run_on() {
    let s = TestServer::start().await;
    let old = submit(&s, SLEEPER, "sleeper").await;
    let new = submit(&s, SLEEPER, "sleeper").await;
    let url = |what: &str| format!("{}/v1/functions/{what}", s.url);

    let (status, v) = call(reqwest::Method::GET, &url(&old), None).await;
    assert_eq!((status, v["id"].as_str()), (200, Some(old.as_str())));
    let (status, v) = call(reqwest::Method::GET, &url("sleeper"), None).await;
    assert_eq!(
        (status, v["id"].as_str()),
        (200, Some(new.as_str())),
        "by name: the newest"
    );
    let (status, v) = call(reqwest::Method::GET, &url("nope"), None).await;
    assert_eq!(status, 404);
    assert_eq!(v["error"], "unknown function \"nope\"");

    // A session of the newest, then the newest is deleted by name.
    let (token, _) = s.session("sleeper", &[]).await;
    let (status, v) = call(reqwest::Method::DELETE, &url("sleeper"), None).await;
    assert_eq!((status, v["id"].as_str()), (200, Some(new.as_str())));
    let (status, _) = call(reqwest::Method::GET, &url(&new), None).await;
    assert_eq!(status, 404, "deleted");
    let (status, v) = call(reqwest::Method::GET, &url("sleeper"), None).await;
    assert_eq!(
        (status, v["id"].as_str()),
        (200, Some(old.as_str())),
        "the name passes to the newest left"
    );
    let (status, _) = call(reqwest::Method::DELETE, &url(&new), None).await;
    assert_eq!(status, 404, "a second delete finds nothing");
    let listed = s.client.list_functions().await.unwrap_or_default();
    assert_eq!(
        listed.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
        [old.as_str()]
    );
    // Its session runs on; a new one of it cannot start.
    let info = s.info(&token).await;
    assert_eq!(info.state, SessionState::Running);
    let (status, _) = call(
        reqwest::Method::POST,
        &format!("{}/v1/sessions", s.url),
        Some(json!({"function": new})),
    )
    .await;
    assert_eq!(status, 404);

    s.client
        .kill_session(&token)
        .await
        .unwrap_or_else(|e| panic!("kill: {e}"));
    let mut att = s.attach(&token, 0).await;
    let r = receive(&mut att, |_| false).await;
    assert_eq!(r.exit.map(|e| e.code), Some(137));
    s.wait_reaped(&token).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_is_removed_with_its_unread_output_and_a_running_one_is_refused() {
    let s = TestServer::start().await;
    let f = s.submit(SLEEPER).await;
    let (token, id) = s.session(&f, &[]).await;
    let url = format!("{}/v1/sessions/{token}", s.url);

    let (status, v) = call(reqwest::Method::DELETE, &url, None).await;
    assert_eq!(status, 409, "{v}");
    let message = v["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("still running") && message.contains("kill it first"),
        "{message}"
    );
    assert_eq!(
        s.client.session(&token).await.map(|i| i.state).ok(),
        Some(SessionState::Running),
        "a refused removal leaves the function running"
    );

    s.client
        .kill_session(&token)
        .await
        .unwrap_or_else(|e| panic!("kill: {e}"));
    let ended = s
        .wait_session(&token, "killed", |i| i.state == SessionState::Ended)
        .await;
    assert!(ended.pending_messages >= 1, "its exit is unread: {ended:?}");
    let (status, v) = call(reqwest::Method::DELETE, &url, None).await;
    assert_eq!(status, 204, "{v}");
    // Gone at once, with its container: the answer came after the reap.
    let (status, _) = call(reqwest::Method::GET, &url, None).await;
    assert_eq!(status, 404);
    assert_eq!(s.containers(&id).await, 0, "container removed");
    let (status, _) = call(reqwest::Method::DELETE, &url, None).await;
    assert_eq!(status, 404, "removing twice");
    s.stop().await;
}
