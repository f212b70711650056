//! The task behind an [`Attachment`](super::Attachment): it owns the socket,
//! forwards output to the consumer, sends input and batched acks, answers
//! pings, and reconnects after transport failures.
//!
//! Output is read from the socket only when the consumer has room for it (a
//! reserved channel slot), so a slow consumer slows the server down instead
//! of growing a buffer here.

use super::attach::{AttachEnd, AttachOptions, Event};
use super::input::{InputItem, InputShared};
use super::pacing::{AckBatcher, Backoff};
use super::ws::{self, Endpoint, Ws};
use super::{error_chain, ClientError};
use crate::protocol::{ClientMsg, CloseReason, InputFrame, OutputFrame, ServerMsg};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::OwnedPermit;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};

type Sink = SplitSink<Ws, Message>;

/// Bound on saying goodbye (detach, final ack) to a server that may be gone.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) enum Cmd {
    Detach(oneshot::Sender<()>),
}

/// How one connection ended.
enum ConnEnd {
    /// The attachment is over.
    Over(AttachEnd),
    /// The transport failed; a new connection may carry on.
    Lost(String),
}

pub(crate) struct Driver {
    endpoint: Endpoint,
    opts: AttachOptions,
    input: Arc<InputShared>,
    events: mpsc::Sender<Event>,
    written: watch::Receiver<u64>,
    cmds: mpsc::Receiver<Cmd>,
    /// Highest output seq received; output at or below it is a duplicate.
    last_received: u64,
    acks: AckBatcher,
    exit_received: bool,
    detach_replies: Vec<oneshot::Sender<()>>,
}

/// Server close reasons that describe the connection, not the session, so
/// a new connection is the right answer.
fn worth_reconnecting(reason: &CloseReason) -> bool {
    matches!(
        reason,
        CloseReason::ServerShutdown | CloseReason::HeartbeatTimeout | CloseReason::SlowClient
    )
}

/// Errors on reconnect that another attempt cannot fix.
fn is_final(e: &ClientError) -> bool {
    match e {
        ClientError::Http { status, .. } => *status < 500,
        ClientError::Closed(reason) => !worth_reconnecting(reason),
        ClientError::Protocol(_) | ClientError::InvalidUrl { .. } => true,
        ClientError::Unreachable { .. } | ClientError::Transport(_) => false,
    }
}

fn encode(msg: &ClientMsg) -> Result<Message, String> {
    serde_json::to_string(msg)
        .map(Message::text)
        .map_err(|e| format!("cannot encode {msg:?}: {e}"))
}

async fn send(sink: &mut Sink, msg: &ClientMsg) -> Result<(), String> {
    let m = encode(msg)?;
    sink.send(m).await.map_err(|e| error_chain(&e))
}

impl Driver {
    pub(crate) fn new(
        endpoint: Endpoint,
        opts: AttachOptions,
        input: Arc<InputShared>,
        events: mpsc::Sender<Event>,
        written: watch::Receiver<u64>,
        cmds: mpsc::Receiver<Cmd>,
        after: u64,
    ) -> Self {
        let acks = AckBatcher::new(opts.ack_interval, opts.ack_every);
        Driver {
            endpoint,
            opts,
            input,
            events,
            written,
            cmds,
            last_received: after,
            acks,
            exit_received: false,
            detach_replies: Vec::new(),
        }
    }

    pub(crate) async fn run(mut self, first: Ws) {
        let mut ws = first;
        let end = loop {
            let cause = match self.serve(ws).await {
                ConnEnd::Over(end) => break end,
                ConnEnd::Lost(cause) => cause,
            };
            tracing::debug!(%cause, "attach connection lost");
            if !self.opts.reconnect {
                break AttachEnd::Failed(ClientError::Transport(cause));
            }
            match self.reconnect(cause).await {
                Ok(next) => ws = next,
                Err(end) => break end,
            }
        };
        self.input.end();
        // Answer detachers before the final event: the consumer may not be
        // reading events while it waits for its detach to complete.
        for reply in self.detach_replies.drain(..) {
            let _ = reply.send(());
        }
        let _ = self.events.send(Event::Ended(end)).await;
    }

