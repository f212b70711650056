//! The bounded queue to the attached client: what is pushed to it next,
//! and when it is full.

use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::super::shared::Core;
use super::Delivery;
use crate::session::log::{Entry, OutputLog};
use crate::session::ToClient;
use crate::wire::api::{CloseReason, OutputFrame, ServerMsg};

impl Delivery {
    /// The attached client's queue, if pushing to it waits for room. Not
    /// for a client being taken over: see `pump`.
    pub(in crate::session::actor) fn blocked_client(&self) -> Option<mpsc::Sender<ToClient>> {
        self.client
            .as_ref()
            .filter(|c| c.blocked && self.takeover.is_none())
            .map(|c| c.tx.clone())
    }

    /// When the attached client is detached as too slow, if its queue
    /// stays full.
    pub(in crate::session::actor) fn slow_at(&self, timeout: Duration) -> Option<Instant> {
        self.client
            .as_ref()
            .and_then(|c| c.blocked_since)
            .map(|t| t + timeout)
    }

    /// Pushes what the client has not been sent yet, until its queue is full.
    pub(in crate::session::actor) fn pump(&mut self, core: &mut Core) {
        // A client being taken over gets nothing more: what it has is
        // what its final ack is about.
        if self.takeover.is_some() {
            return;
        }
        self.deliver_the_exit_past_the_end(&core.log);
        loop {
            let Some(c) = &mut self.client else { return };
            if c.blocked {
                return;
            }
            let has_output = c.next_send <= core.log.last_seq();
            if !has_output && self.input_ack.is_none() && self.notice.is_none() {
                return;
            }
            match c.tx.clone().try_reserve_owned() {
                Ok(permit) => self.send_one(core, permit),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    c.blocked = true;
                    c.blocked_since.get_or_insert_with(Instant::now);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    // Its connection has ended, but the events it sent
                    // before it did (a final ack, `detach`) may still wait
                    // among the commands. Waiting for room instead lets
                    // the loop take those first (commands come before
                    // client room in its `select!`), and then find the
                    // queue closed there. Releasing the client here would
                    // drop them as a stale client's, and the next attach
                    // would repeat what this one had acknowledged.
                    c.blocked = true;
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
    fn deliver_the_exit_past_the_end(&mut self, log: &OutputLog) {
        let last = log.last_seq();
        // Not once the exit is acknowledged: the log no longer holds it.
        let ended = log.has_exit() && last > log.acked();
        let Some(c) = &mut self.client else { return };
        if ended && !c.exit_sent && c.next_send > last {
            c.next_send = last;
        }
    }

    /// Sends the next thing the client is owed through a reserved slot.
    pub(in crate::session::actor) fn send_one(
        &mut self,
        core: &mut Core,
        permit: mpsc::OwnedPermit<ToClient>,
    ) {
        let Some(c) = &mut self.client else { return };
        c.blocked = false;
        c.blocked_since = None;
        if let Some(seq) = self.input_ack.take() {
            permit.send(ToClient::Msg(ServerMsg::InputAck { seq }));
            return;
        }
        if let Some(msg) = self.notice.take() {
            permit.send(ToClient::Msg(msg));
            return;
        }
        let seq = c.next_send;
        let entry = match core.log.get(seq) {
            Ok(Some(e)) => e,
            Ok(None) => {
                c.next_send = core.log.acked().max(seq) + 1;
                return;
            }
            Err(e) => {
                tracing::error!(session = %core.id(), error = %e, "spool read failed");
                self.close_client(core, CloseReason::SessionGone);
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
}
