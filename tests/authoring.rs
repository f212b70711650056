//! What a function's author meets, against a real controller and real
//! containers: code that does not compile is refused at submit with where
//! and why (the API's 400 and the CLI's `FILE:LINE:COL: message`),
//! tracebacks name the file as submitted, `send(42)` says what is wrong at
//! the caller's line, and arguments for a function without `main` are not
//! dropped in silence. The driver's side of each is tested in
//! `driver/test_authoring.py`.

mod kit;

use bento::wire::api::{FunctionInfo, SubmitFunction};
use kit::{err, expect_code, out, receive, Received, TestServer};
use serde_json::{json, Value};

/// `POST /v1/functions` with `body`; the status and the JSON answer.
async fn post_function(s: &TestServer, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/functions", s.url))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("submit: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_else(|e| panic!("body: {e}"));
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    (status, value)
}

/// Submits `code` as `filename` through the client.
async fn submit_as(s: &TestServer, code: &str, filename: &str) -> FunctionInfo {
    let body = SubmitFunction {
        code: code.into(),
        name: None,
        image: None,
        filename: Some(filename.into()),
    };
    match s.client.submit_function(&body).await {
        Ok(f) => f,
        Err(e) => panic!("submit {filename}: {e}"),
    }
}

/// Runs `function` with `args` to its end and returns what it produced.
async fn run_to_end(s: &TestServer, function: &str, args: &[&str]) -> Received {
    let (token, _) = s.session(function, args).await;
    let mut att = s.attach(&token, 0).await;
    let r = receive(&mut att, |_| false).await;
    assert!(r.exit.is_some(), "no exit for {function}: {r:?}");
    r
}

fn stderr_of(r: &Received) -> String {
    String::from_utf8_lossy(&r.stderr).into_owned()
}

