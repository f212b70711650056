//! The web console, continued: submit and run from the page; an API key
//! (nothing shown without it; the attach WebSocket takes it as a
//! subprotocol); hostile output shown as text; 20 MiB of output with the
//! page still answering clicks. And, without a browser, the two server
//! additions the console needs: the key as a WebSocket subprotocol, and
//! watchers that see output an attached client has already acked.

mod console_kit;
mod kit;

use bento::client::Client;
use console_kit::flow::{cli_start, open_session, output, submit_named};
use console_kit::page::{click, confirm, goto, js, set_value, type_into, wait_for, WAIT};
use console_kit::Browser;
use kit::requests::{http, KEY, SLEEPER};
use kit::{receive, TestServer};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_and_run_from_the_page_shows_the_token_and_the_output() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let s = TestServer::start().await;
    let c = &b.client;
    goto(c, &format!("{}/ui/#/functions", s.url)).await;
    wait_for(
        c,
        "the submit form",
        "return document.getElementById('submit-form');",
        WAIT,
    )
    .await;
    set_value(
        c,
        "#code",
        "def main(name, times):\n    for _ in range(times):\n        print(f'hello {name}')\n",
    )
    .await;
    type_into(c, "#fn-name", "greeter").await;
    click(c, "#submit-form button[type=submit]").await;
    wait_for(
        c,
        "the function stored",
        "return document.getElementById('submit-result').textContent.startsWith('Stored greeter');",
        WAIT,
    )
    .await;
    // Code that does not compile is refused with Python's own words.
    set_value(c, "#code", "def main(:\n").await;
    type_into(c, "#fn-name", "-broken").await;
    click(c, "#submit-form button[type=submit]").await;
    wait_for(
        c,
        "the refusal",
        "return document.getElementById('submit-result').textContent.includes('does not compile');",
        WAIT,
    )
    .await;

    // Run it: the form offers the image's limits.
    wait_for(
        c,
        "the limits of the image",
        "return document.getElementById('limits-note').textContent.includes('at most');",
        WAIT,
    )
    .await;
    let selected = js(c, "const s = document.getElementById('run-function'); return s.options[s.selectedIndex].text;").await;
    assert!(
        selected.as_str().unwrap_or("").starts_with("greeter"),
        "{selected}"
    );
    set_value(c, "#run-args", "\"page\"\n3").await;
    type_into(c, "#run-memory", "128").await;
    click(c, "#run-form button[type=submit]").await;
    let token = wait_for(
        c,
        "the token",
        "const t = document.getElementById('run-token'); return t && t.textContent;",
        WAIT,
    )
    .await;
    let token = token.as_str().unwrap_or("").to_string();
    assert_eq!(token.len(), 64, "{token}");
    let info = s.info(&token).await;
    assert_eq!(info.limits.map(|l| l.memory), Some(128 << 20));
    assert_eq!(info.function_name.as_deref(), Some("greeter"));
    click(c, "#run-session").await;
    wait_for(c, "its output", "return document.getElementById('output').textContent === 'hello page\\nhello page\\nhello page\\n';", WAIT).await;
    wait_for(c, "its exit", "const e = document.getElementById('exit'); return !e.hidden && e.textContent.includes('code 0');", WAIT).await;

    // The images view: the limits and the warm pool.
    goto(c, &format!("{}/ui/#/images", s.url)).await;
    wait_for(c, "the images", "const t = document.getElementById('images'); return t && t.textContent.includes('python (default)') && t.textContent.includes('256.0 MiB');", WAIT).await;
    goto(c, &format!("{}/ui/#/health", s.url)).await;
    wait_for(c, "health and figures", "return document.getElementById('health').textContent.startsWith('Healthy') && document.querySelector('[data-figure=\"ended\"]');", WAIT).await;
    b.close().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_api_key_the_page_shows_nothing_without_it() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let s = TestServer::start_fake(|c| c.api_key = Some(KEY.into())).await;
    let keyed = Client::new(&s.url, Some(KEY.into())).unwrap_or_else(|e| panic!("client: {e}"));
    let f = kit::client::submit(&keyed, SLEEPER).await;
    let (token, id) = kit::client::try_create(&keyed, &f, &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let c = &b.client;
    goto(c, &format!("{}/ui/", s.url)).await;
    wait_for(
        c,
        "the key form",
        "return document.getElementById('login');",
        WAIT,
    )
    .await;
    let shown = js(c, "return document.documentElement.outerHTML;").await;
    let shown = shown.as_str().unwrap_or("");
    assert!(
        !shown.contains(&id) && !shown.contains(&token[..8]),
        "the page showed a session without the key"
    );
    assert!(js(c, "return document.getElementById('sessions');")
        .await
        .is_null());

    type_into(c, "#key", "not-the-key\n").await;
    wait_for(c, "the wrong key refused", "const e = document.getElementById('login-error'); return e && e.textContent.includes('wrong API key');", WAIT).await;
    assert!(!js(c, "return document.documentElement.outerHTML;")
        .await
        .as_str()
        .unwrap_or("")
        .contains(&id));

    type_into(c, "#key", &format!("{KEY}\n")).await;
    wait_for(
        c,
        "the session listed",
        &format!("return document.querySelector('tr[data-id=\"{id}\"]');"),
        WAIT,
    )
    .await;
    // Kept for this tab only.
    assert_eq!(
        js(c, "return sessionStorage.getItem('bento.key');").await,
        KEY
    );
    assert_eq!(js(c, "return localStorage.length;").await, 0);

    // The attach WebSocket carries the key too (as a subprotocol).
    open_session(&b, &s, &id).await;
    click(c, "#attach").await;
    confirm(c).await;
    wait_for(
        c,
        "attached with the key",
        "return document.getElementById('mode').textContent.includes('Attached: attached');",
        WAIT,
    )
    .await;
    let info = keyed
        .session(&token)
        .await
        .unwrap_or_else(|e| panic!("inspect: {e}"));
    assert!(info.attached, "{info:?}");

    click(c, "#logout").await;
    wait_for(
        c,
        "the key form again",
        "return document.getElementById('login');",
        WAIT,
    )
    .await;
    assert!(js(c, "return sessionStorage.getItem('bento.key');")
        .await
        .is_null());
    b.close().await;
    s.stop().await;
}

