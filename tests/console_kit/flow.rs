//! Steps the console's tests share: functions and sessions made from the
//! CLI or the client library, a session's view opened in the page.

use super::page::{click, goto, text, wait_for, WAIT};
use super::Browser;
use crate::kit::{cli_output, expect_code, out, TestServer};

/// `bento run -d FUNCTION ARGS`: a session started from the CLI; its
/// (token, id).
pub async fn cli_start(s: &TestServer, function: &str, args: &[&str]) -> (String, String) {
    let mut all = vec!["run", "-d", function];
    all.extend_from_slice(args);
    let o = cli_output(&s.url, &all).await;
    expect_code(&o, 0, "bento run -d");
    let token = out(&o).trim().to_string();
    let info = s
        .client
        .session(&token)
        .await
        .unwrap_or_else(|e| panic!("inspect: {e}"));
    (token, info.id)
}

pub async fn submit_named(s: &TestServer, name: &str, code: &str) {
    let body = bento::wire::api::SubmitFunction {
        code: code.into(),
        name: Some(name.into()),
        image: None,
        filename: None,
    };
    s.client
        .submit_function(&body)
        .await
        .unwrap_or_else(|e| panic!("submit {name}: {e}"));
}

/// Opens a session's view and waits until its facts are shown.
pub async fn open_session(b: &Browser, s: &TestServer, id: &str) {
    goto(&b.client, &format!("{}/ui/#/session/{id}", s.url)).await;
    wait_for(
        &b.client,
        "the session's facts",
        "return document.querySelector('[data-fact=\"state\"]');",
        WAIT,
    )
    .await;
}

/// What the output pane shows.
/// Ends the input of an attached [`ECHO`] from the page, and waits for its
/// exit and its last line (`bye`) on screen.
pub async fn end_input_and_wait_for_bye(b: &Browser) {
    let c = &b.client;
    click(c, "#eof").await;
    wait_for(
        c,
        "the exit",
        "const e = document.getElementById('exit'); return !e.hidden && e.textContent;",
        WAIT,
    )
    .await;
    wait_for(
        c,
        "the end of the output",
        "return document.getElementById('output').textContent.endsWith('bye\\n');",
        WAIT,
    )
    .await;
}

pub async fn output(b: &Browser) -> String {
    text(&b.client, "#output").await
}

// ------------------------------------------------ functions the tests run

/// Prints numbered lines, a message and a line on stderr, then waits for
/// the end of its input.
pub const TALKER: &str = "import sys, time\n\ndef main(n):\n    for i in range(n):\n        print(f'line {i:03}', flush=True)\n        time.sleep(0.02)\n    send('a message')\n    sys.stderr.write('on stderr\\n')\n    sys.stderr.flush()\n    while recv() is not None:\n        pass\n    print('done')\n";

pub const ECHO: &str = "def main():\n    print('echoing')\n    while True:\n        line = recv()\n        if line is None:\n            break\n        send(line.decode('utf-8', 'replace'))\n    print('bye')\n";

pub const HOSTILE: &str = "import os\n\ndef main():\n    os.write(1, b'<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">\\n')\n    os.write(1, b'bad \\xff\\xfe bytes\\n')\n    send('<script>window.__pwned = 3</script>')\n    while recv() is not None:\n        pass\n";

/// 20 MiB of stdout in 64 KiB writes of 1 KiB lines over about five
/// seconds (so that clicks land while it streams in), then `END`.
pub const FLOOD: &str = "import sys, time\n\ndef main():\n    chunk = ('x' * 1023 + '\\n') * 64\n    for _ in range(320):\n        sys.stdout.write(chunk)\n        sys.stdout.flush()\n        time.sleep(0.015)\n    print('END')\n";

/// A condition on the text `v` of a session's cell in the list (`n`:
/// 0-based column; `v` is null while the row is not shown).
pub fn cell_where(id: &str, n: usize, pred: &str) -> String {
    format!(
        "const r = document.querySelector('tr[data-id=\"{id}\"]'); \
         const v = r ? r.children[{n}].textContent : null; return ({pred}) && v;"
    )
}
