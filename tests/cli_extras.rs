//! The daily-use extras of the `bento` command line, through the real binary
//! against a real controller and real containers: `--json`, `inspect`,
//! `logs`, completions, colour, and hints on errors.

mod kit;

use std::process::Output;
use std::time::{Duration, Instant};

use bento::wire::api::SessionState;
use kit::cli::{cli_command as command, cli_output as bento, finish, spawn, LIMIT};
use kit::{err, expect_code, out, TestServer};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// Stdout as JSON, which must be all it holds.
fn json(o: &Output, what: &str) -> Value {
    expect_code(o, 0, what);
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e}): {:?}", out(o)))
}

fn no_escapes(o: &Output, what: &str) {
    assert!(
        !out(o).contains("\x1b[") && !err(o).contains("\x1b["),
        "{what}: escape codes in {:?} / {:?}",
        out(o),
        err(o)
    );
}

/// `bento run -d ARGS` and the token it printed.
async fn run_detached(url: &str, args: &[&str]) -> String {
    let mut argv = vec!["run", "-d"];
    argv.extend_from_slice(args);
    let o = bento(url, &argv).await;
    expect_code(&o, 0, "run -d");
    out(&o).trim().to_string()
}

/// Submits `code` under `name` through the CLI; returns the function id.
async fn submit(url: &str, name: &str, code: &str) -> String {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let file = dir.path().join(format!("{name}.py"));
    std::fs::write(&file, code).unwrap_or_else(|e| panic!("write: {e}"));
    let o = bento(url, &["submit", &kit::path_str(&file), "--name", name]).await;
    expect_code(&o, 0, "submit");
    out(&o).trim().to_string()
}

/// Waits (polling, with a deadline) until `line` is read from `child`'s stdout.
async fn expect_line(child: &mut Child, line: &str) {
    let stdout = child.stdout.as_mut().unwrap_or_else(|| panic!("no stdout"));
    let mut lines = BufReader::new(stdout).lines();
    match tokio::time::timeout(LIMIT, lines.next_line()).await {
        Ok(Ok(Some(l))) => assert_eq!(l, line),
        other => panic!("expected {line:?} from the child, got {other:?}"),
    }
}

const WAITS: &str = "def main():\n    send('ready')\n    recv()\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_listings_and_inspect_in_json_and_words() {
    let s = TestServer::start().await;
    let id = submit(&s.url, "waits", WAITS).await;
    let token = run_detached(&s.url, &["--memory", "64m", "--timeout", "90s", "waits"]).await;
    s.wait_session(&token, "running, `ready` sent", |i| {
        i.state == SessionState::Running && i.pending_messages == 1
    })
    .await;

    let o = bento(&s.url, &["ls", "--json"]).await;
    let list = json(&o, "ls --json");
    let found = list
        .as_array()
        .unwrap_or_else(|| panic!("ls --json is not an array: {list}"))
        .iter()
        .find(|v| v["token"] == token.as_str());
    let session = found.unwrap_or_else(|| panic!("{token} not in {list}"));
    assert_eq!(session["function"], id.as_str());
    assert_eq!(session["state"], "running");

    let o = bento(&s.url, &["functions", "--json"]).await;
    let fns = json(&o, "functions --json");
    let listed = fns.as_array().is_some_and(|a| {
        a.iter()
            .any(|f| f["id"] == id.as_str() && f["name"] == "waits")
    });
    assert!(listed, "{id} not in {fns}");

    let o = bento(&s.url, &["inspect", &token, "--json"]).await;
    let one = json(&o, "inspect --json");
    assert_eq!(one["token"], token.as_str());
    assert_eq!(one["state"], "running");
    assert_eq!(one["limits"]["memory"], 64 << 20);
    assert_eq!(one["limits"]["timeout"], 90);
    assert!(one["deadline"].is_u64(), "{one}");

    let o = bento(&s.url, &["inspect", &token]).await;
    expect_code(&o, 0, "inspect");
    let text = out(&o);
    let line = |key: &str| -> String {
        let found = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key));
        found
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no {key} line in:\n{text}"))
    };
    // Shortened, as `ls` shows it (docs/tenants.md); `--json` has it whole.
    assert_eq!(line("token"), &token[..12]);
    assert!(!text.contains(&token), "{text}");
    assert_eq!(line("function"), format!("waits ({id})"));
    assert_eq!(line("state"), "running");
    assert_eq!(line("attached"), "no");
    assert_eq!(line("memory"), "64.0 MiB");
    assert_eq!(line("timeout"), "1m30s");
    assert!(line("deadline").contains(" UTC (in "), "{text}");
    assert!(line("pending").starts_with("1 msg"), "{text}");
    no_escapes(&o, "inspect");

    // Without NO_COLOR, but not on a terminal: still no colour.
    let mut c = command(&s.url, &["ls"]);
    c.env_remove("NO_COLOR").env("TERM", "xterm-256color");
    let o = finish(c).await;
    expect_code(&o, 0, "ls to a pipe");
    assert!(out(&o).contains("running"), "{:?}", out(&o));
    no_escapes(&o, "ls to a pipe");
    let mut c = command(&s.url, &["inspect", &token]);
    c.env_remove("NO_COLOR");
    no_escapes(&finish(c).await, "inspect to a pipe");

    expect_code(&bento(&s.url, &["kill", &token]).await, 0, "kill");
    s.stop().await;
}

