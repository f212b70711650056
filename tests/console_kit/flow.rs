//! Steps the console's tests share: functions and sessions made from the
//! CLI or the client library, a session's view opened in the page.

use super::page::{goto, text, wait_for, WAIT};
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
pub async fn output(b: &Browser) -> String {
    text(&b.client, "#output").await
}
