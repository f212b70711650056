//! Takeovers during a fast stream, between live clients of the real client
//! library, against a real controller and container: every output message
//! reaches exactly one client, once, in order.
//!
//! Each client acks in batches (every 16 messages or 50 ms) but has written
//! out everything it was handed: a takeover that replayed from the old
//! client's last ack would show the new client lines the old one already
//! wrote. The old client's final ack must come first.

mod kit;

use bento::client::{AttachEnd, AttachOptions, Attachment, Event, InputSender};
use bento::wire::api::{CloseReason, Stream};
use kit::{metric, TestServer};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const TAKEOVERS: usize = 200;

/// Counts until it finds input waiting, a message about every millisecond:
/// the stream lasts exactly as long as the takeovers do.
const STREAM: &str = "\
import time

def main():
    i = 0
    while not poll():
        i += 1
        send(str(i))
        time.sleep(0.001)
";

/// What one client was handed, in order.
#[derive(Debug, Default)]
struct Got {
    /// (seq, message) for each data message.
    data: Vec<(u64, String)>,
    exit: Option<(u64, i32)>,
    end: Option<AttachEnd>,
    reconnects: u32,
}

/// Consumes like the CLI does: each message is "written" (kept) and
/// reported with `written()` as soon as it is handed over. `count` tells
/// the test how many messages this client has had so far.
async fn consume(mut att: Attachment, count: watch::Sender<usize>) -> Got {
    let mut got = Got::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let ev = match tokio::time::timeout_at(deadline, att.next()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => return got,
            Err(_) => panic!("a client got no end; it had {} messages", got.data.len()),
        };
        match ev {
            Event::Output(f) => {
                assert_eq!(f.stream, Stream::Data, "unexpected output {f:?}");
                assert!(f.end, "a short message came in pieces");
                got.data
                    .push((f.seq, String::from_utf8_lossy(&f.bytes).into_owned()));
                att.written(f.seq);
                count.send_replace(got.data.len());
            }
            Event::Exit { seq, exit } => {
                got.exit = Some((seq, exit.code));
                att.written(seq);
            }
            Event::Reconnecting { .. } => got.reconnects += 1,
            Event::Reconnected { .. } | Event::Deadline { .. } => {}
            Event::Ended(end) => {
                got.end = Some(end);
                return got;
            }
        }
    }
}

/// A client consuming in a task of its own.
struct Client {
    task: tokio::task::JoinHandle<Got>,
    count: watch::Receiver<usize>,
    input: InputSender,
}

async fn attach(s: &TestServer, token: &str) -> Client {
    let att = match s.client.attach(token, AttachOptions::default()).await {
        Ok(a) => a,
        Err(e) => panic!("attach: {e}"),
    };
    let (tx, count) = watch::channel(0);
    let input = att.input();
    Client {
        task: tokio::spawn(consume(att, tx)),
        count,
        input,
    }
}

async fn finish(c: Client) -> Got {
    match c.task.await {
        Ok(got) => got,
        Err(e) => panic!("client task: {e}"),
    }
}

/// Waits until the client has had `n` messages.
async fn wait_for(count: &mut watch::Receiver<usize>, n: usize) {
    let waited = tokio::time::timeout(Duration::from_secs(30), count.wait_for(|c| *c >= n)).await;
    assert!(
        matches!(waited, Ok(Ok(_))),
        "a client never got {n} messages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeovers_mid_stream_neither_repeat_nor_lose_a_message() {
    let s = TestServer::start().await;
    let f = s.submit(STREAM).await;
    let (token, _) = s.session(&f, &[]).await;
    let takeovers_before = metric(&s.url, "bento_takeovers_total").await;
    let unconfirmed_before = metric(&s.url, "bento_takeover_unconfirmed_total").await;

    let started = Instant::now();
    let mut done: Vec<Got> = Vec::new();
    let mut waits: Vec<Duration> = Vec::new();
    let mut current = attach(&s, &token).await;
    for i in 0..TAKEOVERS {
        // Take over at varying points of the old client's ack batch (it
        // acks every 16 messages), always with the stream running.
        wait_for(&mut current.count, 1 + (i * 7) % 23).await;
        let asked = Instant::now();
        let next = attach(&s, &token).await;
        waits.push(asked.elapsed());
        done.push(finish(std::mem::replace(&mut current, next)).await);
    }
    // The last client stops the stream and reads it to the end.
    wait_for(&mut current.count, 1).await;
    if let Err(e) = current.input.send("stop").await {
        panic!("input: {e}");
    }
    let last = finish(current).await;
    let elapsed = started.elapsed();

    // Every client but the last was taken over, and said so.
    for (i, got) in done.iter().enumerate() {
        assert!(
            matches!(got.end, Some(AttachEnd::Closed(CloseReason::TakenOver))),
            "client {i} ended with {:?}",
            got.end
        );
        assert!(
            !got.data.is_empty(),
            "client {i} was taken over before it got anything"
        );
        assert_eq!(got.reconnects, 0, "client {i} lost its connection");
    }
    assert!(
        matches!(last.end, Some(AttachEnd::Finished)),
        "{:?}",
        last.end
    );
    // The union, in the order the clients held the session: 1, 2, 3, ...
    // with nothing twice and nothing missing. Each message is its number.
    let all: Vec<&(u64, String)> = done
        .iter()
        .chain(std::iter::once(&last))
        .flat_map(|g| g.data.iter())
        .collect();
    for (i, (seq, text)) in all.iter().enumerate() {
        let want = i as u64 + 1;
        assert_eq!(
            *seq,
            want,
            "message {want}: got seq {seq} ({})",
            if *seq < want { "a repeat" } else { "a gap" }
        );
        assert_eq!(text, &seq.to_string());
    }
    let total = all.len() as u64;
    assert_eq!(last.exit, Some((total + 1, 0)), "the exit comes last, once");
    assert!(done.iter().all(|g| g.exit.is_none()));

    let takeovers = metric(&s.url, "bento_takeovers_total").await - takeovers_before;
    let unconfirmed = metric(&s.url, "bento_takeover_unconfirmed_total").await - unconfirmed_before;
    waits.sort();
    eprintln!(
        "{} takeovers over {total} messages in {elapsed:?}: {unconfirmed} unconfirmed; \
         attach waited median {:?}, max {:?}",
        takeovers,
        waits[waits.len() / 2],
        waits[waits.len() - 1]
    );
    assert_eq!(takeovers, TAKEOVERS as f64);
    assert_eq!(unconfirmed, 0.0, "every old client confirmed its final ack");
    s.wait_reaped(&token).await;
    s.stop().await;
}
