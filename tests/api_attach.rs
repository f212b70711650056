//! The attach WebSocket spoken by hand: refused queries and bad frames
//! close the connection with a reason while the session lives on (against
//! the fake runtime, no Docker), and input and acks at their limits reach
//! a real function (on the real engine).

mod kit;

use std::time::{Duration, Instant};

use bento::client::Event;
use bento::wire::api::{OutputFrame, ServerMsg, SessionState, Stream};
use futures_util::{SinkExt, StreamExt};
use kit::requests::{
    drain_and_reap, expect_protocol_close, get, input_frame, kill_and_reap, next_msg, read_hello,
    state_of, ws_connect, ws_refused, ws_url, Checks, MIB, SLEEPER,
};
use kit::TestServer;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_rejects_bad_queries_and_plain_http() {
    let s = TestServer::start_fake(|_| {}).await;
    let (token, _) = s.session(&s.submit(SLEEPER).await, &[]).await;
    let mut c = Checks::default();

    let base = format!("{}/v1/sessions/{token}/attach", s.url);
    c.error(
        "after=abc (plain HTTP)",
        &get(&format!("{base}?after=abc")).await,
        400,
        &["after"],
    );
    for (what, query, phrases) in [
        ("after=abc", "?after=abc", vec!["after"]),
        ("after=-1", "?after=-1", vec!["after"]),
        ("unknown query parameter", "?after=0&from=3", vec!["from"]),
        // The sleeper has produced nothing: last_seq is 0.
        ("after beyond the last seq", "?after=1", vec!["after"]),
        (
            "after far beyond the last seq",
            "?after=18446744073709551615",
            vec!["after"],
        ),
    ] {
        let a = ws_refused(&ws_url(&s, &token, query), None).await;
        c.error(what, &a, 400, &phrases);
    }

    // A GET without the upgrade headers: some 4xx, as JSON.
    let a = get(&format!("{base}?after=0")).await;
    if !(400..500).contains(&a.status) {
        c.fail(
            "attach without upgrade headers",
            format!("status {}", a.status),
        );
    }
    c.error("attach without upgrade headers", &a, a.status, &["upgrade"]);

    match state_of(&s, &token).await {
        Ok(SessionState::Running) => {}
        other => c.fail("session after refused attaches", format!("state {other:?}")),
    }
    kill_and_reap(&s, &token).await;
    c.finish();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_the_connection_with_a_reason_and_the_session_lives_on() {
    let s = TestServer::start_fake(|_| {}).await;
    let (token, _) = s.session(&s.submit(SLEEPER).await, &[]).await;
    let url = ws_url(&s, &token, "?after=0");
    let mut c = Checks::default();

    let mut kind7 = input_frame(1, 1);
    kind7[0] = 7;
    let cases: Vec<(&str, Message, &str)> = vec![
        (
            "text that is not JSON",
            Message::text("hello there"),
            "control message",
        ),
        (
            "JSON of an unknown type",
            Message::text(r#"{"type":"launch_missiles"}"#),
            "control message",
        ),
        (
            "JSON without a type",
            Message::text(r#"{"seq":1}"#),
            "control message",
        ),
        (
            "ack with a string seq",
            Message::text(r#"{"type":"ack","seq":"1"}"#),
            "control message",
        ),
        (
            "binary shorter than 9 bytes",
            Message::binary(vec![1u8, 0, 0, 0]),
            "shorter",
        ),
        ("empty binary", Message::binary(Vec::<u8>::new()), "shorter"),
        ("binary of kind 7", Message::binary(kind7), "kind"),
        (
            "input with a gap (seq 5, 1 expected)",
            Message::binary(input_frame(5, 3)),
            "skips",
        ),
    ];
    for (what, frame, phrase) in cases {
        let mut ws = match ws_connect(&url, None).await {
            Ok(ws) => ws,
            Err(e) => panic!("attach for {what}: {e}"),
        };
        let hello = read_hello(&mut ws).await;
        assert!(
            matches!(hello, ServerMsg::Hello { input_next: 1, .. }),
            "no input was ever accepted, so input_next stays 1: {hello:?}"
        );
        if let Err(e) = ws.send(frame).await {
            c.fail(what, format!("sending the frame failed: {e}"));
            continue;
        }
        match expect_protocol_close(&mut ws).await {
            Ok(message) if message.to_lowercase().contains(phrase) => {}
            Ok(message) => c.fail(
                what,
                format!("protocol message {message:?} lacks {phrase:?}"),
            ),
            Err(e) => c.fail(what, e),
        }
        drop(ws);
        match state_of(&s, &token).await {
            Ok(SessionState::Running) => {}
            other => c.fail(what, format!("session afterwards: {other:?}")),
        }
    }

    // An input message over 1 MiB closes the connection (any close) instead
    // of hanging, and the session goes on.
    let mut ws = match ws_connect(&url, None).await {
        Ok(ws) => ws,
        Err(e) => panic!("attach for the oversize input: {e}"),
    };
    read_hello(&mut ws).await;
    let big = Message::binary(input_frame(1, MIB + 1));
    // A server that already closed may make the send itself fail; only a
    // send that never finishes is wrong.
    if tokio::time::timeout(Duration::from_secs(30), ws.send(big))
        .await
        .is_err()
    {
        c.fail("input over 1 MiB", "sending it hung");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => break Err("the connection stayed open for 30 s".to_string()),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => break Ok(()),
            Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains("\"closed\"") => {}
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains("\"ping\"") => {}
            Ok(Some(Ok(m))) => break Err(format!("unexpected message {m:?}")),
        }
    };
    if let Err(e) = closed {
        c.fail("input over 1 MiB", e);
    }
    drop(ws);
    match state_of(&s, &token).await {
        Ok(SessionState::Running) => {}
        other => c.fail("input over 1 MiB", format!("session afterwards: {other:?}")),
    }

    // And the session still serves a well-behaved client.
    let mut ws = match ws_connect(&url, None).await {
        Ok(ws) => ws,
        Err(e) => panic!("attach after the bad frames: {e}"),
    };
    read_hello(&mut ws).await;
    let _ = ws.close(None).await;
    drop(ws);

    kill_and_reap(&s, &token).await;
    c.finish();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_of_exactly_1_mib_is_taken_and_one_byte_more_is_not() {
    let s = TestServer::start().await;
    let f = s
        .submit("def main():\n    while True:\n        m = recv()\n        if m is None:\n            break\n        send(str(len(m)))\n")
        .await;
    let (token, _) = s.session(&f, &[]).await;
    let url = ws_url(&s, &token, "?after=0");
    let mut ws = match ws_connect(&url, None).await {
        Ok(ws) => ws,
        Err(e) => panic!("attach: {e}"),
    };
    read_hello(&mut ws).await;
    if let Err(e) = ws.send(Message::binary(input_frame(1, MIB))).await {
        panic!("sending 1 MiB of input: {e}");
    }
    let (mut acked, mut echoed) = (false, None);
    while !(acked && echoed.is_some()) {
        match next_msg(&mut ws, 60, "the ack and echo of 1 MiB of input").await {
            Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerMsg>(t.as_str()) {
                Ok(ServerMsg::InputAck { seq }) => {
                    assert_eq!(seq, 1, "input ack");
                    acked = true;
                }
                Ok(ServerMsg::Ping) => {}
                other => panic!("unexpected {t}: {other:?}"),
            },
            Some(Ok(Message::Binary(b))) => match OutputFrame::decode(b) {
                Ok(f) if f.stream == Stream::Data && f.end => {
                    echoed = Some(String::from_utf8_lossy(&f.bytes).into_owned());
                }
                other => panic!("unexpected output {other:?}"),
            },
            other => panic!("1 MiB input: {other:?}"),
        }
    }
    assert_eq!(echoed.as_deref(), Some("1048576"));

    // One byte more: the connection is closed, the function lives on.
    let _ = ws.send(Message::binary(input_frame(2, MIB + 1))).await;
    loop {
        match next_msg(&mut ws, 30, "the close after an oversize input").await {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
            Some(Ok(_)) => {}
        }
    }
    drop(ws);
    assert_eq!(state_of(&s, &token).await, Ok(SessionState::Running));
    kill_and_reap(&s, &token).await;
    s.stop().await;
}

/// The seq of the next output message on `att`.
async fn first_output_seq(att: &mut bento::client::Attachment) -> u64 {
    loop {
        match att.next().await {
            Some(Event::Output(o)) => return o.seq,
            Some(_) => continue,
            None => panic!("the attachment ended before any output"),
        }
    }
}

/// A client that has stopped reading (its socket full, the server's write
/// to it waiting) can still ack what it wrote out and detach. The server
/// reads while it writes, so the ack counts and the next attach starts
/// after it; before, it was lost and the output came again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_from_a_client_that_stopped_reading_is_not_lost() {
    let s = TestServer::start().await;
    let f = s
        .submit(
            "def main(n):\n    b = b'x' * 65536\n    for _ in range(int(n)):\n        send(b)\n",
        )
        .await;
    // 32 MiB: far more than the attachment's queue and both sockets hold.
    let (token, _) = s.session(&f, &["512"]).await;
    let mut att = s.attach(&token, 0).await;
    let first = first_output_seq(&mut att).await;
    // Read no more. Once the function has produced all of it, the server
    // is stuck writing to this client.
    s.wait_session(&token, "the function to finish", |i| {
        i.state != SessionState::Running
    })
    .await;
    // Only now is the first message written out: its ack goes with the
    // detach, to a server that is waiting to write.
    att.written(first);
    att.detach().await;

    let mut again = s.attach(&token, 0).await;
    let next = first_output_seq(&mut again).await;
    assert_eq!(next, first + 1, "the ack for {first} was lost");
    drop(again);
    drain_and_reap(&s, &token).await;
    s.stop().await;
}
