//! Referring to sessions on the command line (short tokens, prefixes, ids),
//! removing ended sessions and stored functions, and what `ls` and
//! `inspect` say around a kill: through the real binary against a real
//! controller and real containers.

mod kit;

use bento::wire::api::SessionState;
use kit::cli::cli_output as bento;
use kit::{err, expect_code, out, TestServer};

/// `bento run -d FUNCTION` and the token it printed.
async fn run_detached(url: &str, function: &str) -> String {
    let o = bento(url, &["run", "-d", function]).await;
    expect_code(&o, 0, "run -d");
    out(&o).trim().to_string()
}

const WAITS: &str = "def main():\n    send('ready')\n    recv()\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_shows_short_tokens_and_prefixes_or_ids_stand_for_them() {
    let s = TestServer::start().await;
    let f = s.submit(WAITS).await;
    let token = run_detached(&s.url, &f).await;
    let other = run_detached(&s.url, &f).await;
    let info = s
        .wait_session(&token, "ready sent", |i| i.pending_messages == 1)
        .await;

    let o = bento(&s.url, &["ls"]).await;
    expect_code(&o, 0, "ls");
    let listing = out(&o);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with(&format!("{}  ", &token[..12]))),
        "ls shows 12 characters of {token}: {listing}"
    );
    assert!(!listing.contains(&token), "no whole token: {listing}");
    let o = bento(&s.url, &["ls", "--no-trunc"]).await;
    assert!(out(&o).contains(&token), "--no-trunc: {}", out(&o));

    // A prefix of 6 and the s-… id both find the session.
    for reference in [&token[..6], info.id.as_str()] {
        let o = bento(&s.url, &["inspect", reference, "--json"]).await;
        expect_code(&o, 0, &format!("inspect {reference}"));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("inspect --json: {e}: {}", out(&o)));
        assert_eq!(v["token"], token.as_str(), "inspect {reference}");
    }
    let o = bento(&s.url, &["logs", &token[..8]]).await;
    expect_code(&o, 0, "logs by prefix");
    assert_eq!(out(&o), "ready\n");

    let o = bento(&s.url, &["inspect", &token[..5]]).await;
    assert!(
        o.status.code() == Some(1) && err(&o).contains("at least 6"),
        "a 5-character prefix is refused: {}",
        err(&o)
    );
    let o = bento(&s.url, &["kill", "s-nosuchid"]).await;
    assert!(
        o.status.code() == Some(1) && err(&o).contains("unknown session"),
        "{}",
        err(&o)
    );

    // `kill` by prefix stops that session and no other.
    expect_code(&bento(&s.url, &["kill", &token[..10]]).await, 0, "kill");
    let ended = s
        .wait_session(&token, "killed", |i| i.state == SessionState::Ended)
        .await;
    assert_eq!(ended.exit.map(|e| e.code), Some(137));
    let still = s.info(&other).await;
    assert_eq!(still.state, SessionState::Running);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_show_and_rm_by_id_or_name() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let file = dir.path().join("waits.py");
    std::fs::write(&file, WAITS).unwrap_or_else(|e| panic!("write: {e}"));
    let path = kit::path_str(&file);
    let o = bento(&s.url, &["submit", &path, "--name", "waits"]).await;
    expect_code(&o, 0, "submit");
    let id = out(&o).trim().to_string();
    let other = s.submit("def main():\n    pass\n").await;

    let o = bento(&s.url, &["functions", "show", "waits"]).await;
    expect_code(&o, 0, "functions show");
    let text = out(&o);
    assert!(
        text.starts_with(&format!("id       {id}\nname     waits\nimage    python\n")),
        "{text}"
    );
    // `--url` without a scheme means http.
    let bare = s.url.trim_start_matches("http://");
    let o = bento(&s.url, &["functions", "show", &id, "--json", "--url", bare]).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("show --json: {e}: {}", out(&o)));
    assert_eq!(v["name"], "waits");

    // Limits past the image's maximum are refused in units.
    let o = bento(&s.url, &["run", "waits", "--memory", "8g"]).await;
    assert!(
        o.status.code() == Some(1)
            && err(&o).contains("memory 8 GiB is above the image's maximum of 1 GiB"),
        "{}",
        err(&o)
    );

    // One name, one id, one unknown: the two known go, the unknown is
    // reported, and the exit code says something failed.
    let token = run_detached(&s.url, "waits").await;
    let o = bento(&s.url, &["functions", "rm", "waits", "nope", &other]).await;
    assert_eq!(o.status.code(), Some(1), "stderr {}", err(&o));
    assert_eq!(out(&o), format!("{id}\n{other}\n"));
    assert!(err(&o).contains("nope: unknown function"), "{}", err(&o));
    let o = bento(&s.url, &["functions"]).await;
    expect_code(&o, 0, "functions");
    assert_eq!(
        out(&o).lines().count(),
        1,
        "only the header is left: {}",
        out(&o)
    );

    // The session started before the rm runs on, and still answers.
    s.wait_session(&token, "ready sent", |i| i.pending_messages == 1)
        .await;
    let o = bento(&s.url, &["logs", &token]).await;
    expect_code(&o, 0, "logs of a deleted function's session");
    assert_eq!(out(&o), "ready\n");
    let info = s.info(&token).await;
    assert_eq!(info.state, SessionState::Running);
    expect_code(&bento(&s.url, &["kill", &token]).await, 0, "kill");
    s.stop().await;
}

