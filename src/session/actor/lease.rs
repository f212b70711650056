//! The session's lease (docs/leases.md): its deadline (the timeout, which
//! `extend` moves), its idle timeout, the warning an attached client gets
//! before the deadline, and the stop that ends the function at either:
//! SIGTERM, then the kill once the image's `stop_grace` has passed.
//!
//! `Lease` keeps the times; the actor's methods at the end of this file
//! (and its wakeups, in `wakeup`) do what they set off through the parts
//! that own it: the signal and the kill (`lifecycle`), the message to the
//! client (`delivery`).

use std::time::Duration;
use tokio::time::Instant;

use super::Actor;
use crate::session::record::now_secs;
use crate::session::ExtendRefused;
use crate::wire::api::{DeadlineKind, ServerMsg};

pub(super) struct Lease {
    /// The deadline: seconds since the epoch (what clients are shown and
    /// the database keeps), and the instant it falls on.
    deadline: Option<(u64, Instant)>,
    /// The idle timeout; zero: none.
    idle: Duration,
    /// The last activity that holds the idle timeout off: output, input
    /// written to the function, an extend (an attached client holds it off
    /// for as long as it is attached; see [`Lease::idle_at`]).
    active_at: Instant,
    /// The client last warned of the deadline (its id) and the deadline it
    /// was warned of: one warning per client and deadline.
    warned: Option<(u64, u64)>,
    /// A stop in progress: when its grace is over and the function killed.
    kill_at: Option<Instant>,
    grace: Duration,
    /// The function has been killed (or stopped for another reason): the
    /// lease has nothing more to end.
    over: bool,
}

/// The instant `secs` (seconds since the epoch) falls on, from now.
fn instant_of(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs.saturating_sub(now_secs()))
}

