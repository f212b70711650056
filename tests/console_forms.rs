//! The web console in a real browser: submit and run from the page (and
//! the images and health pages), and an API key: nothing shown without it.
//! Without chromium the browser tests print SKIPPED (and fail under
//! `BENTO_CONSOLE_TESTS=require`). See `docs/console.md`.

mod console_kit;
mod kit;

use bento::client::Client;
use console_kit::flow::open_session;
use console_kit::page::{
    click, confirm, goto, js, screenshot, set_value, type_into, wait_for, WAIT,
};
use console_kit::Browser;
use kit::requests::{KEY, SLEEPER};
use kit::TestServer;

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
    screenshot(c, "console-functions.png").await;
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
