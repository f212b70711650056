//! Serving the log to clients: attach, the bounded queue to the attached
//! client, its acks and its going away, the input acks it is owed, and
//! pages of held output. Handing over from one client to the next is in
//! `takeover`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::shared::Core;
use crate::session::io::InputProgress;
use crate::session::log::{Entry, OutputLog};
use crate::session::{AttachError, Attached, ClientEvent, InputItem, ToClient};
use crate::wire::api::{CloseReason, OutputPage, PageMessage, ServerMsg};
use takeover::Takeover;
/// Named in the AsyncAPI document (`controller::api::asyncapi`), so its
/// description of takeover cannot drift from the grace the server keeps.
pub(crate) use takeover::TAKEOVER_GRACE;

mod queue;
mod takeover;

/// The attached client, as the actor sees it.
struct Client {
    id: u64,
    tx: mpsc::Sender<ToClient>,
    close: Option<oneshot::Sender<CloseReason>>,
    /// Tells its connection that another client takes over (see `takeover`).
    replaced: Option<oneshot::Sender<()>>,
    /// The next seq to push to it.
    next_send: u64,
    /// Its queue was full; wait for room before pushing more.
    blocked: bool,
    /// When its queue last became full without room made since.
    blocked_since: Option<Instant>,
    /// The exit has been pushed to it.
    exit_sent: bool,
}

impl Client {
    fn close(mut self, reason: CloseReason) {
        if let Some(c) = self.close.take() {
            let _ = c.send(reason);
        }
    }
}

/// The client side of the actor: who is attached (or taking over), what
/// it has been sent and has acknowledged, and what it is owed of input.
pub(super) struct Delivery {
    client: Option<Client>,
    /// Another client attaches once this one has left (see `takeover`).
    takeover: Option<Takeover>,
    next_client_id: u64,
    /// Since when no client has been attached (creation, at first).
    detached_since: Instant,
    /// Acks not yet written to the database, and when they last were.
    acked_saved: (u64, Instant),
    /// Where the attached client's input goes (the stdin writer).
    input_tx: mpsc::Sender<InputItem>,
    input: Arc<InputProgress>,
    /// Input ack not yet delivered to the client (its queue was full).
    input_ack: Option<u64>,
    /// A notice for the attached client not yet delivered (a `deadline`):
    /// the newest only, which replaces an older one.
    notice: Option<ServerMsg>,
    /// End of input is recorded in the database.
    input_closed_saved: bool,
    /// See [`ActorInit::restored`](super::ActorInit::restored).
    restored: bool,
}

impl Delivery {
    pub(super) fn new(
        log: &OutputLog,
        input_tx: mpsc::Sender<InputItem>,
        input: Arc<InputProgress>,
        restored: bool,
    ) -> Delivery {
        Delivery {
            client: None,
            takeover: None,
            next_client_id: 1,
            detached_since: Instant::now(),
            acked_saved: (log.acked(), Instant::now()),
            input_tx,
            input_ack: None,
            notice: None,
            input_closed_saved: input.closed.load(Ordering::Acquire),
            input,
            restored,
        }
    }

    /// Input messages written to the function (end of input not counted).
    pub(super) fn inputs_applied(&self) -> u64 {
        let next = self.input.next.load(Ordering::Acquire);
        let closed = self.input.closed.load(Ordering::Acquire);
        next.saturating_sub(1 + u64::from(closed))
    }

    pub(super) fn attached(&self) -> bool {
        self.client.is_some()
    }

    /// Whether `client` is the one attached (events of one already
    /// replaced are stale).
    /// The attached client's id, if one is attached.
    pub(super) fn client_id(&self) -> Option<u64> {
        self.client.as_ref().map(|c| c.id)
    }

    pub(super) fn is_client(&self, client: u64) -> bool {
        self.client.as_ref().map(|c| c.id) == Some(client)
    }

    /// Since when no client has been attached; `None` while one is.
    pub(super) fn detached_since(&self) -> Option<Instant> {
        self.client.is_none().then_some(self.detached_since)
    }

    /// Refuses an `after` past the end of the log.
    fn check_after(&self, log: &OutputLog, after: u64) -> Result<(), AttachError> {
        let last = log.last_seq();
        // Only a restored log can be behind a client (see
        // `deliver_the_exit_past_the_end`); otherwise every seq a client was
        // ever sent is in the log.
        if after > last && !self.restored {
            return Err(AttachError::AfterBeyondEnd { after, last });
        }
        Ok(())
    }