/// Seconds since the epoch at `at`, rounded up: a deadline shown is never
/// earlier than the one kept.
fn secs_of(at: Instant) -> u64 {
    let left = at.saturating_duration_since(Instant::now());
    now_secs() + left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

impl Lease {
    /// `deadline` as the record has it; `stopping`: a stop was under way
    /// before a controller restart (a kill reason is recorded while the
    /// function runs), which is given its grace again from now.
    pub(super) fn new(
        deadline: Option<u64>,
        idle: Duration,
        grace: Duration,
        stopping: bool,
    ) -> Lease {
        Lease {
            deadline: deadline.map(|d| (d, instant_of(d))),
            idle,
            // A restarted controller knows no earlier activity: the idle
            // timeout counts from the restart.
            active_at: Instant::now(),
            warned: None,
            kill_at: stopping.then(|| Instant::now() + grace),
            grace,
            over: false,
        }
    }

    /// Something happened that holds the idle timeout off.
    pub(super) fn touch(&mut self) {
        self.active_at = Instant::now();
    }

    /// The deadline, in seconds since the epoch.
    pub(super) fn deadline(&self) -> Option<u64> {
        self.deadline.map(|(s, _)| s)
    }

    /// A stop is under way, or over: the deadlines no longer count.
    fn ending(&self) -> bool {
        self.kill_at.is_some() || self.over
    }

    /// When the deadline comes, unless a stop is under way already.
    pub(super) fn deadline_at(&self) -> Option<Instant> {
        self.deadline.filter(|_| !self.ending()).map(|(_, at)| at)
    }

    /// When the idle timeout ends the session: its length after the last
    /// activity or the last client's leaving (`detached_since`; `None`
    /// while a client is attached), unless a stop is under way already.
    pub(super) fn idle_at(&self, detached_since: Option<Instant>) -> Option<Instant> {
        if self.idle.is_zero() || self.ending() {
            return None;
        }
        detached_since.map(|d| d.max(self.active_at) + self.idle)
    }

    /// [`Lease::idle_at`] in seconds since the epoch, for `inspect`.
    pub(super) fn idle_deadline(&self, detached_since: Option<Instant>) -> Option<u64> {
        self.idle_at(detached_since).map(secs_of)
    }

    /// The idle timeout, in whole seconds, for the exit reason.
    pub(super) fn idle_secs(&self) -> u64 {
        self.idle.as_secs()
    }

    /// The function is sent SIGTERM now: the kill follows after the grace.
    pub(super) fn stopping(&mut self) {
        self.kill_at = Some(Instant::now() + self.grace);
    }

    /// When the grace of a stop under way is over.
    pub(super) fn kill_at(&self) -> Option<Instant> {
        self.kill_at
    }

    /// The stop's grace is over (the kill is sent): nothing more to wait for.
    pub(super) fn killed(&mut self) {
        self.kill_at = None;
        self.over = true;
    }

    /// When the attached client (`client`) is to be warned of the
    /// deadline, `warning` before it; `None` when it has been already, or
    /// nobody is attached, or there is nothing to warn of.
    pub(super) fn warn_at(&self, client: Option<u64>, warning: Duration) -> Option<Instant> {
        let client = client?;
        let (secs, at) = self.deadline?;
        if warning.is_zero() || self.ending() || self.warned == Some((client, secs)) {
            return None;
        }
        Some(at.checked_sub(warning).unwrap_or(at))
    }

    /// The warning for `client`, if it is due now; it is then counted as
    /// sent.
    pub(super) fn warning(&mut self, client: Option<u64>, warning: Duration) -> Option<ServerMsg> {
        let due = self.warn_at(client, warning)?;
        if due > Instant::now() {
            return None;
        }
        let (at, instant) = self.deadline?;
        self.warned = client.map(|c| (c, at));
        Some(deadline_msg(at, instant))
    }

    /// Moves the deadline `by` later, to at most `max` (seconds since the
    /// epoch; `None`: no maximum). Returns the new deadline, and the
    /// message to send the attached client (`client`) now: one that was
    /// warned of the old deadline hears of the new one at once, even while
    /// it is still far off, and again when it comes within `warning`.
    pub(super) fn extend(
        &mut self,
        by: Duration,
        max: Option<u64>,
        client: Option<u64>,
        warning: Duration,
    ) -> Result<(u64, Option<ServerMsg>), ExtendRefused> {
        if self.ending() {
            return Err(ExtendRefused::Stopping);
        }
        let (old, _) = self.deadline.ok_or(ExtendRefused::NoDeadline)?;
        let secs = by.as_secs() + u64::from(by.subsec_nanos() > 0);
        let asked = old.saturating_add(secs);
        if let Some(max) = max.filter(|&m| asked > m) {
            return Err(ExtendRefused::BeyondMax { asked, max });
        }
        let at = instant_of(asked);
        self.deadline = Some((asked, at));
        self.touch();
        let was_warned = client.is_some() && self.warned.map(|(c, _)| Some(c)) == Some(client);
        let msg = was_warned.then(|| {
            // Told of the new one now. Within the warning's time already,
            // that is its warning; otherwise a fresh one follows when it
            // comes near.
            let near = at.checked_sub(warning).is_none_or(|w| w <= Instant::now());
            self.warned = client.filter(|_| near).map(|c| (c, asked));
            deadline_msg(asked, at)
        });
        Ok((asked, msg))
    }
}

impl Actor {
    /// Warns the attached client of the deadline, once it is near.
    pub(super) fn warn(&mut self) {
        let core = &mut self.core;
        if !core.life.running() {
            return;
        }
        let warning = core.env.limits.deadline_warning;
        let client = self.delivery.client_id();
        if let Some(msg) = core.lease.warning(client, warning) {
            self.delivery.notify(msg);
        }
    }

    /// `extend`: moves the deadline, saves it, and tells the attached
    /// client if it was warned of the old one.
    pub(super) fn extend(&mut self, by: Duration, max: Option<u64>) -> Result<u64, ExtendRefused> {
        let core = &mut self.core;
        if !core.life.running() {
            return Err(ExtendRefused::Ended);
        }
        if core.life.killing() {
            return Err(ExtendRefused::Stopping);
        }
        let warning = core.env.limits.deadline_warning;
        let client = self.delivery.client_id();
        let (deadline, msg) = core.lease.extend(by, max, client, warning)?;
        if let Err(e) = core.env.db.set_deadline(&core.env.meta.token, deadline) {
            // Kept in memory all the same: only a restart would forget it.
            tracing::warn!(session = %core.id(), error = %e, "cannot save the new deadline");
        }
        tracing::info!(session = %core.id(), deadline, "deadline extended");
        if let Some(msg) = msg {
            self.delivery.notify(msg);
        }
        Ok(deadline)
    }
}

fn deadline_msg(at: u64, instant: Instant) -> ServerMsg {
    let left = instant.saturating_duration_since(Instant::now());
    ServerMsg::Deadline {
        at,
        reason: DeadlineKind::Timeout,
        in_secs: left.as_secs() + u64::from(left.subsec_nanos() > 0),
    }
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
