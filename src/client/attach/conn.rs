//! Serving one attach connection ([`serve`]): output to the consumer, input
//! and acks to the server, heartbeats, and how the connection ends (a
//! detach, a takeover, the exit written, or a lost transport).
//!
//! Output is read from the socket only when the consumer has room for it (a
//! reserved channel slot), so a slow consumer slows the server down instead
//! of growing a buffer here.

use super::event::{AttachEnd, Event};
use super::input::InputItem;
use super::link::{Cmd, Link};
use super::ws::{encode, send, Sink, Source, Ws};
use crate::client::{error_chain, ClientError};
use crate::wire::api::{ClientMsg, CloseReason, InputFrame, OutputFrame, ServerMsg};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::sync::mpsc::OwnedPermit;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};

/// Bound on saying goodbye (detach, final ack) to a server that may be gone.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// How one connection ended.
pub(super) enum ConnEnd {
    /// The attachment is over.
    Over(AttachEnd),
    /// The transport failed; a new connection may carry on.
    Lost(String),
}

/// Server close reasons that describe the connection, not the session, so
/// a new connection is the right answer.
pub(super) fn worth_reconnecting(reason: &CloseReason) -> bool {
    matches!(
        reason,
        CloseReason::ServerShutdown | CloseReason::HeartbeatTimeout | CloseReason::SlowClient
    )
}

/// Serves `ws` until the connection ends, and says how.
pub(super) async fn serve(link: &mut Link, ws: Ws) -> ConnEnd {
    let (mut sink, mut stream) = ws.split();
    // What the consumer wrote while we were disconnected, and input
    // the server has not applied yet.
    if let Some(end) = on_written(link, &mut sink).await {
        return end;
    }
    if let Err(cause) = send_input(link, &mut sink).await {
        return ConnEnd::Lost(cause);
    }
    let mut permit: Option<OwnedPermit<Event>> = None;
    let hb = link.opts.heartbeat_interval;
    let mut ping = tokio::time::interval_at(Instant::now() + hb, hb);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When we last heard from the server or started waiting for it.
    let mut waiting_since = Instant::now();
    loop {
        let ack_at = link.acks.deadline().map(Instant::from_std);
        tokio::select! {
            biased;
            cmd = link.cmds.recv() => {
                if let Some(Cmd::Detach(reply)) = cmd {
                    link.detach_replies.push(reply);
                }
                return leave(link, sink, stream).await;
            }
            changed = link.written.changed() => {
                if changed.is_err() {
                    // The Attachment was dropped: that is a detach.
                    return leave(link, sink, stream).await;
                }
                if let Some(end) = on_written(link, &mut sink).await {
                    return end;
                }
            }
            _ = tokio::time::sleep_until(ack_at.unwrap_or_else(Instant::now)), if ack_at.is_some() => {
                if let Err(cause) = ack_if_due(link, &mut sink).await {
                    return ConnEnd::Lost(cause);
                }
            }
            _ = link.input.data.notified() => {
                if let Err(cause) = send_input(link, &mut sink).await {
                    return ConnEnd::Lost(cause);
                }
            }
            p = link.events.clone().reserve_owned(), if permit.is_none() => match p {
                Ok(p) => {
                    permit = Some(p);
                    waiting_since = Instant::now();
                }
                Err(_) => return leave(link, sink, stream).await,
            },
            msg = stream.next(), if permit.is_some() => {
                waiting_since = Instant::now();
                match on_message(link, msg, &mut permit, &mut sink).await {
                    Some(ConnEnd::Over(AttachEnd::Closed(CloseReason::TakenOver))) => {
                        return hand_over(link, sink, stream).await;
                    }
                    Some(end) => return end,
                    None => {}
                }
            }
            _ = ping.tick() => {
                let silent = waiting_since.elapsed();
                if permit.is_some() && silent >= link.opts.heartbeat_timeout {
                    return ConnEnd::Lost(format!("no word from the server for {}s", silent.as_secs()));
                }
                if let Err(cause) = send(&mut sink, &ClientMsg::Ping).await {
                    return ConnEnd::Lost(cause);
                }
            }
        }
    }
}

