//! The history of reaped sessions, against the real Docker engine: a
//! record kept across the reap and across a controller's SIGKILL and
//! restart, retention by `history_max` and `history_ttl`, the listing's
//! filters and pages, and `bento ls -a` / `bento inspect` on a reaped
//! session, through the real binary.

mod kit;

use std::time::Duration;

use bento::client::{Client, HistoryFilter};
use bento::wire::api::{ExitReason, HistoryState};
use kit::client::{client, create, receive, submit, try_attach, wait_reaped};
use kit::controller::Controller;
use kit::{cli_output as bento, err, expect_code, out, TestServer};

const ECHO: &str = "def main(x):\n    send(x)\n    m = recv()\n    send(b'got ' + m)\n";

/// Runs a session of `f` to its end with one input, reads everything, and
/// waits until it is reaped. Returns its token and id.
async fn run_to_reaped(c: &Client, f: &str, arg: &str) -> (String, String) {
    let token = create(c, f, &[arg]).await;
    let id = c
        .session(&token)
        .await
        .unwrap_or_else(|e| panic!("session: {e}"))
        .id;
    let mut att = try_attach(c, &token, 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let input = att.input();
    input
        .send(b"hello".to_vec())
        .await
        .unwrap_or_else(|e| panic!("send: {e}"));
    input.eof().await.unwrap_or_else(|e| panic!("eof: {e}"));
    let got = receive(&mut att, |_| false).await;
    assert_eq!(got.data_strings(), [arg.to_string(), "got hello".into()]);
    drop(att);
    wait_reaped(c, &token, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (token, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_survive_the_reap_and_a_restart_and_the_oldest_go_past_history_max() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut ctl = Controller::with_config(dir.path(), 0, "history_max: 3\n").await;
    ctl.start().await;
    let url = ctl.url();
    let c = client(&url);
    let f = submit(&c, ECHO).await;
    let mut runs = Vec::new();
    for i in 0..4 {
        runs.push(run_to_reaped(&c, &f, &format!("run{i}")).await);
    }
    let (first_token, first_id) = runs[0].clone();
    let (last_token, last_id) = runs[3].clone();

    // What a record holds: no token, the counts, the exit.
    let r = c
        .history_record(&last_token)
        .await
        .unwrap_or_else(|e| panic!("history by token: {e}"));
    assert_eq!(
        (r.id.as_str(), r.state),
        (last_id.as_str(), HistoryState::Reaped)
    );
    assert_eq!(r.function, f);
    assert_eq!(r.kind, "persistent");
    assert_eq!(
        r.exit.as_ref().map(|e| &e.reason),
        Some(&ExitReason::Exited { code: 0 })
    );
    assert_eq!((r.messages_in, r.bytes_in), (1, 5), "{r:?}");
    assert_eq!((r.messages_out, r.bytes_out), (2, 4 + 9), "{r:?}");
    assert!(
        r.created_at <= r.started_at && Some(r.started_at) <= r.ended_at,
        "{r:?}"
    );
    assert!(r.ended_at <= Some(r.reaped_at), "{r:?}");
    assert!(r.limits.is_some(), "{r:?}");
    let json = serde_json::to_string(&r).unwrap_or_default();
    assert!(
        !json.contains(&last_token),
        "the token is never kept: {json}"
    );

    // history_max 3: the oldest went, and the metric counted it.
    let all = c
        .history(&HistoryFilter::default(), 100)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [&runs[3].1, &runs[2].1, &runs[1].1], "newest first");
    assert!(kit::metric(&url, "bento_history_expired_total").await >= 1.0);

    // A SIGKILL and a restart on the same data dir: the records are there.
    ctl.kill();
    ctl.start().await;
    let again = c
        .history(&HistoryFilter::default(), 100)
        .await
        .unwrap_or_else(|e| panic!("after restart: {e}"));
    assert_eq!(again, all, "the same records after a restart");
    let by_id = c
        .history_record(&last_id)
        .await
        .unwrap_or_else(|e| panic!("by id: {e}"));
    assert_eq!(by_id, r);
    let gone = c.history_record(&first_token).await;
    assert!(gone.is_err_and(|e| e.is_not_found()), "pruned: {first_id}");

    // Pages of two: no gaps, no repeats.
    let mut filter = HistoryFilter {
        limit: Some(2),
        ..HistoryFilter::default()
    };
    let p1 = c
        .history_page(&filter)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p1.sessions.len(), 2);
    filter.cursor = p1.next.clone();
    assert!(filter.cursor.is_some(), "a next page");
    let p2 = c
        .history_page(&filter)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((p2.sessions.len(), p2.next), (1, None));
    assert_eq!(p2.sessions[0].id, runs[1].1);

    // The CLI: inspect of a reaped token, marked as reaped; ls -a and its filters.
    let o = bento(&url, &["inspect", &last_token]).await;
    expect_code(&o, 0, "inspect a reaped token");
    let text = out(&o);
    assert!(text.contains("reaped") && text.contains(&last_id), "{text}");
    assert!(!text.contains(&last_token), "{text}");
    let o = bento(&url, &["inspect", &last_id, "--json"]).await;
    expect_code(&o, 0, "inspect a reaped id");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(v["state"], "reaped", "{}", out(&o));

    let live = create(&c, &f, &["live"]).await;
    let o = bento(&url, &["ls", "-a"]).await;
    expect_code(&o, 0, "ls -a");
    let listing = out(&o);
    assert!(listing.contains(&live[..12]), "live one listed: {listing}");
    for (_, id) in &runs[1..] {
        assert!(listing.contains(id.as_str()), "{id} listed: {listing}");
    }
    assert!(listing.contains("reaped"), "{listing}");
    let o = bento(&url, &["ls", "--all", "--json"]).await;
    expect_code(&o, 0, "ls --all --json");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(v["reaped"].as_array().map(Vec::len), Some(3), "{}", out(&o));
    assert_eq!(
        v["sessions"].as_array().map(Vec::len),
        Some(1),
        "{}",
        out(&o)
    );
    let o = bento(&url, &["ls", "--state", "reaped", "--json", "--limit", "2"]).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(v["reaped"].as_array().map(Vec::len), Some(2), "{}", out(&o));
    assert_eq!(
        v["sessions"].as_array().map(Vec::len),
        Some(0),
        "{}",
        out(&o)
    );
    let o = bento(&url, &["ls", "-a", "--since", "1h", "--json"]).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(v["reaped"].as_array().map(Vec::len), Some(3), "{}", out(&o));
    let o = bento(&url, &["ls", "-a", "--until", "1h", "--json"]).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(v["reaped"].as_array().map(Vec::len), Some(0), "{}", out(&o));
    let o = bento(
        &url,
        &["ls", "-a", "--function", "no-such-function", "--json"],
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(v["reaped"].as_array().map(Vec::len), Some(0), "{}", out(&o));
    let o = bento(&url, &["ls", "--state", "gone"]).await;
    assert!(err(&o).contains("--state"), "{}", err(&o));
    ctl.stop();
}

/// `history_ttl`: a record older than it is dropped at the next listing
/// (the wait is for that, bounded; no fixed sleep).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_past_history_ttl_expire() {
    let s = TestServer::start_with(|c| c.history_ttl = Duration::from_secs(1)).await;
    let f = s.submit(ECHO).await;
    let (token, _) = run_to_reaped(&s.client, &f, "x").await;
    assert!(
        s.client.history_record(&token).await.is_ok(),
        "kept at first"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let page = s
            .client
            .history_page(&HistoryFilter::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if page.sessions.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(kit::metric(&s.url, "bento_history_expired_total").await >= 1.0);
}

/// The new flags are in `--help`.
#[test]
fn new_flags_are_in_help() {
    let o = kit::run_cli("http://127.0.0.1:1", &["ls", "--help"], b"");
    let help = out(&o);
    for flag in [
        "--all",
        "--state",
        "--function",
        "--since",
        "--until",
        "--limit",
    ] {
        assert!(help.contains(flag), "ls --help shows {flag}: {help}");
    }
    let o = kit::run_cli("http://127.0.0.1:1", &["run", "--help"], b"");
    assert!(out(&o).contains("--usage"), "run --help: {}", out(&o));
}

/// The new flags are in the README, and the history's routes and their
/// parameters in the OpenAPI document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_flags_are_in_the_readme_and_the_api_in_openapi() {
    let readme = std::fs::read_to_string(kit::repo().join("README.md")).unwrap_or_default();
    for flag in [
        "--usage",
        "-a/--all",
        "--state",
        "--function",
        "--since",
        "--until",
        "--limit",
    ] {
        assert!(readme.contains(flag), "README shows {flag}");
    }
    let s = TestServer::start_fake(|_| {}).await;
    let doc: serde_json::Value = reqwest::get(format!("{}/openapi.json", s.url))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let list = doc["paths"]["/v1/history"]["get"]["summary"]
        .as_str()
        .unwrap_or_default();
    for param in [
        "state=",
        "function=",
        "since=",
        "until=",
        "limit=",
        "cursor=",
    ] {
        assert!(
            list.contains(param),
            "GET /v1/history documents {param}: {list}"
        );
    }
    let params: Vec<&str> = doc["paths"]["/v1/history"]["get"]["parameters"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        params,
        ["state", "function", "since", "until", "limit", "cursor"]
    );
    assert!(doc["paths"]["/v1/history/{ref}"]["get"].is_object());
    for schema in ["HistoryPage", "HistoryRecord", "Usage"] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} in the components"
        );
    }
}