fn exit_code(r: &Received) -> Option<i32> {
    r.exit.as_ref().map(|e| e.code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_that_does_not_compile_is_refused_with_where_and_why() {
    let s = TestServer::start().await;
    let (status, body) = post_function(
        &s,
        json!({"code": "x = 1\nsend('never')\ny = (1,\n", "filename": "broken.py"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["syntax"],
        json!({"kind": "SyntaxError", "message": "'(' was never closed", "line": 3, "column": 5})
    );
    assert_eq!(
        body["error"],
        "the code does not compile: SyntaxError at line 3, column 5: '(' was never closed"
    );
    // Refused by the compiler, not its grammar: a parser alone passes it.
    let (status, body) = post_function(&s, json!({"code": "x = 1\nreturn x\n"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["syntax"]["message"], "'return' outside function");
    assert_eq!(body["syntax"]["line"], 2);
    // Nothing refused was stored.
    let stored = s.client.list_functions().await;
    assert_eq!(stored.map(|l| l.len()).ok(), Some(0));
    // Code that compiles is stored, under the file name given, and the
    // check left no container behind.
    let (status, body) = post_function(&s, json!({"code": "pass\n", "filename": "ok.py"})).await;
    assert_eq!(
        (status, &body["filename"]),
        (201, &json!("ok.py")),
        "{body}"
    );
    let check = format!("{}.check", s.label_prefix);
    assert_eq!(
        kit::labelled(&check).await.len(),
        0,
        "check containers left"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_names_default_and_are_validated() {
    let s = TestServer::start().await;
    let (status, body) = post_function(&s, json!({"code": "pass", "name": "counter"})).await;
    assert_eq!(
        (status, &body["filename"]),
        (201, &json!("counter.py")),
        "{body}"
    );
    let (status, body) = post_function(&s, json!({"code": "pass"})).await;
    assert_eq!(
        (status, &body["filename"]),
        (201, &json!("function.py")),
        "{body}"
    );
    for bad in ["", "../etc/x.py", "a\u{1b}[2J.py", &"x".repeat(256)] {
        let (status, body) = post_function(&s, json!({"code": "pass", "filename": bad})).await;
        assert_eq!(status, 400, "filename {bad:?}: {body}");
        assert!(body["error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid filename")));
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracebacks_name_the_submitted_file_and_send_errors_point_at_the_caller() {
    let s = TestServer::start().await;
    let f = submit_as(
        &s,
        "def main():\n    n = 1\n    return n / 0\n",
        "counter.py",
    )
    .await;
    let r = run_to_end(&s, &f.id, &[]).await;
    let stderr = stderr_of(&r);
    assert_eq!(exit_code(&r), Some(1), "{stderr}");
    assert!(
        stderr.contains("File \"counter.py\", line 3, in main\n    return n / 0\n"),
        "{stderr}"
    );
    assert!(!stderr.contains("function.py"), "{stderr}");

    let f = submit_as(&s, "x = 1\nsend(42)\n", "sender.py").await;
    let r = run_to_end(&s, &f.id, &[]).await;
    let stderr = stderr_of(&r);
    assert_eq!(exit_code(&r), Some(1), "{stderr}");
    assert!(
        stderr.ends_with(
            "  File \"sender.py\", line 2, in <module>\n    send(42)\n\
             TypeError: send() takes str or bytes, not int\n"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("bento.py") && !stderr.contains("bento_driver"),
        "{stderr}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_for_a_function_without_main_get_a_warning() {
    let s = TestServer::start().await;
    let f = submit_as(&s, "send('ran')\n", "nomain.py").await;
    let r = run_to_end(&s, &f.id, &["1", "two"]).await;
    assert_eq!(exit_code(&r), Some(0), "{r:?}");
    assert_eq!(r.data_strings(), ["ran"]);
    assert_eq!(
        stderr_of(&r),
        "bento: 2 arguments given, but the function defines no main(); they are ignored\n"
    );
    // With no arguments, nothing to warn about.
    let r = run_to_end(&s, &f.id, &[]).await;
    assert_eq!(stderr_of(&r), "");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_syntax_errors_as_file_line_column() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let file = dir.path().join("broken.py");
    std::fs::write(&file, "def main():\n    return (1,\n").unwrap_or_else(|e| panic!("{e}"));
    let path = kit::path_str(&file);
    let o = s.cli(&["submit", &path], b"");
    expect_code(&o, 1, "submit broken.py");
    assert_eq!(out(&o), "");
    assert_eq!(
        err(&o),
        format!("{path}:2:12: SyntaxError: '(' was never closed\n")
    );

    // A file that compiles runs under its own name, and `run` passes the
    // function's stderr on.
    let file = dir.path().join("boom.py");
    std::fs::write(&file, "raise ValueError('no')\n").unwrap_or_else(|e| panic!("{e}"));
    let o = s.cli(&["submit", &kit::path_str(&file), "--name", "boom"], b"");
    expect_code(&o, 0, "submit boom.py");
    let o = s.cli(&["run", "boom"], b"");
    expect_code(&o, 1, "run boom");
    let e = err(&o);
    assert!(e.contains("File \"boom.py\", line 1, in <module>"), "{e}");
    // The warning about arguments reaches the terminal.
    let file = dir.path().join("quiet.py");
    std::fs::write(&file, "print('hi')\n").unwrap_or_else(|e| panic!("{e}"));
    let o = s.cli(&["submit", &kit::path_str(&file), "--name", "quiet"], b"");
    expect_code(&o, 0, "submit quiet.py");
    let o = s.cli(&["run", "quiet", "an-arg"], b"");
    expect_code(&o, 0, "run quiet");
    assert_eq!(out(&o), "hi\n");
    let e = err(&o);
    assert!(
        e.contains("bento: 1 argument given, but the function defines no main()"),
        "{e}"
    );
    s.stop().await;
}

#[test]
fn submit_help_says_main_is_optional() {
    let o = kit::run_cli("http://127.0.0.1:9", &["submit", "--help"], b"");
    expect_code(&o, 0, "submit --help");
    let help = out(&o);
    assert!(help.contains("It may define `main`"), "{help}");
    assert!(!help.contains("defining `main`"), "{help}");
}
