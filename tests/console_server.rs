//! What the controller gained for the web console, without a browser: the
//! console's assets are public with a strict policy, `GET /v1/images`, the
//! attach WebSocket takes the API key as a subprotocol, and a watcher sees
//! output an attached client already acked. See `docs/console.md`.

mod kit;

use bento::client::Client;
use kit::requests::{http, KEY, SLEEPER};
use kit::{receive, TestServer};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The attach WebSocket with `Sec-WebSocket-Protocol: PROTOCOLS`: the
/// status, and the protocol the server chose.
async fn ws_with_protocols(url: &str, protocols: &str) -> (u16, Option<String>) {
    let mut req = url.into_client_request().unwrap_or_else(|e| panic!("{e}"));
    req.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(protocols).unwrap_or_else(|e| panic!("{e}")),
    );
    match tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tokio_tungstenite::connect_async(req),
    )
    .await
    {
        Ok(Ok((mut ws, resp))) => {
            let p = resp
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            let _ = ws.close(None).await;
            (resp.status().as_u16(), p)
        }
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(r))) => (r.status().as_u16(), None),
        Ok(Err(e)) => panic!("handshake: {e}"),
        Err(_) => panic!("handshake hung"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_public_and_the_websocket_takes_the_key_as_a_subprotocol() {
    let s = TestServer::start_fake(|c| c.api_key = Some(KEY.into())).await;
    // The assets need no key, and carry the policy.
    let r = http()
        .get(format!("{}/ui/", s.url))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap_or("")
        .contains("script-src 'self'"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/html"));
    let r = http()
        .get(format!("{}/ui/app.js", s.url))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/javascript"));
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
        .get(format!("{}/ui", s.url))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/ui/");
    // The data still needs it; the images list is there with it.
    let r = http()
        .get(format!("{}/v1/images", s.url))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 401);
    let images: Value = http()
        .get(format!("{}/v1/images", s.url))
        .bearer_auth(KEY)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(images[0]["name"], "python", "{images}");
    assert_eq!(images[0]["default"], true);
    assert!(images[0]["limits"]["memory"].as_u64().is_some());

    let keyed = Client::new(&s.url, Some(KEY.into())).unwrap_or_else(|e| panic!("client: {e}"));
    let f = kit::client::submit(&keyed, SLEEPER).await;
    let (token, _) = kit::client::try_create(&keyed, &f, &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!(
        "{}/v1/sessions/{token}/attach",
        s.url.replacen("http://", "ws://", 1)
    );
    let right = format!("bento.v1, bento.key.{}", hex(KEY));
    assert_eq!(
        ws_with_protocols(&url, &right).await,
        (101, Some("bento.v1".into()))
    );
    let wrong = format!("bento.v1, bento.key.{}", hex("not-the-key"));
    assert_eq!(ws_with_protocols(&url, &wrong).await.0, 401);
    assert_eq!(
        ws_with_protocols(&url, "bento.v1, bento.key.zz").await.0,
        401
    );
    // No key at all: the session's token is the capability
    // (docs/tenants.md), so the attach is taken; a wrong key never is.
    assert_eq!(ws_with_protocols(&url, "bento.v1").await.0, 101);
    // Only on a WebSocket: a plain request with the header is refused.
    let r = http()
        .get(format!("{}/v1/sessions", s.url))
        .header("sec-websocket-protocol", &right)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 401);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_sees_output_an_attached_client_already_acked() {
    let s = TestServer::start().await;
    let f = kit::client::submit(&s.client, "def main():\n    for i in range(50):\n        send(f'msg {i}')\n    while recv() is not None:\n        pass\n").await;
    let (token, _) = s.session(&f, &[]).await;
    let mut att = s.attach(&token, 0).await;
    let got = receive(&mut att, |r| r.data.len() == 50).await;
    assert_eq!(got.data.len(), 50);
    // Acked: the log holds none of it any more.
    s.wait_session(&token, "everything acked", |i| i.pending_messages == 0)
        .await;
    let page = s
        .client
        .output_page(&token, 0)
        .await
        .unwrap_or_else(|e| panic!("page: {e}"));
    let texts: Vec<&str> = page.messages.iter().map(|m| m.text.as_str()).collect();
    let want: Vec<String> = (0..50).map(|i| format!("msg {i}")).collect();
    assert_eq!(texts, want);
    assert!(page.complete && page.exit.is_none());
    assert_eq!(page.next_after, got.last_seq);
    // Read-only: the client is still attached, nothing changed hands.
    let info = s.info(&token).await;
    assert!(info.attached && info.pending_messages == 0, "{info:?}");
    // A page from further on starts there.
    let later = s
        .client
        .output_page(&token, 40)
        .await
        .unwrap_or_else(|e| panic!("page: {e}"));
    assert_eq!(later.messages.first().map(|m| m.seq), Some(41));
    s.client
        .kill_session(&token)
        .await
        .unwrap_or_else(|e| panic!("kill: {e}"));
    drop(att);
    s.stop().await;
}