const TALKS: &str = r#"
import sys
def main(n):
    for i in range(n):
        send(f"m{i}")
    print("printed")
    print("complained", file=sys.stderr)
    sys.exit(3)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_shows_held_output_and_leaves_it_for_attach() {
    let s = TestServer::start().await;
    submit(&s.url, "talks", TALKS).await;
    let token = run_detached(&s.url, &["talks", "5"]).await;
    s.wait_session(&token, "ended", |i| i.state == SessionState::Ended)
        .await;
    let want = "m0\nm1\nm2\nm3\nm4\nprinted\n";

    // Twice, and once following: reading is not consuming.
    let (a, b, f) = tokio::join!(
        bento(&s.url, &["logs", &token]),
        bento(&s.url, &["logs", &token]),
        bento(&s.url, &["logs", "--follow", &token]),
    );
    for (o, what) in [(&a, "logs"), (&b, "logs again"), (&f, "logs -f")] {
        expect_code(o, 0, what);
        assert_eq!(out(o), want, "{what}");
        assert_eq!(
            err(o),
            "complained\nbento: function exited with code 3\n",
            "{what}"
        );
    }
    let o = bento(&s.url, &["logs", "--raw", &token]).await;
    assert_eq!(out(&o), "m0m1m2m3m4printed\n");

    let info = s.wait_session(&token, "still held", |_| true).await;
    assert!(info.pending_messages >= 7, "{info:?}");
    let o = bento(&s.url, &["attach", "--no-stdin", &token]).await;
    expect_code(&o, 3, "attach after logs");
    assert_eq!(out(&o), want);
    assert_eq!(err(&o), "complained\n");
    s.wait_reaped(&token).await;
    s.stop().await;
}

