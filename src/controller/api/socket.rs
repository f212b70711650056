//! One attached client's connection task: it forwards the session's queue to
//! the WebSocket and the client's frames to the session, and always tells
//! the session when it ends, whatever ended it.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::BytesMut;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics;
use crate::session::{Attached, ClientEvent, InputItem, SessionHandle, ToClient};
use crate::wire::api::{
    ClientMsg, CloseReason, InputFrame, ServerMsg, INPUT_HEADER_LEN, MAX_INPUT_BYTES,
};

/// WebSocket close codes: 1000 normal, 1008 policy violation, 1001 going away.
fn close_code(reason: &CloseReason) -> u16 {
    match reason {
        CloseReason::Protocol { .. } => 1008,
        CloseReason::ServerShutdown => 1001,
        // As HTTP's 401 would: the credentials no longer hold.
        CloseReason::KeyRevoked => 1008,
        _ => 1000,
    }
}

fn text(msg: &ServerMsg) -> Message {
    // Serialising our own enum cannot fail; an empty text would be caught
    // by the client as a protocol error rather than crash us.
    Message::Text(Utf8Bytes::from(
        serde_json::to_string(msg).unwrap_or_default(),
    ))
}

enum End {
    /// The session closed us, with a reason to pass on.
    Closed(CloseReason),
    /// The session closed us after the client was already told why
    /// (taken over, see `write_client`): only the close frame is left.
    Told(CloseReason),
    /// We close the client for breaking the protocol.
    Protocol(String),
    /// The client said it leaves (`detach`).
    Detached,
    /// Its socket ended or failed.
    Gone,
}

type Sink = SplitSink<WebSocket, Message>;
type Source = SplitStream<WebSocket>;

/// How long the goodbye (the `closed` message and the close frame) may take
/// to write: a client that stopped reading must not keep this task alive.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// When anything last arrived from the client, shared by the two halves.
struct Heard {
    base: Instant,
    /// Milliseconds since `base`.
    at: AtomicU64,
}

impl Heard {
    fn new() -> Heard {
        Heard {
            base: Instant::now(),
            at: AtomicU64::new(0),
        }
    }

