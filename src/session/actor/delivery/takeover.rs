//! Handing a session from one client to the next without a repeat.
//!
//! A client acks what it has written out in batches, so when another
//! client attaches, the old one has usually written out more than it has
//! acked. Replaying from its last ack would show the new client again
//! what the old one printed last. So the session first tells the old
//! client it is replaced (`closed` with reason `taken_over`, which every
//! client already stops delivering at), waits for its final ack and its
//! `detach`, and only then answers the new attach: the new client's hello
//! and replay start right after what the old one wrote out.
//!
//! The wait is state in the actor, with a deadline in its loop, not a
//! wait inside it: output is taken in, and close, kill and info are
//! served, meanwhile. An old client that does not answer within
//! [`TAKEOVER_GRACE`] (a dead one, or one of a version that closes at
//! once) is closed, and the new client gets everything after its last ack:
//! the one case in which a takeover may repeat output, counted in
//! `bento_takeover_unconfirmed_total`.

use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};

use super::super::shared::Core;
use super::Delivery;
use crate::metrics;
use crate::session::{AttachError, Attached};
use crate::wire::api::CloseReason;

/// How long a takeover waits for the old client's final ack and `detach`
/// before it goes ahead without them. A live client answers in a round
/// trip plus the time its consumer needs to write out what it was already
/// handed; this bounds how long a new attach waits on a dead one.
pub(crate) const TAKEOVER_GRACE: Duration = Duration::from_millis(1500);

/// A takeover waiting for the old client to leave.
pub(super) struct Takeover {
    /// When the old client's answer is no longer waited for.
    deadline: Instant,
    /// The attach that goes ahead once the old client has left; `None` if
    /// `bento close` cancelled it meanwhile.
    waiter: Option<Waiter>,
}

struct Waiter {
    after: u64,
    reply: oneshot::Sender<Result<Attached, AttachError>>,
}

impl Delivery {
    pub(in crate::session::actor) fn on_attach(
        &mut self,
        core: &mut Core,
        after: u64,
        reply: oneshot::Sender<Result<Attached, AttachError>>,
    ) {
        if let Err(e) = self.check_after(&core.log, after) {
            let _ = reply.send(Err(e));
            return;
        }
        if after > 0 {
            metrics::add(&metrics::METRICS.reconnects, 1);
            core.counts.reconnects += 1;
        }
        let waiter = Waiter { after, reply };
        if let Some(t) = &mut self.takeover {
            // A third client while the old one says goodbye: the latest
            // attach wins, and the one that was waiting is taken over
            // before it was sent anything.
            if let Some(earlier) = t.waiter.replace(waiter) {
                metrics::add(&metrics::METRICS.takeovers, 1);
                let attached = self.closed_attach(core, CloseReason::TakenOver);
                self.answer(core, earlier.reply, attached);
            }
            return;
        }
        let Some(old) = self.client.as_mut() else {
            let attached = self.attach_new(core, after);
            self.answer(core, waiter.reply, attached);
            return;
        };
        metrics::add(&metrics::METRICS.takeovers, 1);
        tracing::info!(session = %core.id(), "client taken over: waiting for its final ack");
        let told = old.replaced.take().is_some_and(|r| r.send(()).is_ok());
        self.takeover = Some(Takeover {
            deadline: Instant::now() + TAKEOVER_GRACE,
            waiter: Some(waiter),
        });
        if !told {
            // Its connection is already gone: nobody to wait for.
            self.close_client(core, CloseReason::TakenOver);
        }
    }

    /// When the pending takeover stops waiting, if one is pending.
    pub(in crate::session::actor) fn takeover_deadline(&self) -> Option<Instant> {
        self.takeover.as_ref().map(|t| t.deadline)
    }

    /// The old client did not answer in time.
    pub(in crate::session::actor) fn takeover_expired(&mut self, core: &mut Core) {
        self.close_client(core, CloseReason::TakenOver);
    }

    /// The old client has left. Returns whether a new client attached in
    /// its place.
    pub(super) fn takeover_done(&mut self, core: &mut Core, confirmed: bool) -> bool {
        let Some(t) = self.takeover.take() else {
            return false;
        };
        if !confirmed {
            metrics::add(&metrics::METRICS.takeovers_unconfirmed, 1);
            tracing::warn!(
                session = %core.id(),
                acked = core.log.acked(),
                "the old client left without confirming its final ack: the new one may get again what it wrote out last"
            );
        }
        let Some(w) = t.waiter else {
            return false;
        };
        // (If nothing is left for it, or its requester went away, the
        // new client is released at once, and that sees to the rest.)
        let attached = self.attach_new(core, w.after);
        self.answer(core, w.reply, attached);
        true
    }

    /// `bento close`: detaches whoever is attached. During a takeover
    /// that is the client about to attach; the old one goes on leaving,
    /// since closing it now could lose its final ack.
    pub(in crate::session::actor) fn on_close(&mut self, core: &mut Core) {
        match &mut self.takeover {
            Some(t) => {
                if let Some(w) = t.waiter.take() {
                    let attached = self.closed_attach(core, CloseReason::ClosedByUser);
                    self.answer(core, w.reply, attached);
                }
            }
            None => self.close_client(core, CloseReason::ClosedByUser),
        }
    }

    /// The server is shutting down: the waiting attach is told so.
    pub(super) fn abandon_takeover(&mut self, core: &Core) {
        if let Some(w) = self.takeover.take().and_then(|t| t.waiter) {
            let attached = self.closed_attach(core, CloseReason::ServerShutdown);
            let _ = w.reply.send(Ok(attached));
        }
    }
}
