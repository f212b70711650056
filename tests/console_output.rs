//! The web console in a real browser, under hostile and large output: HTML
//! and script shown as text, invalid UTF-8 as U+FFFD, and 20 MiB with the
//! page still answering clicks. Without chromium the browser tests print
//! SKIPPED (and fail under `BENTO_CONSOLE_TESTS=require`). See
//! `docs/console.md`.

mod console_kit;
mod kit;

use console_kit::flow::{cli_start, open_session, output, submit_named, FLOOD, HOSTILE};
use console_kit::page::{click, confirm, js, wait_for, WAIT};
use console_kit::Browser;
use kit::TestServer;
use std::time::Duration;

/// Installs a click probe on `#wrap`: how long the click waited for the
/// page (the handler's time less the event's own timestamp), and whether
/// the output was still streaming in.
const PROBE: &str = "window.__clicks = window.__clicks || []; \
document.getElementById('wrap').addEventListener('click', (e) => { \
  window.__clicks.push({ waited: performance.now() - e.timeStamp, \
    streaming: document.getElementById('exit').hidden }); }, { once: true }); return true;";

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
    // stdout and messages are two streams: which the page gets first is
    // not fixed, what each holds is.
    let stdout = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">\nbad \u{FFFD}\u{FFFD} bytes\n";
    let message = "<script>window.__pwned = 3</script>\n";
    let either = [format!("{stdout}{message}"), format!("{message}{stdout}")];
    // Watching (the server's lossy text), then attached (the page's own
    // TextDecoder over the bytes): the same text, and nothing ran.
    for how in ["watch", "attach"] {
        if how == "attach" {
            click(c, "#attach").await;
            confirm(c).await;
            // Attaching clears what watching showed: wait until it has,
            // or the watch's text would pass for the attachment's.
            wait_for(
                c,
                "the page attached",
                "return !document.getElementById('input-form').hidden \
                 && document.getElementById('mode').textContent.startsWith('Attached');",
                WAIT,
            )
            .await;
        }
        // Both streams in, in whichever order.
        wait_for(
            c,
            &format!("the hostile output ({how})"),
            "const t = document.getElementById('output').textContent; \
             return t.includes('__pwned = 3') && t.includes(' bytes');",
            WAIT,
        )
        .await;
        let shown = output(&b).await;
        assert!(either.contains(&shown), "{how}: {shown:?}");
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
    // The download button offers all of it, and a line for its end: the
    // file the browser saves is the function's whole output.
    click(c, "#download").await;
    let file = b
        .downloaded(&format!("{id}.txt"), Duration::from_secs(120))
        .await;
    let exit = s
        .info(&token)
        .await
        .exit
        .unwrap_or_else(|| panic!("no exit"));
    let mut want = ("x".repeat(1023) + "\n").repeat(64 * 320);
    want.push_str("END\n");
    assert_eq!(want.len(), total);
    want.push_str(&format!("\n[bento: {}]\n", exit.message));
    assert!(
        file == want.as_bytes(),
        "the download: {} bytes, {:?}...{:?}; wanted {} bytes",
        file.len(),
        String::from_utf8_lossy(&file[..file.len().min(40)]),
        String::from_utf8_lossy(&file[file.len().saturating_sub(60)..]),
        want.len()
    );
    b.close().await;
    s.stop().await;
}
