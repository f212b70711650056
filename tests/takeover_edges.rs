//! Takeovers as users meet them: the two `bento attach` commands on
//! `examples/counter.py`, and old clients that do not answer the takeover
//! (a silent one, which is waited for, and one of a version that closes at
//! once, which is not): the one case that can repeat output, counted.

mod kit;

use bento::wire::api::{ClientMsg, CloseReason, OutputFrame, ServerMsg};
use futures_util::{SinkExt, StreamExt};
use kit::{metric, receive, TestServer};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};
use tokio_tungstenite::tungstenite::Message;

/// Tests here read `/metrics` deltas, process-wide: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const LIMIT: Duration = Duration::from_secs(60);

struct Cli {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// What it printed, line by line.
    printed: Vec<String>,
}

impl Cli {
    fn attach(url: &str, token: &str) -> Cli {
        let mut child = kit::cli_command(url, &["attach", token, "--no-stdin"])
            .spawn()
            .unwrap_or_else(|e| panic!("spawn bento: {e}"));
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("attach: no stdout"));
        Cli {
            child,
            lines: BufReader::new(stdout).lines(),
            printed: Vec::new(),
        }
    }

    /// Reads one line; false at the end of its output.
    async fn line(&mut self) -> bool {
        match tokio::time::timeout(LIMIT, self.lines.next_line()).await {
            Ok(Ok(Some(l))) => {
                self.printed.push(l);
                true
            }
            Ok(Ok(None)) => false,
            Ok(Err(e)) => panic!("reading attach output: {e}"),
            Err(_) => panic!("no output from attach within {LIMIT:?}"),
        }
    }

    /// Reads the rest and waits for it to exit: (lines, code, stderr).
    async fn end(mut self) -> (Vec<String>, Option<i32>, String) {
        while self.line().await {}
        match tokio::time::timeout(LIMIT, self.child.wait_with_output()).await {
            Ok(Ok(o)) => (
                self.printed,
                o.status.code(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            ),
            other => panic!("attach did not exit: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attaches_taking_a_counter_over_print_every_line_once() {
    let _serial = SERIAL.lock().await;
    let s = TestServer::start().await;
    let code = std::fs::read_to_string(kit::repo().join("examples/counter.py"))
        .unwrap_or_else(|e| panic!("examples/counter.py: {e}"));
    let f = s.submit(&code).await;
    let (token, _) = s.session(&f, &["60", "0.05"]).await;
    let unconfirmed = metric(&s.url, "bento_takeover_unconfirmed_total").await;

    let mut all: Vec<String> = Vec::new();
    let mut current = Cli::attach(&s.url, &token);
    let mut takeovers = 0;
    let last = loop {
        // A few lines each, then the next `bento attach`, while it counts.
        let mut ended = false;
        for _ in 0..5 {
            if !current.line().await {
                ended = true;
                break;
            }
        }
        if ended || takeovers == 6 {
            break current.end().await;
        }
        let next = Cli::attach(&s.url, &token);
        let (printed, code, stderr) = std::mem::replace(&mut current, next).end().await;
        assert_eq!(code, Some(1), "a taken-over attach: {stderr:?}");
        assert!(stderr.contains("another client took over"), "{stderr:?}");
        all.extend(printed);
        takeovers += 1;
    };
    let (printed, code, stderr) = last;
    assert_eq!(code, Some(0), "the last attach: {stderr:?}");
    all.extend(printed);
    assert!(
        takeovers >= 3,
        "only {takeovers} takeovers: the counter ended first"
    );

    let want: Vec<String> = (0..60)
        .map(|i| i.to_string())
        .chain(std::iter::once("counted to 60".to_string()))
        .collect();
    assert_eq!(
        all, want,
        "every line once, in order, over {takeovers} takeovers"
    );
    let now = metric(&s.url, "bento_takeover_unconfirmed_total").await;
    assert_eq!(now - unconfirmed, 0.0);
    s.wait_reaped(&token).await;
    s.stop().await;
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A client that speaks the protocol by hand, as one written before
/// takeovers waited for a final ack.
async fn raw_attach(s: &TestServer, token: &str) -> Ws {
    let url = format!(
        "{}/v1/sessions/{token}/attach?after=0",
        s.url.replacen("http://", "ws://", 1)
    );
    let (mut ws, _) = tokio::time::timeout(LIMIT, tokio_tungstenite::connect_async(url))
        .await
        .unwrap_or_else(|_| panic!("handshake hung"))
        .unwrap_or_else(|e| panic!("handshake: {e}"));
    match raw_next(&mut ws).await {
        Message::Text(t) => assert!(
            matches!(serde_json::from_str(&t), Ok(ServerMsg::Hello { .. })),
            "{t}"
        ),
        other => panic!("expected hello, got {other:?}"),
    }
    ws
}

async fn raw_next(ws: &mut Ws) -> Message {
    loop {
        match tokio::time::timeout(LIMIT, ws.next()).await {
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(Some(Ok(m))) => return m,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// Reads output up to `seq` (data messages in order), then acks `ack`.
async fn raw_read(ws: &mut Ws, seq: u64, ack: u64) {
    let mut last = 0;
    while last < seq {
        match raw_next(ws).await {
            Message::Binary(b) => match OutputFrame::decode(b) {
                Ok(f) => last = f.seq,
                Err(e) => panic!("{e}"),
            },
            Message::Text(t) if t.contains("ping") => {}
            other => panic!("expected output, got {other:?}"),
        }
    }
    let msg = serde_json::to_string(&ClientMsg::Ack { seq: ack }).unwrap_or_default();
    if let Err(e) = ws.send(Message::text(msg)).await {
        panic!("ack: {e}");
    }
}

/// The next message is `closed` with `taken_over`.
async fn expect_taken_over(ws: &mut Ws) {
    match raw_next(ws).await {
        Message::Text(t) => assert_eq!(
            serde_json::from_str::<ServerMsg>(&t).ok(),
            Some(ServerMsg::Closed {
                reason: CloseReason::TakenOver
            }),
            "{t}"
        ),
        other => panic!("expected closed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_clients_that_do_not_answer_a_takeover_are_waited_for_at_most_the_grace() {
    let _serial = SERIAL.lock().await;
    let s = TestServer::start().await;
    let f = s
        .submit("for i in range(1, 6):\n    send(str(i))\nrecv()\nsend('bye')\n")
        .await;
    let (token, _) = s.session(&f, &[]).await;
    let unconfirmed = || metric(&s.url, "bento_takeover_unconfirmed_total");
    let before = unconfirmed().await;

    // A silent client: it read 1-5 and acked 2, then answers nothing.
    let mut silent = raw_attach(&s, &token).await;
    raw_read(&mut silent, 5, 2).await;
    let asked = Instant::now();
    let mut b = s.attach(&token, 0).await;
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(1400),
        "the new attach waits for the old client's grace, not {waited:?}"
    );
    expect_taken_over(&mut silent).await;
    // The one case that can repeat: 3-5 come again, after its last ack.
    let got = receive(&mut b, |r| r.data.len() == 3).await;
    assert_eq!(got.data_strings(), ["3", "4", "5"]);
    assert_eq!(unconfirmed().await - before, 1.0);

    // A client that closes at once on `closed` (as clients did before
    // takeovers waited): nothing to wait for, but unconfirmed all the
    // same. (`b` confirmed its own takeover: it had written out 5.)
    let mut hasty = raw_attach(&s, &token).await;
    let b_end = receive(&mut b, |_| false).await;
    assert!(
        matches!(
            b_end.end,
            Some(bento::client::AttachEnd::Closed(CloseReason::TakenOver))
        ),
        "{:?}",
        b_end.end
    );
    assert_eq!(unconfirmed().await - before, 1.0);
    let asked = Instant::now();
    let handover = tokio::spawn({
        let (client, token) = (s.client.clone(), token.clone());
        async move { client.attach(&token, Default::default()).await }
    });
    expect_taken_over(&mut hasty).await;
    drop(hasty);
    let mut c = match handover.await {
        Ok(Ok(c)) => c,
        other => panic!("attach: {other:?}"),
    };
    assert!(asked.elapsed() < Duration::from_millis(1400), "not held up");
    assert_eq!(unconfirmed().await - before, 2.0);
    if let Err(e) = c.input().send("go").await {
        panic!("input: {e}");
    }
    let got = receive(&mut c, |_| false).await;
    assert_eq!(got.data_strings(), ["bye"], "nothing before it again");
    assert_eq!(got.exit.map(|e| e.code), Some(0));
    s.wait_reaped(&token).await;
    s.stop().await;
}