    async fn serve(&mut self, ws: Ws) -> ConnEnd {
        let (mut sink, mut stream) = ws.split();
        // What the consumer wrote while we were disconnected, and input
        // the server has not applied yet.
        if let Some(end) = self.on_written(&mut sink).await {
            return end;
        }
        if let Err(cause) = self.send_input(&mut sink).await {
            return ConnEnd::Lost(cause);
        }
        let mut permit: Option<OwnedPermit<Event>> = None;
        let hb = self.opts.heartbeat_interval;
        let mut ping = tokio::time::interval_at(Instant::now() + hb, hb);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When we last heard from the server or started waiting for it.
        let mut waiting_since = Instant::now();
        loop {
            let ack_at = self.acks.deadline().map(Instant::from_std);
            tokio::select! {
                biased;
                cmd = self.cmds.recv() => {
                    if let Some(Cmd::Detach(reply)) = cmd {
                        self.detach_replies.push(reply);
                    }
                    return self.leave(sink).await;
                }
                changed = self.written.changed() => {
                    if changed.is_err() {
                        // The Attachment was dropped: that is a detach.
                        return self.leave(sink).await;
                    }
                    if let Some(end) = self.on_written(&mut sink).await {
                        return end;
                    }
                }
                _ = tokio::time::sleep_until(ack_at.unwrap_or_else(Instant::now)), if ack_at.is_some() => {
                    if let Err(cause) = self.ack_if_due(&mut sink).await {
                        return ConnEnd::Lost(cause);
                    }
                }
                _ = self.input.data.notified() => {
                    if let Err(cause) = self.send_input(&mut sink).await {
                        return ConnEnd::Lost(cause);
                    }
                }
                p = self.events.clone().reserve_owned(), if permit.is_none() => match p {
                    Ok(p) => {
                        permit = Some(p);
                        waiting_since = Instant::now();
                    }
                    Err(_) => return self.leave(sink).await,
                },
                msg = stream.next(), if permit.is_some() => {
                    waiting_since = Instant::now();
                    if let Some(end) = self.on_message(msg, &mut permit, &mut sink).await {
                        return end;
                    }
                }
                _ = ping.tick() => {
                    let silent = waiting_since.elapsed();
                    if permit.is_some() && silent >= self.opts.heartbeat_timeout {
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
        &mut self,
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
                if frame.seq > self.last_received {
                    self.last_received = frame.seq;
                    deliver(permit, Event::Output(frame));
                }
                return None;
            }
            Message::Text(t) => t,
            Message::Close(_) => {
                return Some(ConnEnd::Lost("the server closed the connection".into()))
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return None,
        };
        let msg = match serde_json::from_str::<ServerMsg>(&text) {
            Ok(m) => m,
            Err(e) => return protocol(format!("cannot decode {text:?}: {e}")),
        };
        match msg {
            ServerMsg::Exit { seq, exit } => {
                if seq > self.last_received {
                    self.last_received = seq;
                    self.exit_received = true;
                    self.acks.set_exit(seq);
                    deliver(permit, Event::Exit { seq, exit });
                }
            }
            ServerMsg::InputAck { seq } => self.input.ack(seq),
            ServerMsg::Ping => {
                if let Err(cause) = send(sink, &ClientMsg::Pong).await {
                    return Some(ConnEnd::Lost(cause));
                }
            }
            ServerMsg::Pong => {}
            ServerMsg::Hello { .. } => tracing::warn!("ignoring a second hello from the server"),
            ServerMsg::Closed { reason } => {
                return Some(match reason {
                    CloseReason::Finished if self.exit_received => {
                        ConnEnd::Over(AttachEnd::Finished)
                    }
                    r if worth_reconnecting(&r) && self.opts.reconnect => {
                        ConnEnd::Lost(r.to_string())
                    }
                    r => ConnEnd::Over(AttachEnd::Closed(r)),
                })
            }
        }
        None
    }

    /// Takes in what the consumer reports as written; acks it if due, and
    /// finishes once the exit is written.
    async fn on_written(&mut self, sink: &mut Sink) -> Option<ConnEnd> {
        // Never ack output we have not received, whatever the consumer says.
        let seq = (*self.written.borrow_and_update()).min(self.last_received);
        self.acks.written(seq, std::time::Instant::now());
        if let Err(cause) = self.ack_if_due(sink).await {
            return Some(ConnEnd::Lost(cause));
        }
        if !self.acks.exit_written() {
            return None;
        }
        // Everything is delivered: close, and the server reaps the session.
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, sink.close()).await;
        Some(ConnEnd::Over(AttachEnd::Finished))
    }

    async fn ack_if_due(&mut self, sink: &mut Sink) -> Result<(), String> {
        if let Some(seq) = self.acks.due(std::time::Instant::now()) {
            send(sink, &ClientMsg::Ack { seq }).await?;
            self.acks.sent(seq);
        }
        Ok(())
    }

    async fn send_input(&mut self, sink: &mut Sink) -> Result<(), String> {
        let mut any = false;
        loop {
            let next = self.input.lock().next_unsent();
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

    /// Detaches on purpose: says so, then closes.
    async fn leave(&mut self, mut sink: Sink) -> ConnEnd {
        let goodbye = async {
            if send(&mut sink, &ClientMsg::Detach).await.is_ok() {
                let _ = sink.close().await;
            }
        };
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, goodbye).await;
        ConnEnd::Over(AttachEnd::Detached)
    }

    async fn reconnect(&mut self, mut cause: String) -> Result<Ws, AttachEnd> {
        let started = Instant::now();
        let mut backoff = Backoff::new(self.opts.backoff_initial, self.opts.backoff_max);
        let mut attempt = 0u32;
        loop {
            if let Some(limit) = self.opts.give_up_after {
                if started.elapsed() >= limit {
                    return Err(AttachEnd::Failed(ClientError::Transport(format!(
                        "gave up reconnecting after {}s: {cause}",
                        limit.as_secs()
                    ))));
                }
            }
            attempt = attempt.saturating_add(1);
            let delay = backoff.next_delay();
            let notice = Event::Reconnecting {
                attempt,
                delay,
                cause: cause.clone(),
            };
            if self.events.send(notice).await.is_err() {
                return Err(AttachEnd::Detached);
            }
            let result = tokio::select! {
                cmd = self.cmds.recv() => {
                    // Nobody to tell: the server already lost us.
                    if let Some(Cmd::Detach(reply)) = cmd {
                        self.detach_replies.push(reply);
                    }
                    return Err(AttachEnd::Detached);
                }
                r = async {
                    tokio::time::sleep(delay).await;
                    ws::connect(&self.endpoint, self.last_received).await
                } => r,
            };
            match result {
                Ok((ws, hello)) => {
                    if hello.last_seq < self.last_received {
                        tracing::warn!(
                            server = hello.last_seq,
                            ours = self.last_received,
                            "the server has less output than we already received"
                        );
                    }
                    self.input.resume(hello.input_next);
                    let back = Event::Reconnected {
                        last_seq: self.last_received,
                    };
                    if self.events.send(back).await.is_err() {
                        return Err(AttachEnd::Detached);
                    }
                    return Ok(ws);
                }
                Err(ClientError::Closed(reason)) if !worth_reconnecting(&reason) => {
                    return Err(AttachEnd::Closed(reason))
                }
                Err(e) if is_final(&e) => return Err(AttachEnd::Failed(e)),
                Err(e) => cause = e.to_string(),
            }
        }
    }
}

/// Hands an event to the consumer through the slot reserved for it.
fn deliver(permit: &mut Option<OwnedPermit<Event>>, event: Event) {
    if let Some(p) = permit.take() {
        p.send(event);
    }
}
