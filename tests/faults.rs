//! Connections that fail again and again lose nothing: output arrives
//! exactly once and in order, input reaches the function exactly once and
//! in order, dead peers are noticed, slow clients stall nothing else.

mod kit;

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::time::{Duration, Instant};

use bento::client::{AttachEnd, AttachOptions, Client, Event};
use bento::wire::api::{CreateSession, ExitReason, ServerMsg, SessionState};
use futures_util::StreamExt;
use kit::proxy::{FaultProxy, Faults};
use kit::TestServer;

/// Emits `mb` MiB as numbered 64 KiB messages from a thread, while the main
/// thread echoes every input line; ends when both are done.
const STREAM_AND_ECHO: &str = r#"
import threading

def payload(i):
    head = f"{i}:".encode()
    return head + bytes([(i * 7 + k) % 251 for k in range(256)]) * 256

def produce(n):
    for i in range(n):
        send(payload(i))

def main(mb):
    n = mb * 16
    t = threading.Thread(target=produce, args=(n,))
    t.start()
    count = 0
    while True:
        m = recv()
        if m is None:
            break
        send(b"echo:" + m)
        count += 1
    t.join()
    send(f"done {count}")
"#;

fn payload(i: usize) -> Vec<u8> {
    let mut v = format!("{i}:").into_bytes();
    let block: Vec<u8> = (0..256).map(|k| ((i * 7 + k) % 251) as u8).collect();
    for _ in 0..256 {
        v.extend_from_slice(&block);
    }
    v
}

