//! Reading and driving the console's page: waits run in the page (a
//! condition checked every 50 ms there, up to a limit), so a test waits for
//! what the page shows rather than for a time.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde_json::{json, Value};

/// The default limit of a wait.
pub const WAIT: Duration = Duration::from_secs(60);

/// Waits until `cond` (the body of a JS function, `return …;`) gives a
/// truthy value, and answers it; fails the test with `what` after `limit`.
pub async fn wait_for(c: &Client, what: &str, cond: &str, limit: Duration) -> Value {
    let script = format!(
        r#"const done = arguments[arguments.length - 1];
const limit = arguments[0];
const t0 = performance.now();
function cond() {{ {cond} }}
(function check() {{
  let v = null, err = null;
  try {{ v = cond(); }} catch (e) {{ err = String(e); }}
  if (v) done({{ ok: v }});
  else if (performance.now() - t0 > limit) done({{ timeout: true, err }});
  else setTimeout(check, 50);
}})();"#
    );
    let start = Instant::now();
    loop {
        // One call waits at most 20 s: the WebDriver script timeout is 30 s.
        let left = limit
            .saturating_sub(start.elapsed())
            .min(Duration::from_secs(20));
        let r = c
            .execute_async(&script, vec![json!(left.as_millis() as u64)])
            .await;
        match r {
            Ok(v) if v.get("ok").is_some() => return v["ok"].clone(),
            Ok(v) => {
                if start.elapsed() >= limit {
                    let shown = body_text(c).await;
                    panic!("waited {limit:?} for {what} ({v}); the page shows:\n{shown}");
                }
            }
            // A navigation ends a running script: ask again.
            Err(e) => {
                if start.elapsed() >= limit {
                    panic!("waiting for {what}: {e}");
                }
            }
        }
    }
}

/// The page's visible text, for failure messages.
pub async fn body_text(c: &Client) -> String {
    match c.execute("return document.body.innerText", vec![]).await {
        Ok(Value::String(s)) => s.chars().take(4000).collect(),
        other => format!("{other:?}"),
    }
}

/// Runs `script` (`return …;`) and answers its value.
pub async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
}

/// The text of the element `css` (its `textContent`), or "" if none.
pub async fn text(c: &Client, css: &str) -> String {
    let v = c
        .execute(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
            vec![json!(css)],
        )
        .await
        .unwrap_or_else(|e| panic!("text of {css}: {e}"));
    v.as_str().unwrap_or("").to_string()
}

pub async fn goto(c: &Client, url: &str) {
    c.goto(url)
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"));
}

/// Clicks the element `css` as a user would (WebDriver's element click).
pub async fn click(c: &Client, css: &str) {
    let e = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("find {css}: {e}"));
    e.click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// Types `keys` into the element `css` (WebDriver key events).
pub async fn type_into(c: &Client, css: &str, keys: &str) {
    let e = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("find {css}: {e}"));
    e.send_keys(keys)
        .await
        .unwrap_or_else(|e| panic!("type into {css}: {e}"));
}

/// Sets a field's value (for long text: pasting, not typing).
pub async fn set_value(c: &Client, css: &str, value: &str) {
    js_args(
        c,
        "const e = document.querySelector(arguments[0]); e.value = arguments[1]; \
         e.dispatchEvent(new Event('input', {bubbles: true})); \
         e.dispatchEvent(new Event('change', {bubbles: true})); return true;",
        vec![json!(css), json!(value)],
    )
    .await;
}

pub async fn js_args(c: &Client, script: &str, args: Vec<Value>) -> Value {
    c.execute(script, args)
        .await
        .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
}

/// Answers the page's confirmation dialog with OK.
pub async fn confirm(c: &Client) {
    wait_for(
        c,
        "the confirmation dialog",
        "return document.getElementById('confirm').open;",
        WAIT,
    )
    .await;
    click(c, "#confirm-ok").await;
}

/// Where the tests' screenshots go: `target/console/`, and `docs/img/`
/// too when `BENTO_UPDATE_SCREENSHOTS=1` (how the docs' pictures are made).
pub async fn screenshot(c: &Client, name: &str) {
    let png = c
        .screenshot()
        .await
        .unwrap_or_else(|e| panic!("screenshot: {e}"));
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("target/console")];
    if std::env::var("BENTO_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        dirs.push(root.join("docs/img"));
    }
    for d in dirs {
        let _ = std::fs::create_dir_all(&d);
        let path = d.join(name);
        std::fs::write(&path, &png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        eprintln!("screenshot: {}", path.display());
    }
}