const HOSTILE: &str = "import os\n\ndef main():\n    os.write(1, b'<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">\\n')\n    os.write(1, b'bad \\xff\\xfe bytes\\n')\n    send('<script>window.__pwned = 3</script>')\n    while recv() is not None:\n        pass\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_with_script_is_shown_as_text_and_bad_utf8_as_replacement() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let s = TestServer::start().await;
    submit_named(&s, "hostile", HOSTILE).await;
    let (token, id) = cli_start(&s, "hostile", &[]).await;
    open_session(&b, &s, &id).await;
    let c = &b.client;
    let want = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">\nbad \u{FFFD}\u{FFFD} bytes\n<script>window.__pwned = 3</script>\n";
    // Watching (the server's lossy text), then attached (the page's own
    // TextDecoder over the bytes): the same text, and nothing ran.
    for how in ["watch", "attach"] {
        if how == "attach" {
            click(c, "#attach").await;
            confirm(c).await;
        }
        wait_for(
            c,
            &format!("the hostile output ({how})"),
            "return document.getElementById('output').textContent.includes('__pwned = 3');",
            WAIT,
        )
        .await;
        assert_eq!(output(&b).await, want, "{how}");
        assert_eq!(js(c, "return document.querySelectorAll('#output script, #output img, #output *:not(span)').length;").await, 0, "{how}");
        assert!(
            js(c, "return window.__pwned === undefined;")
                .await
                .as_bool()
                .unwrap_or(false),
            "{how}: script ran"
        );
    }
    s.client
        .kill_session(&token)
        .await
        .unwrap_or_else(|e| panic!("kill: {e}"));
    b.close().await;
    s.stop().await;
}

