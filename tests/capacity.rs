//! What counts against `max_sessions`: running functions only. Ended
//! sessions whose output nobody has read are bounded on their own by
//! `max_ended_sessions`, and at that bound new sessions are refused rather
//! than unread output discarded. The bound on running sessions itself
//! needs no function to run: it is checked on the fake runtime (no Docker).

mod kit;

use bento::client::{AttachOptions, Event};
use bento::wire::api::{CreateSession, SessionState};
use kit::requests::{create, error_mismatch, kill_and_reap, post_json, SLEEPER};
use kit::{receive, TestServer};
use serde_json::{json, Value};

/// Ends at once, leaving one message nobody has read.
const HELLO: &str = "send('hello')\n";

fn run(function: &str) -> CreateSession {
    CreateSession {
        function: function.into(),
        args: vec![],
        transient: false,
        limits: Default::default(),
        forkable: None,
        env: Default::default(),
        secrets: Vec::new(),
    }
}

/// Starts a detached session of `function` and waits until it has ended
/// with its output unread.
async fn ended_unread(s: &TestServer, function: &str) -> String {
    let (token, _) = s.session(function, &[]).await;
    let info = s
        .wait_session(&token, "the session ends", |i| {
            i.state == SessionState::Ended
        })
        .await;
    assert!(info.pending_messages > 0, "its output is unread: {info:?}");
    token
}

/// Reads a session's output to its end, so that it is reaped.
async fn read_out(s: &TestServer, token: &str) {
    let mut att = s.attach(token, 0).await;
    let r = receive(&mut att, |_| false).await;
    assert_eq!(r.data_strings(), ["hello"]);
    assert!(r.exit.is_some(), "no exit delivered: {:?}", r.end);
    s.wait_reaped(token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_sessions_do_not_count_as_running_and_have_their_own_bound() {
    let s = TestServer::start_with(|c| {
        c.max_sessions = 2;
        c.max_ended_sessions = 3;
    })
    .await;
    let f = s.submit(HELLO).await;

    // Two ended, unread: no function runs, so a third run is taken.
    let a = ended_unread(&s, &f).await;
    let b = ended_unread(&s, &f).await;
    let c = ended_unread(&s, &f).await;

    // Three ended and unread is the bound: the next run is refused, saying
    // why and what to do, and nothing held was discarded for it.
    let refused = s.client.create_session(&run(&f)).await;
    match &refused {
        Err(bento::client::ClientError::Http { status, message }) => {
            assert_eq!(*status, 429, "{message}");
            for phrase in ["3 ended sessions", "nobody has read", "bento attach"] {
                assert!(message.contains(phrase), "{phrase:?} not in {message:?}");
            }
        }
        other => panic!(
            "a fourth run past max_ended_sessions: {:?}",
            other.as_ref().map(|c| &c.id)
        ),
    }
    for token in [&a, &b, &c] {
        match s.client.session(token).await {
            Ok(info) => assert!(info.pending_messages > 0, "{info:?}"),
            Err(e) => panic!("an ended session was dropped to make room: {e}"),
        }
    }

    // Reading one out makes room again.
    read_out(&s, &a).await;
    let d = ended_unread(&s, &f).await;

    for token in [&b, &c, &d] {
        read_out(&s, token).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_sessions_creating_is_429_until_one_is_reaped() {
    let s = TestServer::start_fake(|c| c.max_sessions = 2).await;
    let f = s.submit(SLEEPER).await;
    let (a, _) = s.session(&f, &[]).await;
    let (b, _) = s.session(&f, &[]).await;

    let url = format!("{}/v1/sessions", s.url);
    let third = post_json(&url, json!({"function": f}).to_string()).await;
    if third.status == 201 {
        let v: Value = serde_json::from_str(&third.body).unwrap_or(Value::Null);
        if let Some(t) = v["token"].as_str() {
            kill_and_reap(&s, t).await;
        }
    }
    if let Some(why) = error_mismatch(&third, 429, &["capacity"]) {
        kill_and_reap(&s, &a).await;
        kill_and_reap(&s, &b).await;
        panic!("third session: {why}");
    }

    if let Err(e) = s.client.kill_session(&a).await {
        panic!("kill: {e}");
    }

    // Read its exit so it is reaped; then there is room again.
    let mut att = match s.client.attach(&a, AttachOptions::default()).await {
        Ok(att) => att,
        Err(e) => panic!("attach: {e}"),
    };
    let mut exit = None;
    while let Some(ev) = att.next().await {
        match ev {
            Event::Exit { seq, exit: e } => {
                exit = Some(e);
                att.written(seq);
            }
            Event::Output(o) => att.written(o.seq),
            Event::Ended(_) => break,
            _ => {}
        }
    }
    assert!(
        exit.is_some_and(|e| e.reason == bento::wire::api::ExitReason::Killed),
        "the killed session's exit"
    );
    s.wait_reaped(&a).await;
    let (c, _) = create(&s, json!({"function": f})).await;

    kill_and_reap(&s, &b).await;
    kill_and_reap(&s, &c).await;
    s.stop().await;
}