    fn hello(&self, core: &Core) -> ServerMsg {
        ServerMsg::Hello {
            session: core.id().to_string(),
            input_next: self.input.next.load(Ordering::Acquire),
            last_seq: core.log.last_seq(),
            input_closed: self.input.closed.load(Ordering::Acquire),
        }
    }

    /// Attaches a client; nobody may be attached (a takeover waits for the
    /// old client to leave first, see `takeover`).
    fn attach_new(&mut self, core: &mut Core, after: u64) -> Attached {
        let (tx, rx) = mpsc::channel(core.env.limits.client_queue.max(1));
        let (close_tx, close_rx) = oneshot::channel();
        let (replaced_tx, replaced_rx) = oneshot::channel();
        let id = self.next_client_id;
        self.next_client_id += 1;
        self.client = Some(Client {
            id,
            tx,
            close: Some(close_tx),
            replaced: Some(replaced_tx),
            // Output up to `after` stays held until the client acks it: it
            // may have received it without having written it out yet.
            next_send: core.log.acked().max(after) + 1,
            blocked: false,
            blocked_since: None,
            exit_sent: false,
        });
        let grown = core.log.set_window(core.env.limits.memory_window);
        core.spool_result(grown);
        let input_next = self.input.next.load(Ordering::Acquire);
        self.input_ack = input_next.checked_sub(1).filter(|&s| s > 0);
        // A notice was for the client before; this one gets its own.
        self.notice = None;
        tracing::info!(session = %core.id(), after, "client attached");
        let attached = Attached {
            client: id,
            hello: self.hello(core),
            rx,
            closed: close_rx,
            replaced: replaced_rx,
            input: self.input_tx.clone(),
        };
        // Only after a takeover: the old client's final ack took the last
        // of the output, so there is nothing left for this one.
        if !core.life.running() && core.log.pending_messages() == 0 {
            self.close_client(core, CloseReason::Finished);
        }
        attached
    }

    /// An attach that is over before it starts: its connection says hello,
    /// then `closed` with `reason`.
    fn closed_attach(&mut self, core: &Core, reason: CloseReason) -> Attached {
        let id = self.next_client_id;
        self.next_client_id += 1;
        let (_, rx) = mpsc::channel(1);
        let (close_tx, closed) = oneshot::channel();
        let _ = close_tx.send(reason);
        let (_, replaced) = oneshot::channel();
        Attached {
            client: id,
            hello: self.hello(core),
            rx,
            closed,
            replaced,
            input: self.input_tx.clone(),
        }
    }

    /// Hands an attach to its requester; if it went away meanwhile, the
    /// client it would have been is gone.
    fn answer(
        &mut self,
        core: &mut Core,
        reply: oneshot::Sender<Result<Attached, AttachError>>,
        attached: Attached,
    ) {
        if let Err(Ok(attached)) = reply.send(Ok(attached)) {
            if self
                .client
                .as_ref()
                .is_some_and(|c| c.id == attached.client)
            {
                self.client_gone(core, false);
            }
        }
    }

    /// An event from a client's connection.
    pub(super) fn on_client_event(&mut self, core: &mut Core, client: u64, event: ClientEvent) {
        if !self.is_client(client) {
            return; // a stale event from a connection already replaced
        }
        match event {
            ClientEvent::Ack(seq) => self.on_ack(core, seq),
            ClientEvent::Detached => self.client_gone(core, true),
            ClientEvent::Gone => self.client_gone(core, false),
            ClientEvent::Protocol(message) => {
                self.close_client(core, CloseReason::Protocol { message })
            }
        }
    }

    fn on_ack(&mut self, core: &mut Core, seq: u64) {
        // A client cannot have written out what it was never sent.
        let sent = self.client.as_ref().map(|c| c.next_send - 1).unwrap_or(0);
        let acked = core.log.ack(seq.min(sent));
        core.spool_result(acked);
        self.save_acked(core, false);
        // A client being taken over is not closed here: its final ack
        // comes before its `detach`, which it still has to send.
        let leaving = self.takeover.is_some();
        if !core.life.running() && core.log.pending_messages() == 0 && !leaving {
            self.close_client(core, CloseReason::Finished);
        }
    }