/// 20 MiB of stdout in 64 KiB writes of 1 KiB lines over about five
/// seconds (so that clicks land while it streams in), then `END`.
const FLOOD: &str = "import sys, time\n\ndef main():\n    chunk = ('x' * 1023 + '\\n') * 64\n    for _ in range(320):\n        sys.stdout.write(chunk)\n        sys.stdout.flush()\n        time.sleep(0.015)\n    print('END')\n";

/// Installs a click probe on `#wrap`: how long the click waited for the
/// page (the handler's time less the event's own timestamp), and whether
/// the output was still streaming in.
const PROBE: &str = "window.__clicks = window.__clicks || []; \
document.getElementById('wrap').addEventListener('click', (e) => { \
  window.__clicks.push({ waited: performance.now() - e.timeStamp, \
    streaming: document.getElementById('exit').hidden }); }, { once: true }); return true;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_mib_of_output_keep_the_page_answering_clicks() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let s = TestServer::start().await;
    submit_named(&s, "flood", FLOOD).await;
    let (token, id) = cli_start(&s, "flood", &[]).await;
    open_session(&b, &s, &id).await;
    let c = &b.client;
    let total = 20 * (1 << 20) + 4;
    wait_for(c, "the first MiB on screen", "return parseInt(document.getElementById('counter').textContent.replace(/\\D/g, '') || '0') > 1048576;", WAIT).await;
    // Click (WebDriver's click, as a user's) until the output has all come.
    let mut clicks = 0;
    loop {
        js(c, PROBE).await;
        click(c, "#wrap").await;
        clicks += 1;
        let done = js(c, "return !document.getElementById('exit').hidden;").await;
        if done.as_bool().unwrap_or(false) || clicks >= 50 {
            break;
        }
    }
    let seen = wait_for(
        c,
        "every click handled",
        &format!("return window.__clicks.length === {clicks} && window.__clicks;"),
        WAIT,
    )
    .await;
    let seen: Vec<(f64, bool)> = seen
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| {
                    (
                        v["waited"].as_f64().unwrap_or(f64::MAX),
                        v["streaming"].as_bool().unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    eprintln!(
        "console: {clicks} clicks during 20 MiB of output waited (ms): {:?}",
        seen.iter().map(|s| s.0.round()).collect::<Vec<_>>()
    );
    assert!(
        seen.iter().any(|s| s.1),
        "no click landed while output was streaming in: {seen:?}"
    );
    for (waited, _) in &seen {
        assert!(
            (0.0..1000.0).contains(waited),
            "a click waited {waited} ms for the page"
        );
    }
    // Everything arrived; the page holds only its bounded scrollback.
    wait_for(c, "the end", &format!("return document.getElementById('counter').textContent.replace(/\\D/g, '') === '{total}' && !document.getElementById('exit').hidden;"), WAIT).await;
    let held = js(
        c,
        "return document.getElementById('output').textContent.length;",
    )
    .await;
    assert!(
        held.as_u64().unwrap_or(u64::MAX) <= 256 * 1024,
        "{held} characters on screen"
    );
    assert!(output(&b).await.ends_with("END\n"));
    assert!(!js(c, "return document.getElementById('trimmed').hidden;")
        .await
        .as_bool()
        .unwrap_or(true));
    // The download offers all of it.
    let full = c
        .execute_async(
            "const done = arguments[arguments.length - 1]; import('./watch.js').then((m) => m.heldText(arguments[0])).then((t) => done(t.length), (e) => done(String(e)));",
            vec![json!(token)],
        )
        .await
        .unwrap_or_else(|e| panic!("held text: {e}"));
    assert!(
        full.as_u64().unwrap_or(0) >= total as u64,
        "the download had {full}"
    );
    b.close().await;
    s.stop().await;
}

// ------------------------------------------------- without a browser

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
    assert_eq!(ws_with_protocols(&url, "bento.v1").await.0, 401);
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