/// Ends at once, leaving a message nobody has read.
const QUICK: &str = "def main():\n    send('unread')\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rm_and_prune_discard_ended_sessions_and_spare_running_ones() {
    let s = TestServer::start().await;
    let waits = s.submit(WAITS).await;
    let quick = s.submit(QUICK).await;
    let running = run_detached(&s.url, &waits).await;
    let mut ended = Vec::new();
    for _ in 0..3 {
        let t = run_detached(&s.url, &quick).await;
        s.wait_session(&t, "ended", |i| i.state == SessionState::Ended)
            .await;
        ended.push(t);
    }

    // A running session is refused without -f, and says what to do.
    let o = bento(&s.url, &["rm", &running[..8]]).await;
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains("still running") && err(&o).contains("rm -f"),
        "{}",
        err(&o)
    );
    // An ended one is removed by prefix; the prefix is echoed.
    let o = bento(&s.url, &["rm", &ended[0][..8]]).await;
    expect_code(&o, 0, "rm");
    assert_eq!(out(&o), format!("{}\n", &ended[0][..8]));
    s.wait_reaped(&ended[0]).await;

    // prune needs -f off a terminal (stdin here is not one).
    let o = bento(&s.url, &["prune"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("-f"), "{}", err(&o));
    let o = bento(&s.url, &["prune", "-f"]).await;
    expect_code(&o, 0, "prune -f");
    let mut pruned: Vec<String> = out(&o).lines().map(str::to_string).collect();
    pruned.sort();
    let mut want: Vec<String> = ended[1..].iter().map(|t| t[..12].to_string()).collect();
    want.sort();
    assert_eq!(pruned, want, "prune removes exactly the ended ones");
    for t in &ended[1..] {
        let gone = s.client.session(t).await;
        assert!(gone.is_err_and(|e| e.is_not_found()), "{t} pruned");
    }
    let info = s.info(&running).await;
    assert_eq!(info.state, SessionState::Running, "prune spares it");

    // rm -f kills it first.
    let o = bento(&s.url, &["rm", "-f", &running]).await;
    expect_code(&o, 0, "rm -f");
    let gone = s.client.session(&running).await;
    assert!(gone.is_err_and(|e| e.is_not_found()), "rm -f removed it");
    let o = bento(&s.url, &["prune", "-f"]).await;
    expect_code(&o, 0, "prune with nothing to do");
    assert!(out(&o).is_empty() && err(&o).contains("no ended sessions"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_returns_ls_says_ended_and_inspect_shows_no_deadline() {
    let s = TestServer::start().await;
    let f = s.submit(WAITS).await;
    let o = bento(&s.url, &["run", "-d", "--timeout", "90s", &f]).await;
    expect_code(&o, 0, "run -d");
    let token = out(&o).trim().to_string();
    let o = bento(&s.url, &["inspect", &token]).await;
    let deadline = |text: &str| -> String {
        text.lines()
            .find(|l| l.starts_with("deadline "))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        deadline(&out(&o)).contains(" UTC ("),
        "a running session shows its deadline: {}",
        out(&o)
    );

    // No waiting in between: `kill` itself returns once the function ended.
    expect_code(&bento(&s.url, &["kill", &token]).await, 0, "kill");
    let o = bento(&s.url, &["ls"]).await;
    let listing = out(&o);
    let row: Vec<&str> = listing
        .lines()
        .find(|l| l.starts_with(&token[..12]))
        .unwrap_or_else(|| panic!("{token} not listed: {listing}"))
        .split_whitespace()
        .collect();
    // TOKEN FUNCTION STATE ATTACHED EXIT
    assert_eq!(row.get(2..5), Some(&["ended", "no", "137"][..]), "{row:?}");
    let o = bento(&s.url, &["inspect", &token]).await;
    assert_eq!(deadline(&out(&o)), "deadline   - (ended)", "{}", out(&o));
    s.stop().await;
}
