//! Attach behaviour against a scripted fake server: resume after a dropped
//! connection (dedupe, input resend, `after`), acks, and final closes.

// The handshake callback's error type is tungstenite's, large or not.
#![allow(clippy::result_large_err)]

use super::{AttachEnd, AttachOptions, Event};
use crate::client::{Client, ClientError};
use crate::wire::api::{
    ClientMsg, CloseReason, ExitReason, InputFrame, OutputFrame, ServerMsg, Stream,
};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type ServerWs = WebSocketStream<TcpStream>;
type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Accepts one connection; returns the socket and the query it asked with.
async fn accept(
    listener: &TcpListener,
) -> Result<(ServerWs, String), Box<dyn std::error::Error + Send + Sync>> {
    let (tcp, _) = listener.accept().await?;
    let query = Arc::new(Mutex::new(String::new()));
    let q = query.clone();
    let ws = tokio_tungstenite::accept_hdr_async(tcp, move |req: &Request, resp: Response| {
        if let Ok(mut q) = q.lock() {
            *q = req.uri().query().unwrap_or("").to_string();
        }
        Ok::<_, ErrorResponse>(resp)
    })
    .await?;
    let query = query.lock().map(|q| q.clone()).unwrap_or_default();
    Ok((ws, query))
}

fn text(m: &ServerMsg) -> Message {
    Message::text(serde_json::to_string(m).unwrap_or_default())
}

fn output(seq: u64, s: &'static str) -> Message {
    let f = OutputFrame {
        seq,
        stream: Stream::Data,
        end: true,
        bytes: Bytes::from_static(s.as_bytes()),
    };
    Message::Binary(f.encode())
}

fn hello(input_next: u64, last_seq: u64) -> Message {
    text(&ServerMsg::Hello {
        session: "s1".into(),
        input_next,
        last_seq,
        input_closed: false,
    })
}

/// What the fake server read from the client.
#[derive(Debug, PartialEq)]
enum Got {
    Input(u64, Vec<u8>),
    Ctl(ClientMsg),
    Closed,
}

async fn read(ws: &mut ServerWs) -> Got {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => match InputFrame::decode(b) {
                Ok(f) => return Got::Input(f.seq, f.bytes.to_vec()),
                Err(_) => return Got::Closed,
            },
            Some(Ok(Message::Text(t))) => match serde_json::from_str::<ClientMsg>(&t) {
                // Heartbeats are not what these tests look at.
                Ok(ClientMsg::Ping) => continue,
                Ok(m) => return Got::Ctl(m),
                Err(_) => return Got::Closed,
            },
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Got::Closed,
        }
    }
}

fn fast() -> AttachOptions {
    AttachOptions {
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..AttachOptions::default()
    }
}

#[tokio::test]
async fn resumes_after_a_dropped_connection() -> TestResult {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let mut log = Vec::new();
        let (mut ws, q1) = accept(&listener).await?;
        ws.send(hello(1, 0)).await?;
        ws.send(output(1, "one")).await?;
        ws.send(output(2, "two")).await?;
        // Wait for both inputs, apply only the first, then drop the TCP
        // connection without a close: a transport failure.
        let mut inputs = 0;
        while inputs < 2 {
            if let Got::Input(..) = read(&mut ws).await {
                inputs += 1;
            }
        }
        ws.send(text(&ServerMsg::InputAck { seq: 1 })).await?;
        drop(ws);

        let (mut ws, q2) = accept(&listener).await?;
        ws.send(hello(2, 2)).await?;
        ws.send(output(2, "two")).await?; // a duplicate, to be ignored
        ws.send(output(3, "three")).await?;
        let exit = ExitReason::Exited { code: 0 }.into();
        ws.send(text(&ServerMsg::Exit { seq: 4, exit })).await?;
        loop {
            let got = read(&mut ws).await;
            let done = got == Got::Closed;
            log.push(got);
            if done {
                break;
            }
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((q1, q2, log))
    });

    let client = Client::new(&format!("http://{addr}"), None)?;
    let mut att = client.attach("tok", fast()).await?;
    let input = att.input();
    assert_eq!(input.send("a").await, Ok(1));
    assert_eq!(input.send("b").await, Ok(2));
    let mut seen = Vec::new();
    let mut reconnects = 0;
    let end = loop {
        let Some(ev) = att.next().await else {
            break None;
        };
        match ev {
            Event::Output(f) => {
                seen.push((f.seq, f.bytes));
                att.written(f.seq);
            }
            Event::Exit { seq, .. } => att.written(seq),
            Event::Reconnecting { attempt: 1, .. } => reconnects += 1,
            Event::Reconnecting { .. } | Event::Reconnected { .. } | Event::Deadline { .. } => {}
            Event::Ended(end) => break Some(end),
        }
    };
    assert!(matches!(end, Some(AttachEnd::Finished)), "{end:?}");
    assert_eq!(reconnects, 1);
    let want: Vec<(u64, Bytes)> = vec![
        (1, Bytes::from_static(b"one")),
        (2, Bytes::from_static(b"two")),
        (3, Bytes::from_static(b"three")),
    ];
    assert_eq!(seen, want);

    let (q1, q2, log) = tokio::time::timeout(Duration::from_secs(5), server).await???;
    assert_eq!(q1, "after=0");
    assert_eq!(q2, "after=2");
    // Unapplied input is sent again; the exit is acked; then the client closes.
    let inputs: Vec<&Got> = log.iter().filter(|g| matches!(g, Got::Input(..))).collect();
    assert_eq!(inputs, [&Got::Input(2, b"b".to_vec())]);
    assert!(
        log.contains(&Got::Ctl(ClientMsg::Ack { seq: 4 })),
        "{log:?}"
    );
    assert_eq!(log.last(), Some(&Got::Closed));
    Ok(())
}

