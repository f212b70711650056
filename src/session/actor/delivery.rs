//! Serving the log to clients: attach, the bounded queue to the attached
//! client, its acks and its going away, and pages of held output.

use super::*;

impl Actor {
    /// Refuses an `after` past the end of the log.
    pub(super) fn check_after(&self, after: u64) -> Result<(), AttachError> {
        let last = self.log.last_seq();
        // Only a restored log can be behind a client (see
        // `deliver_the_exit_past_the_end`); otherwise every seq a client was
        // ever sent is in the log.
        if after > last && !self.restored {
            return Err(AttachError::AfterBeyondEnd { after, last });
        }
        Ok(())
    }

    fn hello(&self) -> ServerMsg {
        ServerMsg::Hello {
            session: self.meta.id.clone(),
            input_next: self.input.next.load(Ordering::Acquire),
            last_seq: self.log.last_seq(),
            input_closed: self.input.closed.load(Ordering::Acquire),
        }
    }

    /// Attaches a client; nobody may be attached (a takeover waits for the
    /// old client to leave first, see `takeover`).
    pub(super) fn attach_new(&mut self, after: u64) -> Attached {
        let (tx, rx) = mpsc::channel(self.limits.client_queue.max(1));
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
            next_send: self.log.acked().max(after) + 1,
            blocked: false,
            blocked_since: None,
            exit_sent: false,
        });
        let grown = self.log.set_window(self.limits.memory_window);
        self.spool_result(grown);
        let input_next = self.input.next.load(Ordering::Acquire);
        self.input_ack = input_next.checked_sub(1).filter(|&s| s > 0);
        tracing::info!(session = %self.meta.id, after, "client attached");
        let attached = Attached {
            client: id,
            hello: self.hello(),
            rx,
            closed: close_rx,
            replaced: replaced_rx,
            input: self.input_tx.clone(),
        };
        // Only after a takeover: the old client's final ack took the last
        // of the output, so there is nothing left for this one.
        if self.exit.is_some() && self.log.pending_messages() == 0 {
            self.close_client(CloseReason::Finished);
        }
        attached
    }

    /// An attach that is over before it starts: its connection says hello,
    /// then `closed` with `reason`.
    pub(super) fn closed_attach(&mut self, reason: CloseReason) -> Attached {
        let id = self.next_client_id;
        self.next_client_id += 1;
        let (_, rx) = mpsc::channel(1);
        let (close_tx, closed) = oneshot::channel();
        let _ = close_tx.send(reason);
        let (_, replaced) = oneshot::channel();
        Attached {
            client: id,
            hello: self.hello(),
            rx,
            closed,
            replaced,
            input: self.input_tx.clone(),
        }
    }

    /// Hands an attach to its requester; if it went away meanwhile, the
    /// client it would have been is gone.
    pub(super) fn answer(
        &mut self,
        reply: oneshot::Sender<Result<Attached, AttachError>>,
        attached: Attached,
    ) {
        if let Err(Ok(attached)) = reply.send(Ok(attached)) {
            if self
                .client
                .as_ref()
                .is_some_and(|c| c.id == attached.client)
            {
                self.client_gone(false);
            }
        }
    }

    pub(super) fn on_ack(&mut self, seq: u64) {
        // A client cannot have written out what it was never sent.
        let sent = self.client.as_ref().map(|c| c.next_send - 1).unwrap_or(0);
        self.ack(seq.min(sent));
        self.save_acked(false);
        // A client being taken over is not closed here: its final ack
        // comes before its `detach`, which it still has to send.
        let leaving = self.takeover.is_some();
        if self.exit.is_some() && self.log.pending_messages() == 0 && !leaving {
            self.close_client(CloseReason::Finished);
        }
    }

    /// Writes the acks to the database: at once when `now`, else at most
    /// once a second. A restart that finds older acks only re-offers
    /// messages the client already has, which it drops by seq.
    pub(super) fn save_acked(&mut self, now: bool) {
        let acked = self.log.acked();
        let (saved, at) = self.acked_saved;
        if acked == saved || (!now && at.elapsed() < Duration::from_secs(1)) {
            return;
        }
        if let Err(e) = self.db.set_acked(&self.meta.token, acked) {
            tracing::warn!(session = %self.meta.id, error = %e, "cannot save acks");
        }
        self.acked_saved = (acked, Instant::now());
    }

    pub(super) fn ack(&mut self, seq: u64) {
        let acked = self.log.ack(seq);
        self.spool_result(acked);
    }

    /// No client to serve from memory: spool what only memory holds.
    pub(super) fn detached(&mut self) {
        self.detached_since = Instant::now();
        let spooled = self.log.set_window(0);
        self.spool_result(spooled);
        self.save_acked(true);
    }

    pub(super) fn close_client(&mut self, reason: CloseReason) {
        if let Some(c) = self.client.take() {
            tracing::info!(session = %self.meta.id, %reason, "client detached");
            c.close(reason);
            self.released(false);
        }
    }

    /// The client left: `detached` if it said so (so everything it sent
    /// before, acks included, has been applied), not if its connection
    /// just ended.
    pub(super) fn client_gone(&mut self, detached: bool) {
        if self.client.take().is_some() {
            tracing::info!(session = %self.meta.id, detached, "client left");
            self.released(detached);
        }
    }

    /// The attached client is gone: a takeover that waited for it goes
    /// ahead, or the session is without a client.
    fn released(&mut self, confirmed: bool) {
        if !self.takeover_done(confirmed) {
            self.detached();
        }
    }

    /// Pushes what the client has not been sent yet, until its queue is full.
    pub(super) fn pump(&mut self) {
        // A client being taken over gets nothing more: what it has is
        // what its final ack is about.
        if self.takeover.is_some() {
            return;
        }
        self.deliver_the_exit_past_the_end();
        loop {
            let Some(c) = &mut self.client else { return };
            if c.blocked {
                return;
            }
            let has_output = c.next_send <= self.log.last_seq();
            if !has_output && self.input_ack.is_none() {
                return;
            }
            match c.tx.clone().try_reserve_owned() {
                Ok(permit) => self.send_one(permit),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    c.blocked = true;
                    c.blocked_since.get_or_insert_with(Instant::now);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.client_gone(false);
                    return;
                }
            }
        }
    }

    /// A client whose `after` is at or past the exit is sent the exit
    /// (again). Normally it has it already and drops it by seq. But after a
    /// restart whose log ended before catching up with what its driver had
    /// sent (the function died while the controller was away, with output
    /// not yet durable), the exit's seq may be one the client holds other
    /// output under; this way it still learns how the function ended,
    /// rather than waiting for output that never comes.
    pub(super) fn deliver_the_exit_past_the_end(&mut self) {
        let last = self.log.last_seq();
        // Not once the exit is acknowledged: the log no longer holds it.
        let ended = self.log.has_exit() && last > self.log.acked();
        let Some(c) = &mut self.client else { return };
        if ended && !c.exit_sent && c.next_send > last {
            c.next_send = last;
        }
    }

    /// Sends the next thing the client is owed through a reserved slot.
    pub(super) fn send_one(&mut self, permit: mpsc::OwnedPermit<ToClient>) {
        let Some(c) = &mut self.client else { return };
        c.blocked = false;
        c.blocked_since = None;
        if let Some(seq) = self.input_ack.take() {
            permit.send(ToClient::Msg(ServerMsg::InputAck { seq }));
            return;
        }
        let seq = c.next_send;
        let entry = match self.log.get(seq) {
            Ok(Some(e)) => e,
            Ok(None) => {
                c.next_send = self.log.acked().max(seq) + 1;
                return;
            }
            Err(e) => {
                tracing::error!(session = %self.meta.id, error = %e, "spool read failed");
                self.close_client(CloseReason::SessionGone);
                return;
            }
        };
        c.next_send = seq + 1;
        permit.send(match entry {
            Entry::Output { stream, end, bytes } => ToClient::Output(OutputFrame {
                seq,
                stream,
                end,
                bytes,
            }),
            Entry::Exit(exit) => {
                c.exit_sent = true;
                ToClient::Msg(ServerMsg::Exit { seq, exit })
            }
        });
    }

    /// A page of held output after `after`, at most about `max_bytes`.
    pub(super) fn page(&mut self, after: u64, max_bytes: usize) -> OutputPage {
        let mut messages = Vec::new();
        let mut exit = None;
        let mut seq = after.max(self.log.acked()) + 1;
        let mut bytes = 0usize;
        while seq <= self.log.last_seq() && bytes < max_bytes {
            match self.log.get(seq) {
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
                    tracing::warn!(session = %self.meta.id, error = %e, "spool read failed");
                    break;
                }
            }
            seq += 1;
        }
        OutputPage {
            messages,
            exit,
            next_after: seq - 1,
            complete: seq > self.log.last_seq(),
        }
    }
}