fn fast_reconnect() -> AttachOptions {
    AttachOptions {
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(200),
        heartbeat_interval: Duration::from_millis(500),
        heartbeat_timeout: Duration::from_secs(1),
        ..AttachOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_again_and_again_loses_nothing() {
    let s = TestServer::start_with(|c| c.heartbeat_interval = Duration::from_millis(500)).await;
    let upstream = s
        .url
        .trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let proxy = FaultProxy::start(
        upstream,
        Faults {
            cut_after: (128 << 10, 2 << 20),
            stall_chance: 0.01,
            stall_max: Duration::from_millis(30),
            blackhole_chance: 0.05,
        },
    )
    .await;
    let mb = 100usize;
    let lines = 10_000usize;
    let f = s.submit(STREAM_AND_ECHO).await;
    let (token, _) = s.session(&f, &[&mb.to_string()]).await;

    let client = Client::new(&proxy.url(), None).unwrap_or_else(|e| panic!("{e}"));
    let mut att = loop {
        // The proxy may cut the very first handshake too.
        match client.attach(&token, fast_reconnect()).await {
            Ok(a) => break a,
            Err(e) => eprintln!("first attach failed ({e}); again"),
        }
    };
    let input = att.input();
    let sender = tokio::spawn(async move {
        for i in 0..lines {
            if let Err(e) = input.send(format!("line-{i}").into_bytes()).await {
                panic!("input {i}: {e}");
            }
        }
        if let Err(e) = input.eof().await {
            panic!("eof: {e}");
        }
    });

    let n = mb * 16;
    let mut want = DefaultHasher::new();
    for i in 0..n {
        want.write(&payload(i));
    }
    let mut got = DefaultHasher::new();
    let (mut numbered, mut echoes, mut reconnects) = (0usize, 0usize, 0usize);
    let mut partial: Vec<u8> = Vec::new();
    let mut done = None;
    let mut last_seq = 0;
    let mut exit = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        let ev = match tokio::time::timeout_at(deadline, att.next()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => break,
            Err(_) => panic!("stuck after {numbered} numbered, {echoes} echoes"),
        };
        match ev {
            Event::Output(o) => {
                assert_eq!(o.seq, last_seq + 1, "output in order, no gaps, no repeats");
                last_seq = o.seq;
                partial.extend_from_slice(&o.bytes);
                if o.end {
                    let m = std::mem::take(&mut partial);
                    if let Some(line) = m.strip_prefix(b"echo:") {
                        assert_eq!(
                            line,
                            format!("line-{echoes}").as_bytes(),
                            "input once, in order"
                        );
                        echoes += 1;
                    } else if m.starts_with(b"done ") {
                        done = Some(String::from_utf8_lossy(&m).into_owned());
                    } else {
                        assert!(
                            m.starts_with(format!("{numbered}:").as_bytes()),
                            "message {numbered} in order"
                        );
                        got.write(&m);
                        numbered += 1;
                    }
                }
                att.written(o.seq);
            }
            Event::Exit { seq, exit: e } => {
                assert_eq!(seq, last_seq + 1);
                last_seq = seq;
                exit = Some(e);
                att.written(seq);
            }
            Event::Reconnected { .. } => reconnects += 1,
            Event::Deadline { .. } => {}
            Event::Reconnecting { .. } => {}
            Event::Ended(end) => {
                assert!(matches!(end, AttachEnd::Finished), "{end:?}");
                break;
            }
        }
    }
    sender.await.unwrap_or_else(|e| panic!("sender: {e}"));
    assert_eq!(numbered, n);
    assert_eq!(got.finish(), want.finish(), "digest of the numbered stream");
    assert_eq!(echoes, lines);
    assert_eq!(
        done.as_deref(),
        Some(format!("done {lines}").as_str()),
        "the function saw each line once"
    );
    assert_eq!(exit.map(|e| e.code), Some(0));
    let cuts = proxy.cuts() + proxy.blackholes();
    eprintln!(
        "{cuts} cuts ({} silent), {reconnects} reconnects, {} connections",
        proxy.blackholes(),
        proxy.connections()
    );
    assert!(
        cuts >= 50,
        "only {cuts} cuts: the test must cut at least 50 times"
    );
    s.stop().await;
}

/// A raw attach that reads the hello and then neither reads nor writes.
async fn frozen_client(url: &str, token: &str) -> impl Sized {
    let ws_url = format!(
        "{}/v1/sessions/{token}/attach?after=0",
        url.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    match ws.next().await {
        Some(Ok(m)) => {
            let hello: ServerMsg = serde_json::from_str(m.to_text().unwrap_or_default())
                .unwrap_or_else(|e| panic!("hello: {e}"));
            assert!(matches!(hello, ServerMsg::Hello { .. }));
        }
        other => panic!("no hello: {other:?}"),
    }
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_detached_within_two_heartbeats() {
    let hb = Duration::from_millis(500);
    let s = TestServer::start_with(|c| {
        c.heartbeat_interval = hb;
        // Out of the way: this test is about heartbeats.
        c.slow_client_timeout = Duration::from_secs(3600);
    })
    .await;
    let f = s.submit("import time\nsend('up')\ntime.sleep(60)\n").await;
    let (token, _) = s.session(&f, &[]).await;
    let _ws = frozen_client(&s.url, &token).await;
    let since = Instant::now();
    s.wait_session(&token, "attached", |i| i.attached).await;
    let info = s
        .wait_session(&token, "silent client detached", |i| !i.attached)
        .await;
    let took = since.elapsed();
    assert_eq!(
        info.state,
        SessionState::Running,
        "the session goes on detached"
    );
    // Two intervals, plus the polling and scheduling slack of a test.
    assert!(
        took <= 2 * hb + Duration::from_secs(1),
        "detached after {took:?}"
    );
    if let Err(e) = s.client.kill_session(&token).await {
        panic!("kill: {e}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_session_dies_with_its_client_and_a_persistent_one_does_not() {
    let s = TestServer::start_with(|c| c.transient_grace = Duration::from_secs(1)).await;
    let f = s.submit("import time\nsend('up')\ntime.sleep(120)\n").await;
    let mut tokens = Vec::new();
    for transient in [true, false] {
        let body = CreateSession {
            function: f.clone(),
            args: vec![],
            transient,
            limits: Default::default(),
            forkable: None,
            env: Default::default(),
            secrets: Vec::new(),
        };
        let c = s
            .client
            .create_session(&body)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // A client comes, then vanishes without a word.
        let mut att = s.attach(&c.token, 0).await;
        let r = kit::receive(&mut att, |r| !r.data.is_empty()).await;
        assert_eq!(r.data_strings(), vec!["up"]);
        drop(att);
        tokens.push(c.token);
    }
    let transient = s
        .wait_session(&tokens[0], "transient session ended", |i| {
            i.state == SessionState::Ended
        })
        .await;
    assert_eq!(
        transient.exit.map(|e| e.reason),
        Some(ExitReason::Abandoned)
    );
    assert!(transient.transient);
    let persistent = s
        .client
        .session(&tokens[1])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(persistent.state, SessionState::Running);
    assert!(!persistent.transient);
    if let Err(e) = s.client.kill_session(&tokens[1]).await {
        panic!("kill: {e}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_stalls_nothing_else() {
    let cap = 8u64 << 20;
    let s = TestServer::start_with(|c| {
        c.output_cap = cap;
        c.client_queue = 16;
        c.slow_client_timeout = Duration::from_secs(1);
        c.heartbeat_interval = Duration::from_secs(3600);
    })
    .await;
    let firehose = s.submit("while True:\n    send(b'x' * 65536)\n").await;
    let (slow_token, _) = s.session(&firehose, &[]).await;
    let _ws = frozen_client(&s.url, &slow_token).await;

    // Meanwhile another session streams 64 MiB to a client that reads.
    let f = s
        .submit("for i in range(1024):\n    send(b'y' * 65536)\n")
        .await;
    let (token, _) = s.session(&f, &[]).await;
    let mut att = s.attach(&token, 0).await;
    let r = kit::receive(&mut att, |_| false).await;
    assert_eq!(r.data.len(), 1024);
    assert_eq!(r.exit.map(|e| e.code), Some(0));

    // The frozen client is dropped as too slow; its session keeps running,
    // holding its output within the cap.
    let info = s
        .wait_session(&slow_token, "slow client detached", |i| !i.attached)
        .await;
    assert_eq!(info.state, SessionState::Running);
    // The cap counts each message's overhead too (ENTRY_OVERHEAD).
    let cost = |i: &bento::wire::api::SessionInfo| {
        i.pending_bytes + i.pending_messages * bento::session::log::ENTRY_OVERHEAD as u64
    };
    let info = s
        .wait_session(&slow_token, "output held at the cap", |i| cost(i) >= cap)
        .await;
    assert!(cost(&info) <= cap + (1 << 20), "held {}", cost(&info));
    if let Err(e) = s.client.kill_session(&slow_token).await {
        panic!("kill: {e}");
    }
    s.stop().await;
}