const SLOW: &str = r#"
import time
def main(n):
    for i in range(n):
        send(f"tick {i}")
        time.sleep(0.2)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_waits_for_the_exit() {
    let s = TestServer::start().await;
    submit(&s.url, "slow", SLOW).await;
    let token = run_detached(&s.url, &["slow", "5"]).await;
    let started = Instant::now();
    let o = bento(&s.url, &["logs", "-f", &token]).await;
    expect_code(&o, 0, "logs -f");
    let want: String = (0..5).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(out(&o), want);
    assert_eq!(err(&o), "bento: function exited with code 0\n");
    assert!(started.elapsed() >= Duration::from_millis(600));
    // Everything is still there for a client.
    let o = bento(&s.url, &["attach", "--no-stdin", &token]).await;
    expect_code(&o, 0, "attach after logs -f");
    assert_eq!(out(&o), want);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_does_not_take_over_an_attached_client() {
    let s = TestServer::start().await;
    submit(&s.url, "waits", WAITS).await;
    let token = run_detached(&s.url, &["waits"]).await;
    // The follower first: once it has shown `ready` (which nobody has
    // acknowledged yet) it is following, so it sees the session end rather
    // than finding it already reaped.
    let mut follow = spawn(command(&s.url, &["logs", "-f", &token]));
    expect_line(&mut follow, "ready").await;
    let mut attached = spawn(command(&s.url, &["attach", "--no-stdin", &token]));
    expect_line(&mut attached, "ready").await;
    s.wait_session(&token, "attached", |i| i.attached).await;

    let once = bento(&s.url, &["logs", &token]).await;
    expect_code(&once, 0, "logs while attached");
    // Whatever it printed, the attach goes on.
    let info = s
        .client
        .session(&token)
        .await
        .unwrap_or_else(|e| panic!("session: {e}"));
    assert!(info.attached, "logs must not detach: {info:?}");
    assert!(
        matches!(attached.try_wait(), Ok(None)),
        "the attach must keep running"
    );

    // The follower ends when the session does, quietly and with 0.
    expect_code(&bento(&s.url, &["kill", &token]).await, 0, "kill");
    let (a, f) = tokio::join!(
        tokio::time::timeout(LIMIT, attached.wait_with_output()),
        tokio::time::timeout(LIMIT, follow.wait_with_output()),
    );
    let a = a
        .unwrap_or_else(|_| panic!("attach did not end"))
        .unwrap_or_else(|e| panic!("attach: {e}"));
    let f = f
        .unwrap_or_else(|_| panic!("logs -f did not end"))
        .unwrap_or_else(|e| panic!("logs -f: {e}"));
    expect_code(&a, 137, "the attach sees the kill");
    assert!(!err(&a).contains("took over"), "{:?}", err(&a));
    expect_code(&f, 0, "logs -f after the kill");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = bento("http://127.0.0.1:9", &["completions", shell]).await;
        expect_code(&o, 0, shell);
        let script = out(&o);
        assert!(
            script.contains("bento") && script.contains("inspect"),
            "{shell}: {script:.300}"
        );
    }
    let o = bento("http://127.0.0.1:9", &["completions", "tcsh"]).await;
    assert_eq!(o.status.code(), Some(2), "unknown shell is a usage error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_to_do_next() {
    let s = TestServer::start_with(|c| c.api_key = Some("0123456789abcdef-test-key".into())).await;
    let o = bento(&s.url, &["ls"]).await;
    expect_code(&o, 1, "no API key");
    assert!(
        err(&o).ends_with("\nhint: set BENTO_API_KEY or --api-key\n"),
        "{:?}",
        err(&o)
    );
    let mut c = command(&s.url, &["ls", "--json"]);
    c.env("BENTO_API_KEY", "0123456789abcdef-test-key");
    let list = json(&finish(c).await, "ls --json with the key");
    assert_eq!(list, Value::Array(vec![]));
    s.stop().await;

    let s = TestServer::start().await;
    let zeros = "0".repeat(64);
    for args in [
        &["inspect", &zeros][..],
        &["logs", &zeros],
        &["logs", "-f", &zeros],
        &["attach", &zeros],
        &["kill", &zeros],
    ] {
        let o = bento(&s.url, args).await;
        expect_code(&o, 1, &format!("{args:?}"));
        assert_eq!(
            err(&o),
            "bento: unknown session token\nhint: see `bento ls`\n",
            "{args:?}"
        );
        assert!(out(&o).is_empty(), "{args:?}: {:?}", out(&o));
    }
    let o = bento(&s.url, &["run", "no-such-fn"]).await;
    expect_code(&o, 1, "unknown function");
    assert!(
        err(&o).ends_with("\nhint: see `bento functions`\n"),
        "{:?}",
        err(&o)
    );
    s.stop().await;

    // A port nothing listens on any more.
    let closed = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => format!("http://{addr}"),
        Err(e) => panic!("bind: {e}"),
    };
    for args in [&["ls"][..], &["logs", "t"], &["inspect", "t", "--json"]] {
        let o = bento(&closed, args).await;
        expect_code(&o, 1, "unreachable");
        let e = err(&o);
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 2, "one line and a hint: {e:?}");
        assert_eq!(
            lines.get(1).copied(),
            Some(format!("hint: is `bento serve` running at {closed}? (from BENTO_URL)").as_str())
        );
        assert!(out(&o).is_empty());
    }
}

