//! One attached client's connection task: it forwards the session's queue to
//! the WebSocket and the client's frames to the session, and always tells
//! the session when it ends, whatever ended it.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;

use crate::metrics;
use crate::protocol::{
    ClientMsg, CloseReason, InputFrame, ServerMsg, INPUT_HEADER_LEN, MAX_INPUT_BYTES,
};
use crate::session::{Attached, ClientEvent, InputItem, SessionHandle, ToClient};

/// WebSocket close codes: 1000 normal, 1008 policy violation, 1001 going away.
fn close_code(reason: &CloseReason) -> u16 {
    match reason {
        CloseReason::Protocol { .. } => 1008,
        CloseReason::ServerShutdown => 1001,
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
    /// We close the client for breaking the protocol.
    Protocol(String),
    /// The client left or its socket failed.
    Gone,
}

/// Serves one attached client until it leaves, the session closes it, or it
/// falls silent: the server pings every `heartbeat`, and a client from which
/// nothing has arrived for two intervals is treated as gone. Writes are
/// bounded by the same deadline, so a client that stops reading cannot
/// wedge this task on a full socket.
pub async fn serve(
    socket: WebSocket,
    handle: SessionHandle,
    attached: Attached,
    shutdown: CancellationToken,
    heartbeat: Duration,
) {
    let client = attached.client;
    let (mut sink, mut stream) = socket.split();
    let Attached {
        hello,
        mut rx,
        mut closed,
        input,
        ..
    } = attached;

    let heartbeat = heartbeat.max(Duration::from_millis(10));
    let mut ping = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    let mut silent_after = Instant::now() + 2 * heartbeat;
    let mut encoded = BytesMut::new();
    let end = async {
        if sink.send(text(&hello)).await.is_err() {
            return End::Gone;
        }
        loop {
            tokio::select! {
                // The session sends the reason before dropping its end of
                // `rx`, so checking `closed` first reports the real reason.
                biased;
                reason = &mut closed => {
                    return match reason {
                        Ok(r) => End::Closed(r),
                        Err(_) => End::Closed(CloseReason::SessionGone),
                    };
                }
                _ = shutdown.cancelled() => return End::Closed(CloseReason::ServerShutdown),
                _ = tokio::time::sleep_until(silent_after) => {
                    return End::Closed(CloseReason::HeartbeatTimeout);
                }
                _ = ping.tick() => {
                    match timeout_at(silent_after, sink.send(text(&ServerMsg::Ping))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return End::Gone,
                        Err(_) => return End::Closed(CloseReason::HeartbeatTimeout),
                    }
                }
                item = rx.recv() => {
                    let Some(item) = item else {
                        let reason = closed.try_recv().unwrap_or(CloseReason::SessionGone);
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
                        match timeout_at(silent_after, sink.feed(msg)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => return End::Gone,
                            Err(_) => return End::Closed(CloseReason::HeartbeatTimeout),
                        }
                        next = rx.try_recv().ok();
                    }
                    match timeout_at(silent_after, sink.flush()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return End::Gone,
                        Err(_) => return End::Closed(CloseReason::HeartbeatTimeout),
                    }
                }
                msg = stream.next() => {
                    let msg = match msg {
                        Some(Ok(m)) => m,
                        Some(Err(_)) | None => return End::Gone,
                    };
                    // Anything from the client proves it is alive.
                    silent_after = Instant::now() + 2 * heartbeat;
                    match msg {
                        Message::Binary(b) if b.len() > INPUT_HEADER_LEN + MAX_INPUT_BYTES => {
                            return End::Protocol(format!(
                                "input message of {} bytes is over the limit of {MAX_INPUT_BYTES}",
                                b.len() - INPUT_HEADER_LEN
                            ));
                        }
                        Message::Binary(b) => match InputFrame::decode(b) {
                            Ok(f) => {
                                let item = InputItem { client, seq: f.seq, bytes: Some(f.bytes) };
                                if input.send(item).await.is_err() {
                                    return End::Closed(CloseReason::SessionGone);
                                }
                            }
                            Err(e) => return End::Protocol(e.0),
                        },
                        Message::Text(t) => match serde_json::from_str::<ClientMsg>(t.as_str()) {
                            Ok(ClientMsg::Ack { seq }) => {
                                if handle.client_event(client, ClientEvent::Ack(seq)).await.is_err() {
                                    return End::Closed(CloseReason::SessionGone);
                                }
                            }
                            Ok(ClientMsg::Eof { seq }) => {
                                let item = InputItem { client, seq, bytes: None };
                                if input.send(item).await.is_err() {
                                    return End::Closed(CloseReason::SessionGone);
                                }
                            }
                            Ok(ClientMsg::Ping) => {
                                if sink.send(text(&ServerMsg::Pong)).await.is_err() {
                                    return End::Gone;
                                }
                            }
                            Ok(ClientMsg::Pong) => {}
                            Ok(ClientMsg::Detach) => return End::Gone,
                            Err(e) => return End::Protocol(format!("bad control message: {e}")),
                        },
                        Message::Close(_) => return End::Gone,
                        // WebSocket-level pings are answered by axum.
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
            }
        }
    }
    .await;

    let reason = match end {
        End::Closed(r) => Some(r),
        End::Protocol(message) => Some(CloseReason::Protocol { message }),
        End::Gone => None,
    };
    if let Some(reason) = reason {
        let _ = sink
            .send(text(&ServerMsg::Closed {
                reason: reason.clone(),
            }))
            .await;
        let frame = CloseFrame {
            code: close_code(&reason),
            reason: Utf8Bytes::from(truncate(&reason.to_string(), 120)),
        };
        let _ = sink.send(Message::Close(Some(frame))).await;
        if let CloseReason::Protocol { message } = reason {
            let _ = handle
                .client_event(client, ClientEvent::Protocol(message))
                .await;
        }
    }
    // Always deregister, however the connection ended. A session that has
    // already replaced this client ignores it.
    let _ = handle.client_event(client, ClientEvent::Gone).await;
}

/// Close-frame reasons are limited to 123 bytes.
fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