async fn on_message(
    link: &mut Link,
    msg: Option<Result<Message, tungstenite::Error>>,
    permit: &mut Option<OwnedPermit<Event>>,
    sink: &mut Sink,
) -> Option<ConnEnd> {
    let protocol = |m: String| Some(ConnEnd::Over(AttachEnd::Failed(ClientError::Protocol(m))));
    let msg = match msg {
        None => return Some(ConnEnd::Lost("the server closed the connection".into())),
        Some(Err(e)) => return Some(ConnEnd::Lost(error_chain(&e))),
        Some(Ok(m)) => m,
    };
    let text = match msg {
        Message::Binary(b) => {
            let frame = match OutputFrame::decode(b) {
                Ok(f) => f,
                Err(e) => return protocol(e.0),
            };
            if frame.seq > link.last_received {
                link.last_received = frame.seq;
                link.delivered = frame.seq;
                deliver(permit, Event::Output(frame));
            }
            return None;
        }
        Message::Text(t) => t,
        Message::Close(_) => return Some(ConnEnd::Lost("the server closed the connection".into())),
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return None,
    };
    let msg = match serde_json::from_str::<ServerMsg>(&text) {
        Ok(m) => m,
        // A type this client does not know comes from a newer server: it is
        // skipped (as the Python client and the console do), so that a
        // server may add a notice without breaking older clients. A known
        // type that does not decode is still a protocol error.
        Err(_) if newer_type(&text) => {
            tracing::debug!(message = %text.chars().take(200).collect::<String>(), "skipping a message type this client does not know");
            return None;
        }
        Err(e) => return protocol(format!("cannot decode {text:?}: {e}")),
    };
    match msg {
        ServerMsg::Exit { seq, exit } => {
            let new = seq > link.last_received;
            if link.exit_received && !new {
                return None;
            }
            if !new {
                // The exit, under a seq we already have: we attached
                // with `after` at or past it, or a controller restart
                // could not recover the output we were sent last (the
                // function died meanwhile), and the exit took one of
                // its seqs. Either way this is how the function ended,
                // and nothing more will come.
                tracing::info!(
                    exit_seq = seq,
                    ours = link.last_received,
                    "the session's exit came under a seq we already have"
                );
            }
            link.last_received = link.last_received.max(seq);
            link.exit_received = true;
            link.acks.set_exit(seq);
            link.delivered = link.delivered.max(seq);
            deliver(permit, Event::Exit { seq, exit });
            if !new {
                // Everything up to it may already be written out.
                return on_written(link, sink).await;
            }
        }
        ServerMsg::InputAck { seq } => link.input.ack(seq),
        ServerMsg::Ping => {
            if let Err(cause) = send(sink, &ClientMsg::Pong).await {
                return Some(ConnEnd::Lost(cause));
            }
        }
        ServerMsg::Pong => {}
        ServerMsg::Deadline {
            at,
            reason,
            in_secs,
        } => deliver(
            permit,
            Event::Deadline {
                at,
                reason,
                in_secs,
            },
        ),
        ServerMsg::Hello { .. } => tracing::warn!("ignoring a second hello from the server"),
        ServerMsg::Closed { reason } => {
            return Some(match reason {
                CloseReason::Finished if link.exit_received => ConnEnd::Over(AttachEnd::Finished),
                r if worth_reconnecting(&r) && link.opts.reconnect => ConnEnd::Lost(r.to_string()),
                r => ConnEnd::Over(AttachEnd::Closed(r)),
            })
        }
    }
    None
}

/// Takes in what the consumer reports as written; acks it if due, and
/// finishes once the exit is written.
async fn on_written(link: &mut Link, sink: &mut Sink) -> Option<ConnEnd> {
    // Never ack output we have not received, whatever the consumer says.
    let seq = (*link.written.borrow_and_update()).min(link.last_received);
    link.acks.written(seq, std::time::Instant::now());
    if let Err(cause) = ack_if_due(link, sink).await {
        return Some(ConnEnd::Lost(cause));
    }
    if !link.acks.exit_written() {
        return None;
    }
    // Everything is delivered: close, and the server reaps the session.
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, sink.close()).await;
    Some(ConnEnd::Over(AttachEnd::Finished))
}

async fn ack_if_due(link: &mut Link, sink: &mut Sink) -> Result<(), String> {
    if let Some(seq) = link.acks.due(std::time::Instant::now()) {
        send(sink, &ClientMsg::Ack { seq }).await?;
        link.acks.sent(seq);
    }
    Ok(())
}

async fn send_input(link: &mut Link, sink: &mut Sink) -> Result<(), String> {
    let mut any = false;
    loop {
        let next = link.input.lock().next_unsent();
        let Some((seq, item)) = next else { break };
        let msg = match item {
            InputItem::Data(bytes) => Message::Binary(InputFrame { seq, bytes }.encode()),
            InputItem::Eof => encode(&ClientMsg::Eof { seq })?,
        };
        sink.feed(msg).await.map_err(|e| error_chain(&e))?;
        any = true;
    }
    if any {
        sink.flush().await.map_err(|e| error_chain(&e))?;
    }
    Ok(())
}