    /// Writes the acks to the database: at once when `now`, else at most
    /// once a second. A restart that finds older acks only re-offers
    /// messages the client already has, which it drops by seq.
    fn save_acked(&mut self, core: &Core, now: bool) {
        let acked = core.log.acked();
        let (saved, at) = self.acked_saved;
        if acked == saved || (!now && at.elapsed() < Duration::from_secs(1)) {
            return;
        }
        if let Err(e) = core.env.db.set_acked(&core.env.meta.token, acked) {
            tracing::warn!(session = %core.id(), error = %e, "cannot save acks");
        }
        self.acked_saved = (acked, Instant::now());
    }

    /// Queues `msg` for the attached client, ahead of output; nothing
    /// without one.
    pub(super) fn notify(&mut self, msg: ServerMsg) {
        if self.client.is_some() {
            self.notice = Some(msg);
        }
    }

    /// Input up to `seq` has been applied: the client is owed its ack.
    pub(super) fn on_input_applied(&mut self, core: &Core, seq: u64) {
        self.input_ack = Some(self.input_ack.map_or(seq, |s| s.max(seq)));
        if !self.input_closed_saved && self.input.closed.load(Ordering::Acquire) {
            // So that a restarted controller never writes input after end
            // of input.
            if let Err(e) = core.env.db.set_input_closed(&core.env.meta.token) {
                tracing::warn!(session = %core.id(), error = %e, "cannot save end of input");
            }
            self.input_closed_saved = true;
        }
    }

    /// No client to serve from memory: spool what only memory holds.
    fn detached(&mut self, core: &mut Core) {
        self.detached_since = Instant::now();
        let spooled = core.log.set_window(0);
        core.spool_result(spooled);
        self.save_acked(core, true);
    }

    pub(super) fn close_client(&mut self, core: &mut Core, reason: CloseReason) {
        if let Some(c) = self.client.take() {
            tracing::info!(session = %core.id(), %reason, "client detached");
            c.close(reason);
            self.released(core, false);
        }
    }

    /// The client left: `detached` if it said so (so everything it sent
    /// before, acks included, has been applied), not if its connection
    /// just ended.
    pub(super) fn client_gone(&mut self, core: &mut Core, detached: bool) {
        if self.client.take().is_some() {
            tracing::info!(session = %core.id(), detached, "client left");
            self.released(core, detached);
        }
    }

    /// The attached client is gone: a takeover that waited for it goes
    /// ahead, or the session is without a client.
    fn released(&mut self, core: &mut Core, confirmed: bool) {
        if !self.takeover_done(core, confirmed) {
            self.detached(core);
        }
    }

    /// The server is shutting down: the client is told so, and the acks
    /// are saved. The function keeps running; only our side goes away.
    pub(super) fn shut_down(&mut self, core: &mut Core) {
        if let Some(c) = self.client.take() {
            c.close(CloseReason::ServerShutdown);
        }
        self.abandon_takeover(core);
        self.save_acked(core, true);
    }
}

/// A page of held output after `after`, at most about `max_bytes`, for a
/// read-only watcher: it reads the log, and changes nothing. Output an
/// attached client has acked is gone from the log; the newest of it is
/// served from the `recent` ring, and a watcher further behind than that
/// skips to the oldest entry the ring still has.
pub(super) fn page(core: &mut Core, after: u64, max_bytes: usize) -> OutputPage {
    let Core { log, recent, .. } = core;
    let acked = log.acked();
    let mut messages = Vec::new();
    let mut exit = None;
    let mut seq = after + 1;
    if seq <= acked {
        seq = match recent.first_seq() {
            Some(first) if first <= acked => seq.max(first),
            _ => acked + 1,
        };
    }
    let mut bytes = 0usize;
    while seq <= log.last_seq() && bytes < max_bytes {
        let entry = if seq <= acked {
            Ok(recent.get(seq).cloned())
        } else {
            log.get(seq)
        };
        match entry {
            Ok(Some(Entry::Output {
                stream,
                end,
                bytes: b,
            })) => {
                // Charged with its overhead, so a page of empty
                // messages is as bounded as one of bytes.
                bytes += b.len() + crate::session::log::ENTRY_OVERHEAD;
                messages.push(PageMessage {
                    seq,
                    stream,
                    end,
                    text: String::from_utf8_lossy(&b).into_owned(),
                });
            }
            Ok(Some(Entry::Exit(e))) => exit = Some(e),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(session = %core.env.meta.id, error = %e, "spool read failed");
                break;
            }
        }
        seq += 1;
    }
    OutputPage {
        messages,
        exit,
        next_after: seq - 1,
        complete: seq > log.last_seq(),
    }
}
