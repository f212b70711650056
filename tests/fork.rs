//! Fork (docs/fork.md), end to end on the real engine: a fork is a new
//! container fed its parent's input again, whose replayed output is
//! checked and never shown.

mod kit;

use bento::client::{Attachment, Client, ClientError};
use bento::wire::api::{
    ExitReason, ForkSession, ForkState, OnDivergence, SessionInfo, SessionState,
};
use kit::controller::Controller;
use kit::{receive, TestServer};
use std::time::Duration;

/// Answers each input with the running total; says `ready` first.
const ACC: &str = r#"
def main():
    total = 0
    send("ready")
    while True:
        m = recv()
        if m is None:
            break
        total += int(m)
        send(str(total))
"#;

/// Not deterministic: answers each input with a random number.
const RANDOM: &str = r#"
import random

def main():
    while True:
        m = recv()
        if m is None:
            break
        send(str(random.random()))
"#;

/// The total after inputs `1..=n`.
fn sum(n: u64) -> u64 {
    n * (n + 1) / 2
}

/// Sends `values` and reads one answer for each (after `skip` messages
/// that come first, such as `ready`); returns the answers.
async fn feed(att: &mut Attachment, values: &[u64], skip: usize) -> Vec<String> {
    let input = att.input();
    for v in values {
        if let Err(e) = input.send(v.to_string().into_bytes()).await {
            panic!("send input: {e}");
        }
    }
    let want = values.len() + skip;
    let r = receive(att, |r| r.data.len() >= want).await;
    assert_eq!(r.data.len(), want, "the stream ended early: {:?}", r.exit);
    r.data_strings().split_off(skip)
}

/// A parent fed inputs `1..=n` and detached, with its answers checked.
async fn parent(s: &TestServer, f: &str, n: u64) -> (String, SessionInfo) {
    let (token, _) = s.session(f, &[]).await;
    let mut att = s.attach(&token, 0).await;
    let values: Vec<u64> = (1..=n).collect();
    let answers = feed(&mut att, &values, 1).await;
    assert_eq!(answers.last(), Some(&sum(n).to_string()));
    att.detach().await;
    let info = s.info(&token).await;
    (token, info)
}

async fn fork(client: &Client, token: &str, req: ForkSession) -> String {
    match client.fork_session(token, &req).await {
        Ok(c) => c.token,
        Err(e) => panic!("fork: {e}"),
    }
}

