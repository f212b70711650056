//! The web console in a real browser, acting on a session: attach from the
//! page (input exactly once, also across dropped connections, and taking
//! the session over from an attached CLI), close, extend and kill. Without
//! chromium the browser tests print SKIPPED (and fail under
//! `BENTO_CONSOLE_TESTS=require`). See `docs/console.md`.

mod console_kit;
mod kit;

use console_kit::flow::{
    cli_start, end_input_and_wait_for_bye, open_session, output, submit_named, ECHO,
};
use console_kit::page::{click, confirm, goto, text, type_into, wait_for, WAIT};
use console_kit::Browser;
use fantoccini::Locator;
use kit::TestServer;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attaching_from_the_page_sends_each_line_exactly_once() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let s = TestServer::start().await;
    submit_named(&s, "echo", ECHO).await;
    let (token, id) = cli_start(&s, "echo", &[]).await;
    open_session(&b, &s, &id).await;
    let c = &b.client;
    click(c, "#attach").await;
    confirm(c).await;
    wait_for(
        c,
        "attached",
        "return document.getElementById('mode').textContent.includes('Attached: attached');",
        WAIT,
    )
    .await;
    let words = ["one", "two", "<b>three</b>", "four four"];
    for w in words {
        type_into(c, "#input", &format!("{w}\n")).await;
    }
    wait_for(
        c,
        "every line echoed",
        "return document.getElementById('output').textContent.includes('four four');",
        WAIT,
    )
    .await;
    // The page has the session: a CLI attaching now would take it over.
    assert!(s.info(&token).await.attached);
    end_input_and_wait_for_bye(&b).await;
    let shown = output(&b).await;
    assert_eq!(shown, "echoing\none\ntwo\n<b>three</b>\nfour four\nbye\n");
    assert!(
        text(c, "#exit").await.contains("exited with code 0"),
        "{}",
        text(c, "#exit").await
    );
    // Everything was acked from the page: the session is reaped.
    s.wait_reaped(&token).await;
    b.close().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attaching_from_the_page_takes_the_session_over_from_an_attached_cli() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let s = TestServer::start().await;
    submit_named(&s, "echo", ECHO).await;
    let (token, id) = cli_start(&s, "echo", &[]).await;
    // A CLI attached, its input open (as a terminal's is), one line sent
    // and echoed.
    let mut cmd = kit::cli_command(&s.url, &["attach", &token]);
    cmd.stdin(std::process::Stdio::piped());
    let mut cli = kit::cli::spawn(cmd);
    let mut cli_in = cli
        .stdin
        .take()
        .unwrap_or_else(|| panic!("the CLI's stdin"));
    s.wait_session(&token, "the CLI attached", |i| i.attached)
        .await;
    cli_in
        .write_all(b"from the cli\n")
        .await
        .unwrap_or_else(|e| panic!("the CLI's stdin: {e}"));
    // The page watches (read-only) until it has seen the echo.
    open_session(&b, &s, &id).await;
    let c = &b.client;
    wait_for(
        c,
        "the CLI's line echoed",
        "return document.getElementById('output').textContent.includes('from the cli');",
        WAIT,
    )
    .await;
    assert!(
        s.info(&token).await.attached,
        "the CLI is no longer attached"
    );
    // And the CLI has acknowledged it: what follows does not hang on the
    // takeover's last-ack grace.
    s.wait_session(&token, "the CLI's ack of the echo", |i| {
        i.pending_messages == 0
    })
    .await;

    click(c, "#attach").await;
    confirm(c).await;
    // Told, and gone, with its input still open.
    let o = tokio::time::timeout(kit::cli::LIMIT, cli.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the CLI did not exit when taken over"))
        .unwrap_or_else(|e| panic!("the CLI: {e}"));
    drop(cli_in);
    assert!(
        kit::err(&o).contains("another client took over this session"),
        "{}",
        kit::err(&o)
    );
    assert_eq!(o.status.code(), Some(1), "{}", kit::err(&o));
    wait_for(
        c,
        "attached",
        "return document.getElementById('mode').textContent.includes('Attached: attached');",
        WAIT,
    )
    .await;
    for w in ["from the page", "and again"] {
        type_into(c, "#input", &format!("{w}\n")).await;
    }
    end_input_and_wait_for_bye(&b).await;
    // The page starts where the CLI's acknowledgements left off: between
    // the two, the whole output, each line of input echoed once.
    let cli_out = kit::out(&o);
    let shown = output(&b).await;
    assert_eq!(
        format!("{cli_out}{shown}"),
        "echoing\nfrom the cli\nfrom the page\nand again\nbye\n",
        "the CLI printed {cli_out:?}, the page shows {shown:?}"
    );
    assert!(
        shown.ends_with("from the page\nand again\nbye\n"),
        "{shown:?}"
    );
    s.wait_reaped(&token).await;
    b.close().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attached_from_the_page_input_survives_dropped_connections_exactly_once() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let s = TestServer::start().await;
    submit_named(&s, "echo", ECHO).await;
    let (_, id) = cli_start(&s, "echo", &[]).await;
    let upstream = s
        .url
        .trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("server address: {e}"));
    let cutter = console_kit::cutter::Cutter::start(upstream).await;
    goto(&b.client, &format!("{}/ui/#/session/{id}", cutter.url())).await;
    let c = &b.client;
    wait_for(
        c,
        "the session's view",
        "return document.getElementById('attach');",
        WAIT,
    )
    .await;
    click(c, "#attach").await;
    confirm(c).await;
    wait_for(
        c,
        "attached",
        "return document.getElementById('mode').textContent.includes('Attached: attached');",
        WAIT,
    )
    .await;
    let mut want = String::from("echoing\n");
    // Lines before a cut, lines typed while it reconnects, and lines cut
    // in flight: each reaches the function, and comes back, once.
    for round in 0..3 {
        for i in 0..8 {
            let line = format!("r{round} line {i}");
            type_into(c, "#input", &format!("{line}\n")).await;
            want.push_str(&line);
            want.push('\n');
        }
        cutter.cut();
    }
    wait_for(
        c,
        "a reconnection",
        "return Number(document.getElementById('mode').dataset.connections || 0) >= 2;",
        WAIT,
    )
    .await;
    wait_for(
        c,
        "every line echoed",
        "return document.getElementById('output').textContent.includes('r2 line 7');",
        WAIT,
    )
    .await;
    end_input_and_wait_for_bye(&b).await;
    want.push_str("bye\n");
    assert_eq!(output(&b).await, want);
    assert!(cutter.connections() > 2, "nothing was cut");
    b.close().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_extend_and_kill_from_the_page_with_the_reason_shown() {
    let Some(b) = Browser::start().await else {
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
    open_session(&b, &s, &id).await;
    let c = &b.client;
    wait_for(
        c,
        "its first line",
        "return document.getElementById('output').textContent.includes('sleeping');",
        WAIT,
    )
    .await;
    // Close: the attached CLI is detached; the function runs on.
    let cli = kit::cli::spawn(kit::cli_command(&s.url, &["attach", "--no-stdin", &token]));
    s.wait_session(&token, "the CLI attached", |i| i.attached)
        .await;
    click(c, "#close").await;
    confirm(c).await;
    let o = tokio::time::timeout(kit::cli::LIMIT, cli.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the CLI was not detached"))
        .unwrap_or_else(|e| panic!("the CLI: {e}"));
    assert!(
        kit::err(&o).contains("detached by `bento close`"),
        "{}",
        kit::err(&o)
    );
    let info = s.info(&token).await;
    assert!(!info.attached && info.exit.is_none(), "{info:?}");

    // Extend: the deadline (the image's 1h) moves by the span chosen.
    let first = info
        .deadline
        .unwrap_or_else(|| panic!("no deadline: {info:?}"));
    c.find(Locator::Css("#extend-by"))
        .await
        .unwrap_or_else(|e| panic!("extend-by: {e}"))
        .select_by_value("4h")
        .await
        .unwrap_or_else(|e| panic!("select: {e}"));
    click(c, "#extend button[type=submit]").await;
    s.wait_session(&token, "the deadline moved by 4h", |i| {
        i.deadline == Some(first + 4 * 3600)
    })
    .await;
    wait_for(
        c,
        "the page saying so",
        "return document.getElementById('status').textContent.includes('the deadline is now');",
        WAIT,
    )
    .await;

    click(c, "#kill").await;
    confirm(c).await;
    let exit = wait_for(
        c,
        "the exit shown",
        "const e = document.getElementById('exit'); return !e.hidden && e.textContent;",
        WAIT,
    )
    .await;
    assert!(exit.as_str().unwrap_or("").contains("killed"), "{exit}");
    let info = s.info(&token).await;
    let reason = info.exit.map(|e| format!("{:?}", e.reason));
    assert!(
        reason.as_deref().unwrap_or("").contains("Killed"),
        "{reason:?}"
    );
    // The reason stays on screen.
    wait_for(c, "the ended state", "const d = document.querySelector('[data-fact=\"state\"]'); return d && d.textContent.startsWith('ended');", WAIT).await;
    assert!(text(c, "#exit").await.contains("killed"));
    // An ended session has no deadline to move.
    wait_for(
        c,
        "no extend once ended",
        "return document.getElementById('extend').hidden;",
        WAIT,
    )
    .await;
    b.close().await;
    s.stop().await;
}
