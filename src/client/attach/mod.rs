//! Attaching to a session's I/O: the public face is [`Attachment`] (events
//! in, acks out), [`InputSender`], [`WrittenHandle`] and [`DetachHandle`].
//! The socket itself is served by a background task, so input flows and
//! acks go out while the consumer is busy writing; it reconnects by itself
//! after transport failures.
//!
//! Each file uses only those below it:
//!
//! ```text
//! mod.rs        Attachment and its handles; attach() makes the first
//!   |           connection and spawns the task
//!   v
//! reconnect.rs  the task: serves connections one after another, and
//!   |           reconnects with backoff when one is lost
//!   v
//! conn.rs       serves one connection: output to the consumer, input and
//!   |           acks to the server, heartbeats, detach and takeover
//!   v
//! link.rs       what lasts from one connection to the next: the channels
//!   |           to the handles, and how far output got
//!   v
//! acks.rs    input.rs    ws.rs    options.rs    event.rs
//! (batching  (unacked    (open a  (AttachOptions) (Event,
//!  acks)      input to    socket,                  AttachEnd)
//!             resend)     read Hello)
//! ```
//!
//! `options.rs` takes [`InputLimits`] from `input.rs`; the leaves use
//! nothing else here.

mod acks;
mod conn;
mod event;
mod input;
mod link;
mod options;
mod reconnect;
#[cfg(test)]
mod tests;
mod ws;

pub use event::{AttachEnd, Event};
pub use input::{InputError, InputLimits, MAX_INPUT_MESSAGE};
pub use options::AttachOptions;
pub(super) use ws::Endpoint;

use super::ClientError;
use bytes::Bytes;
use input::{InputBuffer, InputItem, InputShared};
use link::{Cmd, Link};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

/// A live attach to a session. Dropping it detaches.
#[derive(Debug)]
pub struct Attachment {
    token: String,
    session: String,
    events: mpsc::Receiver<Event>,
    written: WrittenHandle,
    input: InputSender,
    detach: DetachHandle,
}

/// Queues input messages. Clone it to feed input from another task.
#[derive(Debug, Clone)]
pub struct InputSender {
    shared: Arc<InputShared>,
}

/// Reports output as written from anywhere, for instance from a thread
/// that does the writing: see [`Attachment::written_handle`].
#[derive(Debug, Clone)]
pub struct WrittenHandle {
    written: watch::Sender<u64>,
}

impl WrittenHandle {
    /// Same as [`Attachment::written`].
    pub fn written(&self, seq: u64) {
        self.written.send_if_modified(|w| {
            let newer = seq > *w;
            if newer {
                *w = seq;
            }
            newer
        });
    }
}

/// Detaches an attachment from anywhere (a signal handler, say).
#[derive(Debug, Clone)]
pub struct DetachHandle {
    cmds: mpsc::Sender<Cmd>,
}

/// Makes the first connection, then hands the socket to the task that
/// serves it (see [`reconnect::run`]).
pub(super) async fn attach(
    endpoint: Endpoint,
    token: &str,
    options: AttachOptions,
) -> Result<Attachment, ClientError> {
    let (ws, hello) = reconnect::connect_when_ready(&endpoint, options.after).await?;
    let input = Arc::new(InputShared::new(InputBuffer::new(
        options.input_limits,
        hello.input_next,
    )));
    if hello.input_closed {
        // Another client already ended the input: sending more would only
        // be discarded, so say so at once.
        input.end();
    }
    let (events_tx, events) = mpsc::channel(64);
    let (written, written_rx) = watch::channel(0);
    let (cmds_tx, cmds) = mpsc::channel(4);
    let link = Link::new(
        options.clone(),
        input.clone(),
        events_tx,
        written_rx,
        cmds,
        options.after,
    );
    tokio::spawn(reconnect::run(link, endpoint, ws));
    Ok(Attachment {
        token: token.to_string(),
        session: hello.session,
        events,
        written: WrittenHandle { written },
        input: InputSender { shared: input },
        detach: DetachHandle { cmds: cmds_tx },
    })
}

impl Attachment {
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The session's short id (from the server's hello).
    pub fn session(&self) -> &str {
        &self.session
    }

    /// The next event; `None` after [`Event::Ended`].
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The next event if one is ready now. Lets a consumer batch its writes
    /// and flush only when nothing more is waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// Tells the attachment that every output message up to `seq` has been
    /// written out (flushed), so the server may forget it. Acks are batched.
    pub fn written(&self, seq: u64) {
        self.written.written(seq);
    }

    /// A handle for [`Attachment::written`] that can be moved to another
    /// task or thread. While one is alive, dropping the attachment is
    /// noticed only when the next event cannot be delivered, not at once.
    pub fn written_handle(&self) -> WrittenHandle {
        self.written.clone()
    }

    pub fn input(&self) -> InputSender {
        self.input.clone()
    }

    pub fn detach_handle(&self) -> DetachHandle {
        self.detach.clone()
    }

    /// Leaves on purpose: tells the server, closes the socket. The function
    /// keeps running.
    pub async fn detach(self) {
        self.detach.detach().await;
    }
}

impl InputSender {
    /// Queues one input message and returns its seq. Waits while the
    /// unacknowledged input is at its bounds.
    pub async fn send(&self, bytes: impl Into<Bytes>) -> Result<u64, InputError> {
        self.shared.push(InputItem::Data(bytes.into())).await
    }

    /// Ends the input; no message can be sent after it.
    pub async fn eof(&self) -> Result<u64, InputError> {
        self.shared.push(InputItem::Eof).await
    }
}

impl DetachHandle {
    /// Detaches and waits until the server was told (or the attachment had
    /// already ended).
    pub async fn detach(&self) {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Detach(tx)).await.is_ok() {
            // An error only means the task ended first, which is as good.
            let _ = rx.await;
        }
    }
}
