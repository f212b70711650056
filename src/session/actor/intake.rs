//! Taking the container's output into the log: when it stops being read
//! (the output cap), when output waits for a client's acks instead of
//! being spooled, and when what is unspooled is written out.

use std::time::Duration;
use tokio::time::Instant;

use super::shared::Core;
use crate::config::OutputPolicy;
use crate::metrics;
use crate::session::fork::Disposition;
use crate::session::io::OutputEvent;
use crate::session::log::{Entry, OutputLog, ENTRY_OVERHEAD};
use crate::wire::api::ExitReason;

/// Output held unspooled is spooled once none has arrived for this long. A
/// client that keeps up acknowledges it sooner, and then it never touches
/// the disk; otherwise this bounds how long the driver waits for the ACK
/// that lets it exit (it exits only once all its output is durable).
pub(super) const QUIET_FLUSH: Duration = Duration::from_millis(5);

/// How long output waits for an attached client's acks before it is
/// spooled. A client that keeps up on average still falls behind by more
/// than the unspooled bound ([`MAX_UNSPOOLED`](crate::session::log::MAX_UNSPOOLED))
/// now and then, when it or the controller is not scheduled for a few
/// milliseconds. Spooling the excess then cost about 7 % of the
/// controller's CPU in a 1 GiB stream (5-10 % of the stream went to disk).
/// Instead the next frame waits in the actor, and the container is not
/// read meanwhile; the driver's window (twice the bound) lets the function
/// keep writing. A client that stays behind gets this wait once, until it
/// has caught up to half the bound, and meanwhile its output is spooled
/// as before.
pub(crate) const SPILL_GRACE: Duration = Duration::from_millis(20);

/// The output side of the actor: the state of the container's output
/// stream, and the frame that waits for acks.
pub(super) struct Intake {
    /// The container's output stream has ended.
    closed: bool,
    /// When output last arrived (see [`QUIET_FLUSH`]).
    last_output: Instant,
    /// A frame that waits for the client's acks instead of being spooled
    /// (see [`SPILL_GRACE`]), and since when output has waited.
    held: Option<OutputEvent>,
    spill_wait: Option<Instant>,
}

impl Intake {
    /// `closed`: the container's output is over already (see
    /// [`ActorInit::output_closed`](super::ActorInit::output_closed)).
    pub(super) fn new(closed: bool) -> Intake {
        Intake {
            closed,
            last_output: Instant::now(),
            held: None,
            spill_wait: None,
        }
    }

    /// Whether the loop takes the container's output now.
    pub(super) fn accepting(&self, core: &mut Core) -> bool {
        // Stop taking output at the cap, unless the container is being
        // killed anyway: then drain it so the exit can be recorded.
        let limits = &core.env.limits;
        let at_cap = core.log.pending_cost() >= limits.output_cap
            || core.log.pending_messages() >= limits.output_max_messages;
        if at_cap && limits.output_policy == OutputPolicy::Kill {
            core.kill(ExitReason::OutputCap);
        }
        let paused = (at_cap && !core.life.killing()) || self.held.is_some();
        !paused && !self.closed
    }

    /// Tries the frame that waits again: acks may have made room for it,
    /// or the client left, or its grace is over.
    pub(super) fn retry_held(&mut self, core: &mut Core, attached: bool) {
        if let Some(ev) = self.held.take() {
            self.on_output(core, attached, Some(ev));
        }
    }

    /// When the frame that waits stops waiting, if one does.
    pub(super) fn hold_until(&self) -> Option<Instant> {
        self.spill_wait
            .filter(|_| self.held.is_some())
            .map(|t| t + SPILL_GRACE)
    }

    /// When output held unspooled is written out, if it stays quiet.
    pub(super) fn flush_at(&self, log: &OutputLog) -> Option<Instant> {
        // Not while a frame waits for acks: output has not gone quiet.
        (log.unspooled_bytes() > 0 && self.held.is_none()).then(|| self.last_output + QUIET_FLUSH)
    }

