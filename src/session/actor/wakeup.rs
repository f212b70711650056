//! The deadlines the loop waits on with one timer (all but a takeover's):
//! which is next, and what happens when it comes.

use std::ops::ControlFlow;
use tokio::time::Instant;

use super::Actor;
use crate::metrics;
use crate::wire::api::{CloseReason, ExitReason};

/// The deadlines the loop waits on with one timer. In the `select!` they
/// come after output and a client's room; among themselves, when several
/// are due at once, the first in this order goes first (the order in
/// which the loop used to poll one timer each).
#[derive(Debug, Clone, Copy)]
enum Wakeup {
    /// A stop's grace is over: the function is killed.
    Kill,
    /// The function's deadline (its timeout): it is stopped.
    Timeout,
    /// Its idle timeout: it is stopped.
    Idle,
    /// The attached client is to be warned of the deadline (`settle` sends
    /// it; waking is all this does).
    Warn,
    /// A frame's wait for acks is over (see [`SPILL_GRACE`](super::intake::SPILL_GRACE)).
    SpillGrace,
    /// Output has gone quiet: what is unspooled is spooled.
    QuietFlush,
    /// The client's queue stayed full for `slow_client_timeout`.
    SlowClient,
    /// A transient session has been without a client for
    /// `transient_grace`: its function is killed.
    Abandoned,
    /// `session_ttl` has passed since the end: the session is reaped with
    /// its output unread.
    Ttl,
}

impl Actor {
    /// The deadlines of the loop but the takeover's, in the order of
    /// [`Wakeup`].
    fn wakeups(&self) -> [(Wakeup, Option<Instant>); 9] {
        let (core, delivery) = (&self.core, &self.delivery);
        let slow = core.env.limits.slow_client_timeout;
        let running = core.life.running();
        let lease = &core.lease;
        let warning = core.env.limits.deadline_warning;
        [
            (Wakeup::Kill, lease.kill_at().filter(|_| running)),
            (Wakeup::Timeout, lease.deadline_at().filter(|_| running)),
            (
                Wakeup::Idle,
                lease.idle_at(delivery.detached_since()).filter(|_| running),
            ),
            (
                Wakeup::Warn,
                lease
                    .warn_at(delivery.client_id(), warning)
                    .filter(|_| running),
            ),
            (Wakeup::SpillGrace, self.intake.hold_until()),
            (Wakeup::QuietFlush, self.intake.flush_at(&core.log)),
            (Wakeup::SlowClient, delivery.slow_at(slow)),
            (
                Wakeup::Abandoned,
                core.life.abandoned_at(&core.env, delivery.detached_since()),
            ),
            (
                Wakeup::Ttl,
                core.life.ttl_at(&core.env, delivery.attached()),
            ),
        ]
    }

    /// When the loop next wakes for a deadline, if any is set.
    pub(super) fn next_wakeup(&self) -> Option<Instant> {
        self.wakeups().into_iter().filter_map(|(_, at)| at).min()
    }

    /// A deadline has come: serves the first one due, in the order of
    /// [`Wakeup`]. `Break` once the session is reaped.
    pub(super) async fn on_wakeup(&mut self) -> ControlFlow<()> {
        let now = Instant::now();
        let due = self
            .wakeups()
            .into_iter()
            .find(|(_, at)| at.is_some_and(|at| at <= now));
        let Some((wakeup, _)) = due else {
            return ControlFlow::Continue(());
        };
        let core = &mut self.core;
        match wakeup {
            Wakeup::Kill => {
                tracing::info!(session = %core.id(), "stop_grace over: killing function");
                metrics::add(&metrics::METRICS.grace_kills, 1);
                let reason = core.life.kill_reason().cloned();
                core.kill(reason.unwrap_or(ExitReason::Timeout));
                core.lease.killed();
            }
            Wakeup::Timeout => {
                tracing::info!(session = %core.id(), "timeout: stopping function");
                metrics::add(&metrics::METRICS.stops_timeout, 1);
                core.stop(ExitReason::Timeout);
            }
            Wakeup::Idle => {
                tracing::info!(session = %core.id(), "idle timeout: stopping function");
                metrics::add(&metrics::METRICS.stops_idle, 1);
                let after = core.lease.idle_secs();
                core.stop(ExitReason::Idle { after });
            }
            // `settle` sends it at the top of the loop.
            Wakeup::Warn => {}
            // The top of the loop retries the frame, and `on_output` sees
            // the wait has expired and takes it in, spooling the oldest
            // output.
            Wakeup::SpillGrace => {}
            Wakeup::QuietFlush => self.intake.flush(core),
            Wakeup::SlowClient => self.delivery.close_client(core, CloseReason::SlowClient),
            Wakeup::Abandoned => core.life.abandoned(&core.env),
            Wakeup::Ttl => {
                tracing::warn!(
                    session = %core.id(),
                    unread_messages = core.log.pending_messages(),
                    unread_bytes = core.log.pending_bytes(),
                    "session_ttl passed with output unread: discarding it"
                );
                metrics::add(&metrics::METRICS.reaped_ttl, 1);
                self.reap("session_ttl passed").await;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}