    fn now(&self) {
        let ms = self.base.elapsed().as_millis();
        self.at
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.at.load(Ordering::Relaxed))
    }

    /// Completes once nothing has arrived for `limit`.
    async fn silent_for(&self, limit: Duration) {
        loop {
            let deadline = self.last() + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Serves one attached client until it leaves, the session closes it, or it
/// falls silent: the server pings every `heartbeat`, and a client from which
/// nothing has arrived for two intervals is treated as gone.
///
/// The client's messages are read while output is written, not between
/// writes: a client that has stopped reading (its socket full, our write
/// waiting) can still ack what it wrote out and detach, and its ack is not
/// lost. Every write also gives way to the session closing the client (too
/// slow, taken over) and to shutdown, so it cannot hold this task.
pub async fn serve(
    socket: WebSocket,
    handle: SessionHandle,
    attached: Attached,
    shutdown: CancellationToken,
    heartbeat: Duration,
    revoked: CancellationToken,
) {
    let client = attached.client;
    let (mut sink, mut stream) = socket.split();
    let Attached {
        hello,
        mut rx,
        mut closed,
        replaced,
        input,
        ..
    } = attached;
    let heartbeat = heartbeat.max(Duration::from_millis(10));
    let heard = Heard::new();
    // The reading half asks the writing half to answer pings.
    let (pong_tx, mut pong_rx) = mpsc::channel(1);

    let end = {
        let reading = read_client(&mut stream, &handle, client, &input, &heard, &pong_tx);
        let mut ends = Ends {
            closed: &mut closed,
            shutdown: &shutdown,
            heard: &heard,
            silence: 2 * heartbeat,
        };
        let writing = write_client(
            &mut sink,
            &mut ends,
            hello,
            Queues {
                rx: &mut rx,
                pongs: &mut pong_rx,
                replaced: Some(replaced),
            },
            heartbeat,
        );
        tokio::select! {
            end = reading => end,
            end = writing => end,
            // A revoked key's connections close now, not at their next
            // request: revocation is for keys that must stop working.
            _ = revoked.cancelled() => End::Closed(CloseReason::KeyRevoked),
        }
    };

    // While the server shuts down, its sessions stop too, and a reading
    // half that finds its session gone is seeing the shutdown, not the
    // session's end: say so, and the client comes back to the next server.
    let end = match end {
        End::Closed(CloseReason::SessionGone) if shutdown.is_cancelled() => {
            End::Closed(CloseReason::ServerShutdown)
        }
        end => end,
    };
    let detached = matches!(end, End::Detached);
    let (reason, told) = match end {
        End::Closed(r) => (Some(r), false),
        End::Told(r) => (Some(r), true),
        End::Protocol(message) => (Some(CloseReason::Protocol { message }), false),
        End::Detached | End::Gone => (None, false),
    };
    if let Some(reason) = reason {
        let goodbye = async {
            if !told {
                sink.send(text(&ServerMsg::Closed {
                    reason: reason.clone(),
                }))
                .await?;
            }
            let frame = CloseFrame {
                code: close_code(&reason),
                reason: Utf8Bytes::from(truncate(&reason.to_string(), 120)),
            };
            sink.send(Message::Close(Some(frame))).await
        };
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, goodbye).await;
        if let CloseReason::Protocol { message } = reason {
            let _ = handle
                .client_event(client, ClientEvent::Protocol(message))
                .await;
        }
    }
    // Always deregister, however the connection ended. A session that has
    // already replaced this client ignores it. A `detach` says that all
    // the client sent before it, its final ack included, has been passed
    // on: that is what a takeover waits for.
    let event = if detached {
        ClientEvent::Detached
    } else {
        ClientEvent::Gone
    };
    let _ = handle.client_event(client, event).await;
}

/// The reading half: acks and input to the session, pings answered.
async fn read_client(
    stream: &mut Source,
    handle: &SessionHandle,
    client: u64,
    input: &mpsc::Sender<InputItem>,
    heard: &Heard,
    pongs: &mpsc::Sender<()>,
) -> End {
    loop {
        let msg = match stream.next().await {
            Some(Ok(m)) => m,
            Some(Err(_)) | None => return End::Gone,
        };
        // Anything from the client proves it is alive.
        heard.now();
        match msg {
            Message::Binary(b) if b.len() > INPUT_HEADER_LEN + MAX_INPUT_BYTES => {
                return End::Protocol(format!(
                    "input message of {} bytes is over the limit of {MAX_INPUT_BYTES}",
                    b.len() - INPUT_HEADER_LEN
                ));
            }
            Message::Binary(b) => match InputFrame::decode(b) {
                Ok(f) => {
                    let item = InputItem {
                        client,
                        seq: f.seq,
                        bytes: Some(f.bytes),
                    };
                    if input.send(item).await.is_err() {
                        return End::Closed(CloseReason::SessionGone);
                    }
                }
                Err(e) => return End::Protocol(e.0),
            },
            Message::Text(t) => match serde_json::from_str::<ClientMsg>(t.as_str()) {
                Ok(ClientMsg::Ack { seq }) => {
                    if handle
                        .client_event(client, ClientEvent::Ack(seq))
                        .await
                        .is_err()
                    {
                        return End::Closed(CloseReason::SessionGone);
                    }
                }
                Ok(ClientMsg::Eof { seq }) => {
                    let item = InputItem {
                        client,
                        seq,
                        bytes: None,
                    };
                    if input.send(item).await.is_err() {
                        return End::Closed(CloseReason::SessionGone);
                    }
                }
                // One pong pending is enough: a full channel means one is.
                Ok(ClientMsg::Ping) => {
                    let _ = pongs.try_send(());
                }
                Ok(ClientMsg::Pong) => {}
                Ok(ClientMsg::Detach) => return End::Detached,
                Err(e) => return End::Protocol(format!("bad control message: {e}")),
            },
            Message::Close(_) => return End::Gone,
            // WebSocket-level pings are answered by axum.
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
}

/// What ends the connection whatever is being written: the session closing
/// the client, the server shutting down, or the client falling silent.
struct Ends<'a> {
    closed: &'a mut oneshot::Receiver<CloseReason>,
    shutdown: &'a CancellationToken,
    heard: &'a Heard,
    silence: Duration,
}

impl Ends<'_> {
    async fn ended(&mut self) -> End {
        tokio::select! {
            // The session sends the reason before dropping its end of the
            // output queue, so checking `closed` first reports the real one.
            biased;
            reason = &mut *self.closed => End::Closed(reason.unwrap_or(CloseReason::SessionGone)),
            _ = self.shutdown.cancelled() => End::Closed(CloseReason::ServerShutdown),
            _ = self.heard.silent_for(self.silence) => End::Closed(CloseReason::HeartbeatTimeout),
        }
    }

    /// Runs one write unless the connection ends first.
    async fn guard(
        &mut self,
        write: impl std::future::Future<Output = Result<(), axum::Error>>,
    ) -> Result<(), End> {
        tokio::select! {
            biased;
            r = write => r.map_err(|_| End::Gone),
            end = self.ended() => Err(end),
        }
    }
}

/// What the writing half takes from the session and the reading half.
struct Queues<'a> {
    rx: &'a mut mpsc::Receiver<ToClient>,
    pongs: &'a mut mpsc::Receiver<()>,
    /// `None` once it has fired or cannot any more.
    replaced: Option<oneshot::Receiver<()>>,
}