/// Another client is taking the session over, and the server waits a
/// moment for our final ack before it starts the new client's replay.
/// We deliver nothing more, let the consumer write out what it was
/// already handed, ack exactly what it wrote, and detach: the new
/// client then starts right after our last written line, not after
/// our last batched ack. A consumer that does not catch up in time
/// only gets acked what it did write, as ever.
async fn hand_over(link: &mut Link, sink: Sink, mut stream: Source) -> ConnEnd {
    let delivered = link.delivered;
    let written = &mut link.written;
    let caught_up = async {
        loop {
            if *written.borrow_and_update() >= delivered {
                return true;
            }
            tokio::select! {
                changed = written.changed() => {
                    if changed.is_err() {
                        // The consumer is gone: ack what it wrote.
                        return true;
                    }
                }
                msg = stream.next() => match msg {
                    // The server stopped waiting for us (or is one
                    // that never waits): no one to ack to.
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return false,
                    // Nothing is sent after the notice; whatever
                    // still comes is not ours to deliver any more.
                    Some(Ok(_)) => {}
                },
            }
        }
    };
    let server_waits = tokio::time::timeout(GOODBYE_TIMEOUT, caught_up)
        .await
        .unwrap_or(true);
    if server_waits {
        let _ = leave(link, sink, stream).await;
    }
    ConnEnd::Over(AttachEnd::Closed(CloseReason::TakenOver))
}

/// Detaches on purpose: says so, closes, and waits for the server to
/// end the connection.
async fn leave(link: &mut Link, mut sink: Sink, mut stream: Source) -> ConnEnd {
    // Ack what the consumer has written before leaving, or the next
    // attach gets it again.
    // (Acks are idempotent, so sending one the batcher already sent is
    // harmless; missing one is not.)
    let seq = (*link.written.borrow_and_update()).min(link.last_received);
    link.acks.written(seq, std::time::Instant::now());
    let goodbye = async {
        if seq > 0 {
            let _ = send(&mut sink, &ClientMsg::Ack { seq }).await;
        }
        if send(&mut sink, &ClientMsg::Detach).await.is_ok() {
            let _ = sink.close().await;
            // The server ends the connection once it has taken our ack
            // and detach, in that order, to the session: so an attach
            // made after this returns starts after the ack, never
            // before it. What still arrives meanwhile is not ours to
            // deliver any more (it stays on the server, unacked).
            while let Some(Ok(_)) = stream.next().await {}
        }
    };
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, goodbye).await;
    ConnEnd::Over(AttachEnd::Detached)
}

/// Hands an event to the consumer through the slot reserved for it.
fn deliver(permit: &mut Option<OwnedPermit<Event>>, event: Event) {
    if let Some(p) = permit.take() {
        p.send(event);
    }
}

/// The `type` of every message [`ServerMsg`] has, as the server writes it.
const KNOWN_TYPES: &[&str] = &[
    "hello",
    "exit",
    "input_ack",
    "ping",
    "pong",
    "closed",
    "deadline",
];

/// A JSON object whose `type` is a string this client does not know.
fn newer_type(text: &str) -> bool {
    let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(text) else {
        return false;
    };
    m.get("type")
        .and_then(|t| t.as_str())
        .is_some_and(|t| !KNOWN_TYPES.contains(&t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::api::DeadlineKind;

    #[test]
    fn every_server_message_type_is_known_and_others_are_newer() {
        let samples = [
            ServerMsg::Hello {
                session: "s-1".into(),
                input_next: 1,
                last_seq: 0,
                input_closed: false,
            },
            ServerMsg::Exit {
                seq: 1,
                exit: crate::wire::api::ExitReason::Timeout.into(),
            },
            ServerMsg::InputAck { seq: 1 },
            ServerMsg::Ping,
            ServerMsg::Pong,
            ServerMsg::Closed {
                reason: CloseReason::Finished,
            },
            ServerMsg::Deadline {
                at: 1,
                reason: DeadlineKind::Timeout,
                in_secs: 1,
            },
        ];
        for m in &samples {
            // A new variant fails to build here: add it above and to
            // KNOWN_TYPES.
            match m {
                ServerMsg::Hello { .. }
                | ServerMsg::Exit { .. }
                | ServerMsg::InputAck { .. }
                | ServerMsg::Ping
                | ServerMsg::Pong
                | ServerMsg::Closed { .. }
                | ServerMsg::Deadline { .. } => {}
            }
            let text = serde_json::to_string(m).unwrap_or_default();
            assert!(!newer_type(&text), "{text}");
        }
        assert_eq!(samples.len(), KNOWN_TYPES.len());
        assert!(newer_type(r#"{"type":"quota","left":3}"#));
        assert!(
            !newer_type(r#"{"type":"exit","seq":"x"}"#),
            "known, malformed"
        );
        assert!(!newer_type("[1]"));
        assert!(!newer_type(r#"{"type":7}"#));
    }
}
