//! The web console (`/ui/`) in a real browser: Debian's headless Chromium
//! through chromedriver, against a real controller and real containers.
//! The sessions list (live, filtered, by keyboard, at 360 px, dark) and
//! watching beside an attached CLI. Without chromium the browser tests
//! print SKIPPED (and fail under `BENTO_CONSOLE_TESTS=require`). See
//! `docs/console.md`.

mod console_kit;
mod kit;

use std::process::Stdio;

use console_kit::flow::{cell_where, cli_start, open_session, output, submit_named, TALKER};
use console_kit::page::{goto, js, screenshot, text, type_into, wait_for, WAIT};
use console_kit::Browser;
use fantoccini::Locator;
use kit::{cli_command, expect_code, out, TestServer};
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_shows_a_cli_session_and_its_end_without_a_reload() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let s = TestServer::start().await;
    submit_named(
        &s,
        "napper",
        "import sys, time\n\ndef main(seconds):\n    print('napping')\n    time.sleep(seconds)\n    sys.exit(3)\n",
    )
    .await;
    let c = &b.client;
    goto(c, &format!("{}/ui/", s.url)).await;
    wait_for(
        c,
        "the sessions table",
        "return document.getElementById('sessions');",
        WAIT,
    )
    .await;
    // First paint, from the browser's paint timing: printed, not asserted
    // (no test asserts wall clock). The first load starts the renderer;
    // the second is what a user opening the console again sees.
    for load in ["first", "second"] {
        let paint = js(
            c,
            "const p = performance.getEntriesByName('first-contentful-paint')[0]; \
             const n = performance.getEntriesByType('navigation')[0]; \
             const app = performance.getEntriesByName(new URL('app.js', location.href).href)[0]; \
             const blocking = performance.getEntriesByType('resource').filter((r) => r.renderBlockingStatus === 'blocking').length; \
             return `${p ? p.startTime.toFixed(0) : '?'} (page answered at ${n.responseEnd.toFixed(0)}, \
             ${blocking} render-blocking requests, app.js at ${app ? app.responseEnd.toFixed(0) : '?'})`;",
        )
        .await;
        eprintln!("console: first contentful paint, {load} load: {paint} ms (loopback)");
        if load == "first" {
            goto(c, &format!("{}/ui/", s.url)).await;
            wait_for(
                c,
                "the sessions table again",
                "return document.getElementById('sessions');",
                WAIT,
            )
            .await;
        }
    }
    // Anything the page keeps from here survives only if it is never
    // reloaded.
    js(c, "window.__noReload = 'kept'; return true;").await;
    // Long enough that the page sees it run: the page asks every second.
    let (_, id) = cli_start(&s, "napper", &["8"]).await;
    wait_for(
        c,
        "the CLI's session listed as running",
        &cell_where(&id, 4, "v === 'running'"),
        WAIT,
    )
    .await;
    assert_eq!(
        text(c, &format!("tr[data-id=\"{id}\"] td:nth-child(3)")).await,
        "napper"
    );
    let (other, other_id) = cli_start(&s, "napper", &["--idle-timeout", "10m", "600"]).await;
    wait_for(
        c,
        "a second session listed",
        &cell_where(&other_id, 4, "v === 'running'"),
        WAIT,
    )
    .await;

    let exit = wait_for(
        c,
        "the session's exit, without a reload",
        &cell_where(&id, 7, "v && v.includes('exited with code 3')"),
        WAIT,
    )
    .await;
    assert_eq!(
        js(c, &cell_where(&id, 4, "true")).await,
        "ended",
        "exit {exit}"
    );
    assert_eq!(
        js(c, "return window.__noReload;").await,
        "kept",
        "the page was reloaded"
    );
    screenshot(c, "console-sessions.png").await;

    // The filter: by state, then by function.
    let sel = c
        .find(Locator::Css("#filter-state"))
        .await
        .unwrap_or_else(|e| panic!("filter: {e}"));
    sel.select_by_value("ended")
        .await
        .unwrap_or_else(|e| panic!("select: {e}"));
    wait_for(c, "only the ended one", &format!("return !!document.querySelector('tr[data-id=\"{id}\"]') && !document.querySelector('tr[data-id=\"{other_id}\"]');"), WAIT).await;
    sel.select_by_value("")
        .await
        .unwrap_or_else(|e| panic!("select: {e}"));
    type_into(c, "#filter-function", "nobody").await;
    wait_for(
        c,
        "no row for another function",
        "return document.querySelectorAll('#sessions tbody tr').length === 0;",
        WAIT,
    )
    .await;

    // The detached one's page shows its lease: the idle timeout among
    // its limits, and when it ends unless there is activity.
    open_session(&b, &s, &other_id).await;
    let idle = wait_for(
        c,
        "the idle deadline",
        "const d = document.querySelector('[data-fact=\"idle until\"]'); return d && d.textContent;",
        WAIT,
    )
    .await;
    let idle = idle.as_str().unwrap_or_default();
    assert!(idle.ends_with("unless there is activity"), "{idle}");
    let limits = text(c, "[data-fact=\"limits\"]").await;
    assert!(limits.contains("idle timeout 600s"), "{limits}");

    s.client
        .kill_session(&other)
        .await
        .unwrap_or_else(|e| panic!("kill: {e}"));
    b.close().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_by_keyboard_at_360_px_in_a_dark_scheme() {
    let Some(b) = Browser::start_with(360, 740, true).await else {
        return;
    };
    let s = TestServer::start().await;
    submit_named(
        &s,
        "sleeper",
        "import time\n\ndef main():\n    print('sleeping', flush=True)\n    time.sleep(600)\n",
    )
    .await;
    let (token, id) = cli_start(&s, "sleeper", &[]).await;
    let c = &b.client;
    goto(c, &format!("{}/ui/", s.url)).await;
    wait_for(
        c,
        "the session listed",
        &cell_where(&id, 4, "v === 'running'"),
        WAIT,
    )
    .await;
    // Nothing wider than the screen: the table scrolls inside its box.
    let wide = js(c, "return document.documentElement.scrollWidth;").await;
    assert!(
        wide.as_u64().unwrap_or(u64::MAX) <= 360,
        "the page is {wide} px wide"
    );
    assert_eq!(
        js(
            c,
            "return matchMedia('(prefers-color-scheme: dark)').matches;"
        )
        .await,
        true
    );
    assert_eq!(
        js(c, "return getComputedStyle(document.body).backgroundColor;").await,
        "rgb(21, 23, 27)"
    );
    screenshot(c, "console-narrow-dark.png").await;

    // Tab to the session's link, Enter opens it.
    let link = format!("a[href=\"#/session/{id}\"]");
    let mut reached = false;
    for _ in 0..40 {
        let here = js(
            c,
            &format!("return document.activeElement.matches('{link}');"),
        )
        .await;
        if here.as_bool().unwrap_or(false) {
            reached = true;
            break;
        }
        c.active_element()
            .await
            .unwrap_or_else(|e| panic!("focus: {e}"))
            .send_keys("\u{E004}")
            .await
            .unwrap_or_else(|e| panic!("tab: {e}"));
    }
    assert!(reached, "Tab never reached the session's link");
    c.active_element()
        .await
        .unwrap_or_else(|e| panic!("focus: {e}"))
        .send_keys("\u{E007}")
        .await
        .unwrap_or_else(|e| panic!("enter: {e}"));
    wait_for(c, "the session's view, by keyboard", "return document.getElementById('output') && document.getElementById('output').textContent.includes('sleeping');", WAIT).await;
    s.client
        .kill_session(&token)
        .await
        .unwrap_or_else(|e| panic!("kill: {e}"));
    b.close().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_shows_live_output_in_order_while_the_cli_stays_attached() {
    let Some(b) = Browser::start_sized(1280, 1500).await else {
        return;
    };
    let s = TestServer::start().await;
    submit_named(&s, "talker", TALKER).await;
    let (token, id) = cli_start(&s, "talker", &["150"]).await;
    // The CLI attaches and stays attached, reading everything, with its
    // stdin open until the test ends it.
    let mut cmd = cli_command(&s.url, &["attach", &token]);
    cmd.stdin(Stdio::piped());
    let mut cli = kit::cli::spawn(cmd);
    let mut cli_in = cli.stdin.take();

    open_session(&b, &s, &id).await;
    let c = &b.client;
    assert!(text(c, "#mode").await.contains("Watching"));
    wait_for(c, "the last line and the rest", "const t = document.getElementById('output').textContent; return t.includes('on stderr') && t.includes('a message') && t.includes('line 149');", WAIT).await;
    // Watching took nothing over: the CLI is still the one attached.
    let info = s.info(&token).await;
    assert!(info.attached, "the CLI was detached: {info:?}");
    let shown = output(&b).await;
    let lines: Vec<&str> = shown.lines().filter(|l| l.starts_with("line ")).collect();
    let want: Vec<String> = (0..150).map(|i| format!("line {i:03}")).collect();
    assert_eq!(lines, want, "the page showed:\n{shown}");
    assert_eq!(
        js(
            c,
            "return document.querySelector('#output .stderr').textContent;"
        )
        .await,
        "on stderr\n"
    );
    assert_eq!(
        js(
            c,
            "return document.querySelector('#output .data').textContent;"
        )
        .await,
        "a message\n"
    );
    screenshot(c, "console-session.png").await;

    // End the input: the function ends, the CLI got everything once.
    if let Some(mut i) = cli_in.take() {
        let _ = i.shutdown().await;
    }
    drop(cli_in);
    let o = tokio::time::timeout(kit::cli::LIMIT, cli.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the CLI did not finish"))
        .unwrap_or_else(|e| panic!("the CLI: {e}"));
    expect_code(&o, 0, "bento attach");
    let cli_lines: Vec<String> = out(&o)
        .lines()
        .filter(|l| l.starts_with("line "))
        .map(String::from)
        .collect();
    assert_eq!(cli_lines, want, "the CLI lost or repeated output");
    assert_eq!(out(&o).matches("a message").count(), 1);
    assert!(out(&o).ends_with("done\n"), "{}", out(&o));
    b.close().await;
    s.stop().await;
}