    /// Output has gone quiet: spools what is held unspooled.
    pub(super) fn flush(&self, core: &mut Core) {
        let flushed = core.log.flush();
        core.spool_result(flushed);
    }

    /// Whether a replayable frame costing `len` bytes should wait for the
    /// client's acks rather than push older output into the spool.
    ///
    /// One wait per episode: the grace starts again only once the client
    /// has caught up to half the bound. A client that stays slower than the
    /// function, but acks often enough to make room for the odd frame, would
    /// otherwise hold the function to its own pace; this way the function
    /// runs on and the client reads its output back from the spool.
    fn wait_for_acks(&mut self, core: &Core, attached: bool, len: usize) -> bool {
        let limit = core.log.unspooled_limit();
        let unspooled = core.log.unspooled_bytes();
        if unspooled <= limit / 2 {
            self.spill_wait = None;
        }
        let fits = unspooled + len <= limit;
        let may_wait = len <= limit && attached && !core.life.killing();
        if fits || !may_wait {
            return false;
        }
        let since = *self.spill_wait.get_or_insert_with(Instant::now);
        since.elapsed() < SPILL_GRACE
    }

    /// `attached`: a client is attached, whose acks output may wait for.
    pub(super) fn on_output(&mut self, core: &mut Core, attached: bool, ev: Option<OutputEvent>) {
        // A fork's replayed output is checked and swallowed, never logged.
        if let Some(OutputEvent::Output {
            stream,
            end,
            ref bytes,
            offset,
            replayable,
        }) = ev
        {
            if core.fork.swallowing() {
                let seen = core.fork.on_frame(stream, end, bytes, offset, replayable);
                core.fork_settle();
                if let Disposition::Swallow(upto) = seen {
                    self.last_output = Instant::now();
                    core.env.durable.send_if_modified(|acked| {
                        let newer = upto > *acked;
                        *acked = (*acked).max(upto);
                        newer
                    });
                    return;
                }
                return self.take(core, ev);
            }
        }
        match ev {
            Some(OutputEvent::Output {
                replayable: true,
                ref bytes,
                ..
            }) if self.wait_for_acks(core, attached, bytes.len() + ENTRY_OVERHEAD) => {
                self.held = ev;
            }
            Some(OutputEvent::Output {
                stream,
                end,
                ref bytes,
                offset,
                replayable,
            }) => {
                core.fork.on_frame(stream, end, bytes, offset, replayable);
                self.take(core, ev);
            }
            Some(OutputEvent::Consumed { inputs, offset }) => {
                core.fork.on_consumed(inputs, offset);
                core.fork_settle();
            }
            Some(OutputEvent::BadFrames(message)) => {
                core.kill(ExitReason::ProtocolError { message });
            }
            Some(OutputEvent::Closed) | None => {
                core.fork.on_output_closed();
                core.fork_settle();
                self.output_ended(core);
            }
        }
    }

    /// Takes a frame of output into the log (anything else is handled
    /// by [`Intake::on_output`]).
    fn take(&mut self, core: &mut Core, ev: Option<OutputEvent>) {
        let Some(OutputEvent::Output {
            stream,
            end,
            bytes,
            offset,
            replayable,
        }) = ev
        else {
            return;
        };
        metrics::add(&metrics::METRICS.bytes_received, bytes.len() as u64);
        core.counts.bytes_out += bytes.len() as u64;
        if end || stream != crate::wire::api::Stream::Data {
            core.counts.messages_out += 1;
        }
        self.last_output = Instant::now();
        let entry = Entry::Output { stream, end, bytes };
        let kept = entry.clone();
        let appended = if replayable {
            core.log.append_replayable(entry, offset)
        } else {
            core.log.append(entry, offset)
        };
        if appended.is_ok() {
            core.recent.push(core.log.last_seq(), kept);
        }
        core.spool_result(appended.map(drop));
    }

    /// The output stream has ended: the container is exiting.
    fn output_ended(&mut self, core: &Core) {
        if self.closed {
            return;
        }
        self.closed = true;
        core.life.watch_exit(&core.env);
    }
}