/// Output a hostile function writes to attack the user's terminal: colour,
/// a window title, clearing the screen, the clipboard (OSC 52), and bytes
/// that are not UTF-8 (0x9b is CSI to a terminal that is not in UTF-8 mode).
const HOSTILE: &str = r#"
import sys
def main():
    send("\x1b[31mred\x1b]0;title\x07")
    print("\x1b[2Jprinted\ttab\r", flush=True)
    sys.stderr.write("\x1b]52;c;aGk=\x07err\n")
    sys.stderr.flush()
    send(b"\xff\x9b[1m")
"#;

/// The bytes a terminal would obey: C0 controls other than \n, \t and \r,
/// DEL, and the C1 range as raw bytes.
fn obeyed(bytes: &[u8]) -> Vec<u8> {
    let control = |b: &u8| {
        (*b < 0x20 && !matches!(b, b'\n' | b'\t' | b'\r')) || (0x7f..0xa0).contains(b) || *b == 0xff
    };
    bytes.iter().copied().filter(control).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_from_a_function_are_shown_not_obeyed_unless_raw() {
    let s = TestServer::start().await;
    submit(&s.url, "hostile", HOSTILE).await;
    let shown_out = concat!(
        r"\x1b[31mred\x1b]0;title\x07",
        "\n",
        r"\x1b[2Jprinted",
        "\ttab\r\n",
        r"\xff\x9b[1m",
        "\n"
    );
    let shown_err = concat!(r"\x1b]52;c;aGk=\x07err", "\n");

    let o = bento(&s.url, &["run", "hostile"]).await;
    expect_code(&o, 0, "run");
    assert_eq!(obeyed(&o.stdout), b"", "stdout: {:?}", out(&o));
    assert_eq!(obeyed(&o.stderr), b"", "stderr: {:?}", err(&o));
    assert_eq!(out(&o), shown_out);
    assert_eq!(err(&o), shown_err);

    let o = bento(&s.url, &["run", "--raw", "hostile"]).await;
    expect_code(&o, 0, "run --raw");
    let mut exact = b"\x1b[31mred\x1b]0;title\x07\x1b[2Jprinted\ttab\r\n".to_vec();
    exact.extend_from_slice(b"\xff\x9b[1m");
    assert_eq!(o.stdout, exact, "{:?}", out(&o));
    assert_eq!(o.stderr, b"\x1b]52;c;aGk=\x07err\n");

    // Attach and logs, to output held while nobody was attached.
    let token = run_detached(&s.url, &["hostile"]).await;
    s.wait_session(&token, "ended", |i| i.state == SessionState::Ended)
        .await;
    let o = bento(&s.url, &["logs", &token]).await;
    expect_code(&o, 0, "logs");
    assert_eq!(obeyed(&o.stdout), b"", "logs: {:?}", out(&o));
    // The page API carries text: the bytes that are not UTF-8 arrive as
    // U+FFFD, so only the first three lines are compared exactly.
    assert!(
        out(&o).starts_with(&shown_out[..shown_out.len() - 12]),
        "{:?}",
        out(&o)
    );
    assert!(err(&o).starts_with(shown_err), "{:?}", err(&o));
    let o = bento(&s.url, &["logs", "--raw", &token]).await;
    assert!(
        o.stdout.starts_with(b"\x1b[31mred\x1b]0;title\x07\x1b[2J"),
        "{:?}",
        out(&o)
    );
    let o = bento(&s.url, &["attach", "--no-stdin", &token]).await;
    expect_code(&o, 0, "attach");
    assert_eq!(obeyed(&o.stdout), b"", "attach: {:?}", out(&o));
    assert_eq!(out(&o), shown_out);
    assert_eq!(err(&o), shown_err);
    s.wait_reaped(&token).await;
    s.stop().await;
}