/// The writing half: the session's output queue, pings and pongs.
///
/// When another client takes over, the client is told at once (`closed`
/// with `taken_over`, ahead of any output still queued: it would not be
/// delivered anyway), and nothing more is written. The connection stays
/// open for the client's final ack and `detach`, which the reading half
/// passes on, until the session lets go of it.
async fn write_client(
    sink: &mut Sink,
    ends: &mut Ends<'_>,
    hello: ServerMsg,
    mut queues: Queues<'_>,
    heartbeat: Duration,
) -> End {
    let mut ping = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    let mut encoded = BytesMut::new();
    if let Err(end) = ends.guard(sink.send(text(&hello))).await {
        return end;
    }
    loop {
        tokio::select! {
            biased;
            end = ends.ended() => return end,
            replaced = async { queues.replaced.as_mut()?.await.ok() }, if queues.replaced.is_some() => {
                queues.replaced = None;
                if replaced.is_none() {
                    continue; // the session dropped its end: no takeover
                }
                let notice = ServerMsg::Closed {
                    reason: CloseReason::TakenOver,
                };
                if let Err(end) = ends.guard(sink.send(text(&notice))).await {
                    return end;
                }
                return match ends.ended().await {
                    End::Closed(reason) => End::Told(reason),
                    other => other,
                };
            }
            _ = ping.tick() => {
                if let Err(end) = ends.guard(sink.send(text(&ServerMsg::Ping))).await {
                    return end;
                }
            }
            Some(()) = queues.pongs.recv() => {
                if let Err(end) = ends.guard(sink.send(text(&ServerMsg::Pong))).await {
                    return end;
                }
            }
            item = queues.rx.recv() => {
                let Some(item) = item else {
                    let reason = ends.closed.try_recv().unwrap_or(CloseReason::SessionGone);
                    return End::Closed(reason);
                };
                // Write everything already queued, then flush once.
                let mut next = Some(item);
                while let Some(item) = next {
                    let msg = match item {
                        ToClient::Output(f) => {
                            metrics::add(&metrics::METRICS.bytes_delivered, f.bytes.len() as u64);
                            Message::Binary(f.encode_into(&mut encoded))
                        }
                        ToClient::Msg(m) => text(&m),
                    };
                    if let Err(end) = ends.guard(sink.feed(msg)).await {
                        return end;
                    }
                    next = queues.rx.try_recv().ok();
                }
                if let Err(end) = ends.guard(sink.flush()).await {
                    return end;
                }
            }
        }
    }
}

/// Close-frame reasons are limited to 123 bytes.
fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
