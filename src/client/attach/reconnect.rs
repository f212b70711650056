//! The task behind an [`Attachment`](super::Attachment): it owns the socket,
//! forwards output to the consumer, sends input and batched acks, answers
//! pings, and reconnects after transport failures.
//!
//! Output is read from the socket only when the consumer has room for it (a
//! reserved channel slot), so a slow consumer slows the server down instead
//! of growing a buffer here.
//!
//! `conn.rs` serves one connection; this file holds the loop over
//! connections and the reconnect policy.

// Until the cycle with `conn` is broken, `conn` is served from here.
#[path = "conn.rs"]
mod conn;

use super::input::InputShared;
use super::pacing::{AckBatcher, Backoff};
use super::ws::{self, Endpoint, Ws};
use super::{AttachEnd, AttachOptions, Event};
use crate::client::{error_chain, ClientError};
use crate::wire::api::{ClientMsg, CloseReason};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::SinkExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

type Sink = SplitSink<Ws, Message>;
type Source = SplitStream<Ws>;

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
    /// Highest seq handed to the consumer (output or the exit): what it
    /// is to write out before a takeover's final ack.
    delivered: u64,
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
        ClientError::Syntax { .. } => true,
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
            delivered: 0,
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
                        // After a controller restart: output we were sent
                        // before it was durable comes again under the same
                        // seqs, and the server skips what we have.
                        tracing::info!(
                            server = hello.last_seq,
                            ours = self.last_received,
                            "the server has not yet recovered all output we received"
                        );
                    }
                    self.input.resume(hello.input_next);
                    if hello.input_closed {
                        self.input.end();
                    }
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
