//! One session: a function running in its own container, outliving the
//! connections of the clients that watch it.
//!
//! Each session is an actor (`actor`): one task owns the output log, the
//! attached client and the container handle, and everything else talks to it
//! through a [`SessionHandle`]. The container's stdio is served by two helper
//! tasks ([`io`]): a reader that decodes the driver's frames, and a stdin
//! writer that applies input exactly once, in order.

pub(crate) mod actor;
pub(crate) mod fork;
pub mod history;
pub(crate) mod input_window;
pub mod io;
pub mod log;
pub(crate) mod record;
pub(crate) mod spawn;
pub mod store;
pub mod usage;

use bytes::Bytes;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

use crate::wire::api::{CloseReason, ServerMsg, SessionInfo};

/// Where a session's commands go. Cheap to clone.
#[derive(Clone)]
pub struct SessionHandle {
    /// Short id, safe to log.
    pub id: String,
    pub tx: mpsc::Sender<Command>,
    /// The function has ended (set by the actor); the session lives on
    /// only until its output is read. Counted apart from running sessions.
    pub ended: Arc<AtomicBool>,
    /// The tenant it belongs to (fixed at creation).
    pub tenant: Arc<str>,
    /// Its memory and CPU limits, counted against its tenant's quotas.
    pub memory: u64,
    pub cpus: f64,
}

/// Why a session no longer answers.
#[derive(Debug, thiserror::Error)]
#[error("session no longer exists")]
pub struct SessionGone;

impl SessionHandle {
    async fn call<T>(
        &self,
        f: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SessionGone> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(f(tx)).await.map_err(|_| SessionGone)?;
        rx.await.map_err(|_| SessionGone)
    }

    pub async fn info(&self) -> Result<SessionInfo, SessionGone> {
        self.call(Command::Info).await
    }

    /// Attaches a client, taking the session over from any attached one.
    pub async fn attach(&self, after: u64) -> Result<Result<Attached, AttachError>, SessionGone> {
        self.call(|reply| Command::Attach { after, reply }).await
    }

    /// A page of held output after `after`, acknowledging nothing.
    pub async fn page(
        &self,
        after: u64,
        max_bytes: usize,
    ) -> Result<crate::wire::api::OutputPage, SessionGone> {
        self.call(|reply| Command::Page {
            after,
            max_bytes,
            reply,
        })
        .await
    }

    /// What a fork of this session needs to know of it now.
    pub async fn fork_source(
        &self,
        at_input: Option<u64>,
    ) -> Result<Result<fork::Source, fork::Refused>, SessionGone> {
        self.call(|reply| Command::ForkPoint { at_input, reply })
            .await
    }

    /// Detaches whoever is attached.
    pub async fn close(&self) -> Result<(), SessionGone> {
        self.call(Command::Close).await
    }

    pub async fn kill(&self) -> Result<(), SessionGone> {
        self.call(Command::Kill).await
    }

    /// Moves the deadline `by` later, to at most `max` (seconds since the
    /// epoch); answers the new deadline.
    pub async fn extend(
        &self,
        by: std::time::Duration,
        max: Option<u64>,
    ) -> Result<Result<u64, ExtendRefused>, SessionGone> {
        self.call(|reply| Command::Extend { by, max, reply }).await
    }

    /// Discards the unread output of an ended session and reaps it,
    /// detaching whoever is attached. Answers once it is gone. A session
    /// whose function still runs is left alone ([`StillRunning`]).
    pub async fn remove(&self) -> Result<Result<(), StillRunning>, SessionGone> {
        self.call(Command::Remove).await
    }

    /// Sends an event from an attached client. Waits while the actor is busy,
    /// which pushes back on the client's socket.
    pub async fn client_event(&self, client: u64, event: ClientEvent) -> Result<(), SessionGone> {
        self.tx
            .send(Command::Client { client, event })
            .await
            .map_err(|_| SessionGone)
    }
}

/// Requests to a session actor; see the methods of [`SessionHandle`].
pub enum Command {
    Attach {
        after: u64,
        reply: oneshot::Sender<Result<Attached, AttachError>>,
    },
    Client {
        client: u64,
        event: ClientEvent,
    },
    Close(oneshot::Sender<()>),
    Kill(oneshot::Sender<()>),
    /// See [`SessionHandle::extend`].
    Extend {
        by: std::time::Duration,
        max: Option<u64>,
        reply: oneshot::Sender<Result<u64, ExtendRefused>>,
    },
    /// See [`SessionHandle::remove`].
    Remove(oneshot::Sender<Result<(), StillRunning>>),
    Info(oneshot::Sender<SessionInfo>),
    /// Where the session stands, for a fork of it (`at_input`: the
    /// inputs the fork replays, default all applied).
    ForkPoint {
        at_input: Option<u64>,
        reply: oneshot::Sender<Result<fork::Source, fork::Refused>>,
    },
    /// Held output for a read-only watcher.
    Page {
        after: u64,
        max_bytes: usize,
        reply: oneshot::Sender<crate::wire::api::OutputPage>,
    },
}

/// What an attached client's connection task tells the session.
#[derive(Debug)]
pub enum ClientEvent {
    /// Output up to `seq` has been written out by the client.
    Ack(u64),
    /// The client said it leaves (`detach`): everything it sent before,
    /// acks included, has been applied. This is how a client that is
    /// being taken over confirms its final ack.
    Detached,
    /// Its connection ended without a `detach`.
    Gone,
    /// The client broke the protocol; it is closed with this reason.
    Protocol(String),
}

/// An input message on its way to the function, in the client's numbering.
#[derive(Debug)]
pub struct InputItem {
    pub client: u64,
    pub seq: u64,
    /// `None` is end of input.
    pub bytes: Option<Bytes>,
}

/// What the session sends to an attached client's connection task.
#[derive(Debug)]
pub enum ToClient {
    Output(crate::wire::api::OutputFrame),
    Msg(ServerMsg),
}

/// A successful attach: the connection task's ends of the channels.
pub struct Attached {
    pub client: u64,
    pub hello: ServerMsg,
    /// Output and control messages, bounded: a client that does not drain
    /// it stops receiving, and in time is dropped as too slow.
    pub rx: mpsc::Receiver<ToClient>,
    /// Fires once when the session closes this connection.
    pub closed: oneshot::Receiver<CloseReason>,
    /// Fires when another client attaches: this one is to say goodbye
    /// (`closed` with reason `taken_over`) and is given a short while to
    /// send its final ack and `detach` before the new client starts. An
    /// error (the sender dropped) means nothing: it never fires then.
    pub replaced: oneshot::Receiver<()>,
    /// Input goes straight to the stdin writer, which applies it exactly once.
    pub input: mpsc::Sender<InputItem>,
}

/// Why an extend is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtendRefused {
    #[error("the session has ended")]
    Ended,
    #[error("the session is being stopped")]
    Stopping,
    #[error("the session has no timeout: there is no deadline to move")]
    NoDeadline,
    /// Past the latest deadline the image allows (epoch seconds).
    #[error("the new deadline {asked} is past the latest allowed, {max}")]
    BeyondMax { asked: u64, max: u64 },
}

/// A session cannot be removed while its function runs: it must be
/// killed first, so that removing never stops a function by surprise.
#[derive(Debug, thiserror::Error)]
#[error("the function is still running")]
pub struct StillRunning;

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("after={after} is beyond the last output message ({last})")]
    AfterBeyondEnd { after: u64, last: u64 },
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_lease;
#[cfg(test)]
mod tests_takeover;

#[cfg(test)]
mod tests_usage;