#[tokio::test]
async fn takeover_ends_without_reconnecting() -> TestResult {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (mut ws, _) = accept(&listener).await?;
        ws.send(hello(1, 0)).await?;
        ws.send(text(&ServerMsg::Closed {
            reason: CloseReason::TakenOver,
        }))
        .await?;
        ws.close(None).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    });
    let client = Client::new(&format!("http://{addr}"), None)?;
    let mut att = client.attach("tok", fast()).await?;
    let ev = tokio::time::timeout(Duration::from_secs(5), att.next()).await?;
    assert!(
        matches!(
            ev,
            Some(Event::Ended(AttachEnd::Closed(CloseReason::TakenOver)))
        ),
        "{ev:?}"
    );
    assert!(att.next().await.is_none());
    // Input after the end fails instead of waiting forever.
    assert!(att.input().send("late").await.is_err());
    server.await??;
    Ok(())
}

#[tokio::test]
async fn unknown_token_is_the_servers_message() -> TestResult {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Ok((tcp, _)) = listener.accept().await {
            let _ = tokio_tungstenite::accept_hdr_async(tcp, |_: &Request, _: Response| {
                let mut resp =
                    ErrorResponse::new(Some(r#"{"error":"unknown session token"}"#.into()));
                *resp.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::NOT_FOUND;
                Err(resp)
            })
            .await;
        }
    });
    let client = Client::new(&format!("http://{addr}"), None)?;
    match client.attach("nope", fast()).await {
        Err(e @ ClientError::Http { status: 404, .. }) => {
            assert_eq!(e.to_string(), "unknown session token")
        }
        other => panic!("expected a 404, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_taken_over_client_acks_what_its_consumer_wrote_out_then_detaches() -> TestResult {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (wrote_one, wrote_one_rx) = tokio::sync::oneshot::channel::<()>();
    let (go_on, go_on_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut ws, _) = accept(&listener).await?;
        ws.send(hello(1, 0)).await?;
        for (seq, s) in [(1, "one"), (2, "two"), (3, "three")] {
            ws.send(output(seq, s)).await?;
        }
        ws.send(text(&ServerMsg::Closed {
            reason: CloseReason::TakenOver,
        }))
        .await?;
        // The consumer has written out 1 of the 3 it was handed: the
        // client waits for the rest rather than ack 1 and leave.
        wrote_one_rx.await?;
        let early = tokio::time::timeout(Duration::from_millis(100), read(&mut ws)).await;
        let _ = go_on.send(());
        let mut log = Vec::new();
        loop {
            let got = read(&mut ws).await;
            let done = got == Got::Closed;
            log.push(got);
            if done {
                break;
            }
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((early.ok(), log))
    });
    let client = Client::new(&format!("http://{addr}"), None)?;
    // No batched acks: the only ack is the final one.
    let options = AttachOptions {
        ack_interval: Duration::from_secs(60),
        ..fast()
    };
    let mut att = client.attach("tok", options).await?;
    let mut seqs = Vec::new();
    while seqs.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(5), att.next()).await? {
            Some(Event::Output(f)) => seqs.push(f.seq),
            other => panic!("expected output, got {other:?}"),
        }
    }
    assert_eq!(seqs, [1, 2, 3]);
    att.written(1);
    let _ = wrote_one.send(());
    go_on_rx.await?;
    att.written(3);
    let ev = tokio::time::timeout(Duration::from_secs(5), att.next()).await?;
    assert!(
        matches!(
            ev,
            Some(Event::Ended(AttachEnd::Closed(CloseReason::TakenOver)))
        ),
        "{ev:?}"
    );
    let (early, log) = tokio::time::timeout(Duration::from_secs(5), server).await???;
    assert_eq!(early, None, "nothing before the consumer caught up");
    assert_eq!(
        log,
        [
            Got::Ctl(ClientMsg::Ack { seq: 3 }),
            Got::Ctl(ClientMsg::Detach),
            Got::Closed
        ]
    );
    Ok(())
}