/// A fork the API refuses with 409: its message.
async fn refused(client: &Client, token: &str, req: ForkSession) -> String {
    match client.fork_session(token, &req).await {
        Err(ClientError::Http {
            status: 409,
            message,
        }) => message,
        other => panic!("not refused with 409: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_after_100_inputs_answers_as_its_parent_then_goes_its_own_way() {
    let s = TestServer::start().await;
    let f = s.submit(ACC).await;
    let (token, parent_info) = parent(&s, &f, 100).await;
    let child = fork(&s.client, &token, ForkSession::default()).await;

    let mut c = s.attach(&child, 0).await;
    // The next input answers the same in both.
    assert_eq!(
        feed(&mut c, &[5], 0).await,
        vec![(sum(100) + 5).to_string()]
    );
    let mut p = s.attach(&token, 0).await;
    assert_eq!(
        feed(&mut p, &[5], 0).await,
        vec![(sum(100) + 5).to_string()]
    );
    // Then each goes its own way.
    assert_eq!(
        feed(&mut c, &[1000], 0).await,
        vec![(sum(100) + 1005).to_string()]
    );
    assert_eq!(
        feed(&mut p, &[1], 0).await,
        vec![(sum(100) + 6).to_string()]
    );

    let info = s.info(&child).await;
    let origin = info
        .fork
        .clone()
        .unwrap_or_else(|| panic!("not a fork: {info:?}"));
    assert_eq!(origin.parent, parent_info.id);
    assert_eq!(origin.at_input, 100);
    assert_eq!(origin.state, ForkState::Live);
    assert_eq!(info.last_seq, 2, "only its own output is in its log");
    assert!(parent_info.fork.is_none() && parent_info.forkable);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_at_input_10_behaves_as_the_parent_did_after_input_10() {
    let s = TestServer::start().await;
    let f = s.submit(ACC).await;
    let (token, _) = parent(&s, &f, 100).await;
    let req = ForkSession {
        at_input: Some(10),
        ..ForkSession::default()
    };
    let child = fork(&s.client, &token, req).await;
    let mut c = s.attach(&child, 0).await;
    assert_eq!(feed(&mut c, &[7], 0).await, vec![(sum(10) + 7).to_string()]);
    let info = s.info(&child).await;
    assert_eq!(
        info.fork.map(|f| (f.at_input, f.state)),
        Some((10, ForkState::Live))
    );

    // Past what the parent applied: refused, with the reason.
    let beyond = ForkSession {
        at_input: Some(101),
        ..ForkSession::default()
    };
    let text = refused(&s.client, &token, beyond).await;
    assert!(text.contains("beyond the 100 inputs"), "{text}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_function_s_fork_is_reported_diverged() {
    let s = TestServer::start().await;
    let f = s.submit(RANDOM).await;
    let (token, _) = s.session(&f, &[]).await;
    let mut att = s.attach(&token, 0).await;
    feed(&mut att, &[1, 2, 3, 4, 5], 0).await;
    att.detach().await;

    let killed = fork(&s.client, &token, ForkSession::default()).await;
    let mut k = s.attach(&killed, 0).await;
    let r = receive(&mut k, |_| false).await;
    assert!(
        r.data.is_empty(),
        "replayed output was shown: {:?}",
        r.data_strings()
    );
    let reason = r.exit.map(|e| e.reason);
    assert!(
        matches!(reason, Some(ExitReason::Diverged { .. })),
        "{reason:?}"
    );

    let req = ForkSession {
        on_divergence: Some(OnDivergence::Continue),
        ..ForkSession::default()
    };
    let kept = fork(&s.client, &token, req).await;
    let info = s
        .wait_session(&kept, "the replay checked", |i| {
            i.fork
                .as_ref()
                .is_some_and(|f| f.state == ForkState::Diverged)
        })
        .await;
    assert_eq!(
        info.state,
        SessionState::Running,
        "continue keeps it running"
    );
    let mut c = s.attach(&kept, 0).await;
    let got = feed(&mut c, &[6], 0).await;
    assert!(got.last().is_some_and(|v| v.starts_with("0.")), "{got:?}");
    // (The counters are the test process's: only this test diverges.)
    assert!(kit::metric(&s.url, "bento_forks_diverged_total").await >= 2.0);
    assert!(kit::metric(&s.url, "bento_forks_total").await >= 2.0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_past_the_history_bound_is_refused_and_one_before_it_works() {
    // Each input of 18 or 19 bytes costs 47 or 48: about 20 fit.
    let s = TestServer::start_with(|c| c.fork_history_max = 1000).await;
    let f = s.submit(ACC).await;
    let (token, _) = s.session(&f, &[]).await;
    let mut att = s.attach(&token, 0).await;
    let values: Vec<u64> = (1..=40).map(|i| i * 100_000_000_000_000_000).collect();
    feed(&mut att, &values, 1).await;
    att.detach().await;
    let text = refused(&s.client, &token, ForkSession::default()).await;
    assert!(text.contains("fork_history_exceeded"), "{text}");

    let req = ForkSession {
        at_input: Some(5),
        ..ForkSession::default()
    };
    let child = fork(&s.client, &token, req).await;
    let mut c = s.attach(&child, 0).await;
    let want = values[..5].iter().sum::<u64>() + 1;
    assert_eq!(feed(&mut c, &[1], 0).await, vec![want.to_string()]);

    // A session run with forkable: false keeps none.
    let body = bento::wire::api::CreateSession {
        function: f.clone(),
        args: vec![],
        transient: false,
        limits: Default::default(),
        forkable: Some(false),
        env: Default::default(),
        secrets: Vec::new(),
    };
    let plain = match s.client.create_session(&body).await {
        Ok(c) => c.token,
        Err(e) => panic!("create: {e}"),
    };
    let text = refused(&s.client, &plain, ForkSession::default()).await;
    assert!(text.contains("keeps no input history"), "{text}");
    assert!(!s.info(&plain).await.forkable);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_of_a_fork_and_of_an_ended_session() {
    let s = TestServer::start().await;
    let f = s.submit(ACC).await;
    let (token, _) = parent(&s, &f, 20).await;
    let a = fork(&s.client, &token, ForkSession::default()).await;
    let mut att = s.attach(&a, 0).await;
    assert_eq!(
        feed(&mut att, &[100, 200], 0).await.last(),
        Some(&(sum(20) + 300).to_string())
    );
    att.detach().await;
    // The fork's history is the replayed inputs and its own.
    let b = fork(&s.client, &a, ForkSession::default()).await;
    let mut bb = s.attach(&b, 0).await;
    assert_eq!(
        feed(&mut bb, &[1], 0).await,
        vec![(sum(20) + 301).to_string()]
    );
    let info = s.info(&b).await;
    assert_eq!(info.fork.map(|f| f.at_input), Some(22));

    // An ended session, not yet reaped (its client is still attached),
    // forks without its end of input: the fork waits for more.
    let (ended, _) = s.session(&f, &[]).await;
    let mut e = s.attach(&ended, 0).await;
    feed(&mut e, &[1, 2, 3], 1).await;
    if let Err(err) = e.input().eof().await {
        panic!("eof: {err}");
    }
    s.wait_session(&ended, "ended", |i| i.state == SessionState::Ended)
        .await;
    let child = fork(&s.client, &ended, ForkSession::default()).await;
    let mut c = s.attach(&child, 0).await;
    assert_eq!(feed(&mut c, &[4], 0).await, vec![sum(4).to_string()]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fork_s_client_never_sees_replayed_output_across_reconnects() {
    let s = TestServer::start().await;
    let f = s.submit(ACC).await;
    let (token, _) = parent(&s, &f, 30).await;
    let child = fork(&s.client, &token, ForkSession::default()).await;
    for round in 1..=3u64 {
        // Each time a new connection, from the start of what is held.
        let mut c = s.attach(&child, 0).await;
        let got = feed(&mut c, &[round], 0).await;
        assert_eq!(got, vec![(sum(30) + sum(round)).to_string()]);
        c.detach().await;
    }
    // Nothing before the fork's own output is held or listed: what a
    // watcher reads is its own three answers (or the end of them).
    let page = match s.client.output_page(&child, 0).await {
        Ok(p) => p,
        Err(e) => panic!("page: {e}"),
    };
    let own: Vec<String> = (1..=3).map(|r| (sum(30) + sum(r)).to_string()).collect();
    let texts: Vec<String> = page.messages.iter().map(|m| m.text.clone()).collect();
    assert!(own.ends_with(&texts), "{texts:?}");
    let info = s.info(&child).await;
    assert_eq!(info.last_seq, 3);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_survives_a_controller_sigkill() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut ctl = Controller::new(dir.path()).await;
    ctl.start().await;
    let client = kit::client::client(&ctl.url());
    let f = kit::client::submit(&client, ACC).await;
    let token = kit::client::create(&client, &f, &[]).await;
    let mut att = kit::client::try_attach(&client, &token, 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let values: Vec<u64> = (1..=50).collect();
    feed(&mut att, &values, 1).await;
    att.detach().await;

    ctl.kill();
    ctl.start().await;
    kit::client::wait_session(&client, &token, "resumed", Duration::from_secs(60), |i| {
        i.state == SessionState::Running
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let child = fork(&client, &token, ForkSession::default()).await;
    let mut c = kit::client::try_attach(&client, &child, 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(feed(&mut c, &[1], 0).await, vec![(sum(50) + 1).to_string()]);
    let earlier = ForkSession {
        at_input: Some(25),
        ..ForkSession::default()
    };
    let child = fork(&client, &token, earlier).await;
    let mut c = kit::client::try_attach(&client, &child, 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(feed(&mut c, &[1], 0).await, vec![(sum(25) + 1).to_string()]);
    ctl.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bento_fork_prints_a_token_and_inspect_shows_the_parent() {
    let s = TestServer::start().await;
    let f = s.submit(ACC).await;
    let (token, parent_info) = parent(&s, &f, 3).await;
    let o = s.cli(&["fork", &token, "--at-input", "2", "-d"], b"");
    kit::expect_code(&o, 0, "bento fork -d");
    let child = kit::out(&o).trim().to_string();
    let o = s.cli(&["inspect", &child], b"");
    kit::expect_code(&o, 0, "bento inspect");
    let text = kit::out(&o);
    let want = format!("fork of    {} after input 2 (", parent_info.id);
    assert!(text.contains(&want), "{text}");
    // Attached, it answers its input as the parent did after input 2.
    let o = s.cli(&["fork", &token, "--at-input", "2"], b"10\n");
    kit::expect_code(&o, 0, "bento fork");
    assert_eq!(kit::out(&o), format!("{}\n", sum(2) + 10));
    s.stop().await;
}
