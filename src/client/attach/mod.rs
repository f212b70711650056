//! The public face of an attach: [`Attachment`] (events in, acks out),
//! [`InputSender`] and [`DetachHandle`]. The socket itself is run by a
//! background task (see `driver.rs`), so input flows and acks go out while
//! the consumer is busy writing.

mod input;
mod pacing;
mod reconnect;
#[cfg(test)]
mod tests;
mod ws;

pub use input::{InputError, InputLimits, MAX_INPUT_MESSAGE};
pub(super) use ws::Endpoint;

use super::ClientError;
use crate::wire::api::{CloseReason, ExitInfo, OutputFrame};
use bytes::Bytes;
use input::{InputBuffer, InputItem, InputShared};
use reconnect::{Cmd, Driver};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// How an attachment behaves. `Default` gives the documented values.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// Ask for output after this seq on the first connection (0: everything
    /// the server still holds).
    pub after: u64,
    /// Reconnect after transport failures (default true).
    pub reconnect: bool,
    /// First reconnect delay; it doubles up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Stop reconnecting after an outage this long (`None`: never).
    pub give_up_after: Option<Duration>,
    /// Ack written output at most this long after it was written...
    pub ack_interval: Duration,
    /// ...or as soon as this many messages are written. The server keeps
    /// output it has not spooled yet in its memory window (4 MiB by
    /// default); output acknowledged while it is still there never touches
    /// its disk, so the default, 16, acks a stream of 64 KiB messages every
    /// MiB.
    pub ack_every: u64,
    /// Bounds of the unacknowledged input; sending waits when they are reached.
    pub input_limits: InputLimits,
    /// How often the client pings the server.
    pub heartbeat_interval: Duration,
    /// Silence after which the connection counts as dead.
    pub heartbeat_timeout: Duration,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions {
            after: 0,
            reconnect: true,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            give_up_after: Some(Duration::from_secs(600)),
            ack_interval: Duration::from_millis(50),
            ack_every: 16,
            input_limits: InputLimits::default(),
            // The server pings every few seconds too; a connection with no
            // word for 20s is dead even if TCP has not noticed.
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(10),
        }
    }
}

/// What an attachment reports, in order.
#[derive(Debug)]
pub enum Event {
    /// A chunk of output. Output is delivered once, in seq order, even across
    /// reconnects. Call [`Attachment::written`] once it is written out.
    Output(OutputFrame),
    /// The function ended; this is the last output message. Once it is
    /// reported as written, the attachment acks it and closes.
    Exit { seq: u64, exit: ExitInfo },
    /// The connection failed and the next attempt starts after `delay`.
    /// `attempt` counts from 1 within one outage.
    Reconnecting {
        attempt: u32,
        delay: Duration,
        cause: String,
    },
    /// Connected again; delivery resumes after the last seq received.
    Reconnected { last_seq: u64 },
    /// The attachment is over; [`Attachment::next`] returns `None` from now on.
    Ended(AttachEnd),
}

/// Why an attachment ended.
#[derive(Debug)]
pub enum AttachEnd {
    /// The exit was delivered, written and acknowledged.
    Finished,
    /// This client detached ([`Attachment::detach`], or the attachment was dropped).
    Detached,
    /// The server closed the connection for this reason (another client
    /// took over, `bento close`, ...).
    Closed(CloseReason),
    /// The connection was lost and could not (or was not to) be re-established;
    /// also unknown sessions on reconnect and protocol errors.
    Failed(ClientError),
}

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

/// How long a first attach waits for a session that is resuming after a
/// controller restart (503) before it gives up with the server's answer.
const RESUMING_WAIT: Duration = Duration::from_secs(30);

/// Connects, waiting out a session that is resuming: that takes moments,
/// and a user who attaches right after a restart should not have to retry
/// by hand. Every other answer is final here.
async fn connect_when_ready(
    endpoint: &ws::Endpoint,
    after: u64,
) -> Result<(ws::Ws, ws::Hello), ClientError> {
    let until = tokio::time::Instant::now() + RESUMING_WAIT;
    let mut delay = Duration::from_millis(50);
    loop {
        match ws::connect(endpoint, after).await {
            Err(e) if e.status() == Some(503) && tokio::time::Instant::now() + delay < until => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

pub(crate) async fn attach(
    endpoint: Endpoint,
    token: &str,
    options: AttachOptions,
) -> Result<Attachment, ClientError> {
    let (ws, hello) = connect_when_ready(&endpoint, options.after).await?;
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
    let driver = Driver::new(
        endpoint,
        options.clone(),
        input.clone(),
        events_tx,
        written_rx,
        cmds,
        options.after,
    );
    tokio::spawn(driver.run(ws));
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
