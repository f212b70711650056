//! The `bento` command line contract, through the real binary against a real
//! controller and real containers; and every program in examples/.

mod kit;

use std::process::{Output, Stdio};

use bento::wire::api::SessionState;
use kit::cli::LIMIT;
use kit::{err, expect_code, out, TestServer};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

/// `bento ARGS` against `url`, with `stdin`; stdout and stderr piped;
/// killed if dropped.
fn spawn(url: &str, args: &[&str], stdin: Stdio) -> Child {
    let mut c = kit::cli_command(url, args);
    c.stdin(stdin);
    kit::cli::spawn(c)
}

/// Runs `bento ARGS` to completion with `stdin` as its input (see
/// `kit::cli_run`).
fn bento(url: &str, args: &[&str], stdin: &[u8]) -> impl std::future::Future<Output = Output> {
    kit::cli_run(url, args, stdin)
}

/// Asserts a non-zero exit and a stderr naming the problem.
fn expect_error(o: &Output, phrase: &str, what: &str) {
    let e = err(o);
    assert!(
        o.status.code().is_some_and(|c| c != 0)
            && e.to_lowercase().contains(&phrase.to_lowercase()),
        "{what}: {:?}, stderr {e:?} should mention {phrase:?}",
        o.status
    );
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The single line a command printed, checking there is exactly one.
fn only_line(o: &Output) -> String {
    let s = out(o);
    match s.strip_suffix('\n') {
        Some(line) if !line.contains('\n') => line.to_string(),
        _ => panic!("expected exactly one line on stdout, got {s:?}"),
    }
}

/// `bento run -d` and the token it printed.
async fn run_detached(url: &str, function: &str, args: &[&str]) -> String {
    let mut argv = vec!["run", "-d", function, "--"];
    argv.extend_from_slice(args);
    let o = bento(url, &argv, b"").await;
    expect_code(&o, 0, "run -d");
    let token = only_line(&o);
    assert!(is_hex(&token, 64), "run -d printed {token:?}, not a token");
    token
}

/// A `bento attach TOKEN --no-stdin` left running, and its stdout lines.
fn attach_child(url: &str, token: &str) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = spawn(url, &["attach", token, "--no-stdin"], Stdio::null());
    let stdout = child
        .stdout
        .take()
        .unwrap_or_else(|| panic!("attach: no stdout"));
    (child, BufReader::new(stdout).lines())
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> Option<String> {
    match tokio::time::timeout(LIMIT, lines.next_line()).await {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => panic!("reading attach output: {e}"),
        Err(_) => panic!("no output from attach within {LIMIT:?}"),
    }
}

/// Waits for a running attach child to exit; returns (code, stderr).
async fn exit_of(child: Child) -> (Option<i32>, String) {
    match tokio::time::timeout(LIMIT, child.wait_with_output()).await {
        Ok(Ok(o)) => (o.status.code(), err(&o)),
        other => panic!("attach did not exit: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_prints_only_the_id_and_names_and_args_work() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let file = dir.path().join("triple.py");
    std::fs::write(&file, "def main(a, b, c):\n    send(repr((a, b, c)))\n")
        .unwrap_or_else(|e| panic!("write: {e}"));
    let path = kit::path_str(&file);
    let o = bento(&s.url, &["submit", &path, "--name", "triple"], b"").await;
    expect_code(&o, 0, "submit");
    let id = only_line(&o);
    assert!(
        id.strip_prefix("fn-").is_some_and(|h| is_hex(h, 12)),
        "submit printed {id:?}, not a function id"
    );

    let o = bento(&s.url, &["run", "triple", "1", "\"x\"", "hello"], b"").await;
    expect_code(&o, 0, "run by name");
    assert_eq!(out(&o), "(1, 'x', 'hello')\n");
    // By id too, with arguments that look like options after `--`.
    let o = bento(
        &s.url,
        &["run", &id, "--", "-5", "--raw", "{\"k\": null}"],
        b"",
    )
    .await;
    expect_code(&o, 0, "run by id");
    assert_eq!(out(&o), "(-5, '--raw', {'k': None})\n");
    s.stop().await;
}

const UPPER: &str = r#"
import sys
def main(code):
    print("start")
    while (m := recv()) is not None:
        send(m.upper())
    print("oops", file=sys.stderr)
    if code == "raise":
        raise ValueError("bad input")
    sys.exit(code)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_feeds_stdin_writes_output_and_exits_with_the_code() {
    let s = TestServer::start().await;
    let f = s.submit(UPPER).await;
    // The last line has no newline; the empty line is an empty message.
    let input = b"one\ntwo\n\nlast";
    let (ok, raw, three, raised) = tokio::join!(
        bento(&s.url, &["run", &f, "0"], input),
        bento(&s.url, &["run", "--raw", &f, "0"], input),
        bento(&s.url, &["run", &f, "3"], b""),
        bento(&s.url, &["run", &f, "raise"], b"x\n"),
    );
    expect_code(&ok, 0, "exit 0");
    assert_eq!(out(&ok), "start\nONE\nTWO\n\nLAST\n");
    assert_eq!(err(&ok), "oops\n");
    expect_code(&raw, 0, "--raw");
    assert_eq!(out(&raw), "start\nONETWOLAST");
    expect_code(&three, 3, "sys.exit(3)");
    assert_eq!(out(&three), "start\n");
    expect_code(&raised, 1, "exception");
    assert_eq!(out(&raised), "start\nX\n");
    let e = err(&raised);
    assert!(
        e.starts_with("oops\n") && e.contains("Traceback") && e.contains("ValueError: bad input"),
        "traceback expected on stderr: {e:?}"
    );
    assert!(
        !e.contains("bento_driver") && !e.contains("<string>"),
        "the traceback shows the function's frames only: {e:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_detached_returns_the_token_while_the_function_runs() {
    let s = TestServer::start().await;
    let f = s.submit("def main():\n    send(b'got ' + recv())\n").await;
    let token = run_detached(&s.url, &f, &[]).await;
    // It waits for input nobody has sent: still running.
    let info = s
        .client
        .session(&token)
        .await
        .unwrap_or_else(|e| panic!("session: {e}"));
    assert_eq!(info.state, SessionState::Running);
    assert!(info.exit.is_none() && !info.attached, "{info:?}");

    let o = bento(&s.url, &["attach", &token], b"hello\n").await;
    expect_code(&o, 0, "attach with stdin");
    assert_eq!(out(&o), "got hello\n");
    s.wait_reaped(&token).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_delivers_what_an_ended_session_produced_then_it_is_reaped() {
    let s = TestServer::start().await;
    let f = s
        .submit("import sys\ndef main(n):\n    for i in range(n):\n        send(f'm{i}')\n        print(i)\n    sys.exit(7)\n")
        .await;
    let token = run_detached(&s.url, &f, &["60"]).await;
    let info = s
        .wait_session(&token, "the function ends", |i| {
            i.state == SessionState::Ended
        })
        .await;
    assert_eq!(info.exit.as_ref().map(|e| e.code), Some(7));

    let o = bento(&s.url, &["attach", &token, "--no-stdin"], b"").await;
    expect_code(&o, 7, "attach to an ended session");
    let want: String = (0..60).map(|i| format!("m{i}\n{i}\n")).collect();
    assert_eq!(out(&o), want);
    s.wait_reaped(&token).await;
    let left = s.containers(&info.id).await;
    assert_eq!(left, 0, "container must be removed");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_detaches_and_a_new_attach_continues_exactly() {
    let s = TestServer::start().await;
    let n = 150;
    let f = s
        .submit("import time\ndef main(n):\n    for i in range(n):\n        print(i)\n        time.sleep(0.01)\n")
        .await;
    let token = run_detached(&s.url, &f, &[&n.to_string()]).await;

    let (child, mut lines) = attach_child(&s.url, &token);
    let mut got: Vec<String> = Vec::new();
    while got.len() < 20 {
        match next_line(&mut lines).await {
            Some(l) => got.push(l),
            None => panic!("attach ended early after {got:?}"),
        }
    }
    let pid = child.id().unwrap_or_else(|| panic!("attach has no pid"));
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    assert!(
        matches!(kill, Ok(st) if st.success()),
        "kill -INT: {kill:?}"
    );
    // Whatever it wrote before the signal took effect counts as received.
    while let Some(l) = next_line(&mut lines).await {
        got.push(l);
    }
    let (code, stderr) = exit_of(child).await;
    assert_eq!(code, Some(130), "SIGINT exit; stderr {stderr:?}");
    assert!(
        stderr.contains(&format!("bento attach {token}")),
        "stderr should say how to reattach: {stderr:?}"
    );
    assert!(got.len() < n, "the function should still be counting");

    let o = bento(&s.url, &["attach", &token, "--no-stdin"], b"").await;
    expect_code(&o, 0, "reattach");
    let first = got.len();
    got.extend(out(&o).lines().map(str::to_string));
    let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    assert_eq!(
        got, want,
        "the two attaches together must give every line once, in order (first had {first})"
    );
    s.wait_reaped(&token).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_detaches_and_leaves_the_rest_for_the_next_attach() {
    let s = TestServer::start().await;
    // About 2 MB: far more than a pipe holds once nobody reads it.
    let n: u64 = 20_000;
    let f = s
        .submit("def main(n):\n    for i in range(n):\n        send('%d %s' % (i, 'x' * 100))\n")
        .await;
    let token = run_detached(&s.url, &f, &[&n.to_string()]).await;
    let number = |line: &str| -> u64 {
        let (i, pad) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        assert_eq!(pad, "x".repeat(100), "line {i} was mangled");
        i.parse().unwrap_or_else(|e| panic!("line {line:?}: {e}"))
    };

    let (child, mut lines) = attach_child(&s.url, &token);
    let first = next_line(&mut lines).await.unwrap_or_default();
    assert_eq!(number(&first), 0);
    // Close our end of its stdout: its next write fails.
    drop(lines);
    let (code, stderr) = exit_of(child).await;
    assert_eq!(code, Some(1), "stderr {stderr:?}");
    assert!(
        stderr.contains("cannot write output") && stderr.contains(&format!("bento attach {token}")),
        "stderr should say what failed and how to reattach: {stderr:?}"
    );

    // What it could not write was never acked: the next attach gets it,
    // once, in order, up to the end. (What went into the pipe before it
    // closed counts as written, so the rest starts somewhere after 0.)
    let o = bento(&s.url, &["attach", &token, "--no-stdin"], b"").await;
    expect_code(&o, 0, "reattach");
    let rest: Vec<u64> = out(&o).lines().map(number).collect();
    let k = rest.first().copied().unwrap_or(n);
    assert!(
        k >= 1 && k < n,
        "the rest should start after line 0, at {k}"
    );
    assert_eq!(
        rest,
        (k..n).collect::<Vec<_>>(),
        "gaps or repeats after {k}"
    );
    s.wait_reaped(&token).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_close_ls_and_kill() {
    let s = TestServer::start().await;
    let f = s
        .submit("def main():\n    send('ready')\n    recv()\n")
        .await;
    let token = run_detached(&s.url, &f, &[]).await;
    let (first, mut first_lines) = attach_child(&s.url, &token);
    assert_eq!(next_line(&mut first_lines).await.as_deref(), Some("ready"));

    // A second attach takes the session over from the first.
    let (second, _second_lines) = attach_child(&s.url, &token);
    let (code, stderr) = exit_of(first).await;
    assert_eq!(code, Some(1), "taken-over attach; stderr {stderr:?}");
    assert!(stderr.contains("another client took over"), "{stderr:?}");

    // `bento close` detaches the second one; the function keeps running.
    s.wait_session(&token, "second attached", |i| i.attached)
        .await;
    expect_code(&bento(&s.url, &["close", &token], b"").await, 0, "close");
    let (code, stderr) = exit_of(second).await;
    assert!(code.is_some_and(|c| c != 0), "closed attach exit {code:?}");
    assert!(
        stderr.contains("bento close") && stderr.contains(&format!("bento attach {token}")),
        "closed attach should say why and how to reattach: {stderr:?}"
    );
    let info = s.wait_session(&token, "detached", |i| !i.attached).await;
    assert_eq!(info.state, SessionState::Running, "close must not stop it");

    let o = bento(&s.url, &["ls"], b"").await;
    expect_code(&o, 0, "ls");
    let listing = out(&o);
    assert!(listing.starts_with("TOKEN"), "ls header: {listing:?}");
    // `ls` shows the first 12 characters of each token.
    let row: Vec<&str> = match listing.lines().find(|l| l.starts_with(&token[..12])) {
        Some(r) => r.split_whitespace().collect(),
        None => panic!("ls does not list {token}: {listing:?}"),
    };
    // FUNCTION, STATE, ATTACHED, EXIT
    let want = [f.as_str(), "running", "no", "-"];
    assert_eq!(row.get(1..5), Some(&want[..]), "{row:?}");

    // `bento kill` stops it; the next attach reports the kill.
    expect_code(&bento(&s.url, &["kill", &token], b"").await, 0, "kill");
    s.wait_session(&token, "killed", |i| i.state == SessionState::Ended)
        .await;
    let o = bento(&s.url, &["attach", &token, "--no-stdin"], b"").await;
    expect_code(&o, 137, "attach after kill");
    assert!(err(&o).contains("killed"), "stderr: {:?}", err(&o));
    s.wait_reaped(&token).await;
    let left = s.containers(&info.id).await;
    assert_eq!(left, 0, "container must be removed");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_went_wrong() {
    let s = TestServer::start().await;
    let zeros = "0".repeat(64);
    for cmd in ["attach", "kill", "close"] {
        let o = bento(&s.url, &[cmd, &zeros], b"").await;
        expect_error(&o, "unknown session", cmd);
    }
    let o = bento(&s.url, &["run", "no-such-fn"], b"").await;
    expect_error(&o, "unknown function \"no-such-fn\"", "run no-such-fn");
    let o = bento(&s.url, &["submit", "/no/such/file.py"], b"").await;
    expect_error(
        &o,
        "cannot read /no/such/file.py",
        "submit of a missing file",
    );
    assert!(out(&o).is_empty(), "nothing on stdout: {:?}", out(&o));

    // A port nothing listens on any more.
    let closed = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => format!("http://{addr}"),
        Err(e) => panic!("bind: {e}"),
    };
    let o = bento(&closed, &["run", "whatever"], b"").await;
    expect_error(&o, "cannot reach", "unreachable server");
    assert!(err(&o).contains(&closed), "names the URL: {:?}", err(&o));
    s.stop().await;
}

/// How each example is run, and what it must print.
async fn check_example(url: &str, name: &str) {
    let path = kit::path_str(&kit::repo().join("examples").join(format!("{name}.py")));
    let o = bento(url, &["submit", &path, "--name", name], b"").await;
    expect_code(&o, 0, &format!("submit {name}"));
    let (args, input, want): (&[&str], &[u8], String) = match name {
        "hello" => (&["world"], b"", "hello, world!\n".into()),
        "echo" => (
            &[],
            b"one\ntwo\nstop\nignored\n",
            "echoing; type stop to end\none\ntwo\nbye\n".into(),
        ),
        "counter" => (&["5", "0.01"], b"", "0\n1\n2\n3\n4\ncounted to 5\n".into()),
        "wordcount" => (
            &[],
            b"the quick brown\nfox\n\njumps over",
            "{\"lines\": 4, \"words\": 6, \"chars\": 28}\n".into(),
        ),
        "big" => {
            let pattern = "0123456789abcdef".repeat(3_000_000 / 16 + 1);
            (&["--raw", "3000000"], b"", pattern[..3_000_000].to_string())
        }
        _ => panic!("examples/{name}.py has no check in tests/cli.rs: add one"),
    };
    let mut argv = vec!["run", name];
    argv.extend_from_slice(args);
    let o = bento(url, &argv, input).await;
    expect_code(&o, 0, &format!("run {name}"));
    assert!(
        out(&o) == want,
        "examples/{name}.py printed {:.200?}",
        out(&o)
    );
    assert!(err(&o).is_empty(), "{name} stderr: {:?}", err(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_runs() {
    let s = TestServer::start().await;
    let dir = kit::repo().join("examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "py"))
        .filter_map(|p| p.file_stem().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "examples: {names:?}");
    let checks = names.iter().map(|n| check_example(&s.url, n));
    futures_util::future::join_all(checks).await;
    s.stop().await;
}
