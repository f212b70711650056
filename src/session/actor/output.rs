//! Taking the container's output into the log: when output waits for a
//! client's acks instead of being spooled, and when what is unspooled is
//! written out.

use super::*;

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

impl Actor {
    /// After the log may have written to its spool: tells the driver what
    /// is durable now, or, if the spool failed, stops the function, since
    /// its output could no longer be kept.
    pub(super) fn spool_result(&mut self, result: std::io::Result<()>) {
        if let Err(e) = result {
            tracing::error!(session = %self.meta.id, error = %e, "spool write failed");
            self.kill(ExitReason::Lost {
                message: format!("cannot spool output: {e}"),
            });
            return;
        }
        let durable = self.log.durable_offset();
        self.acks.send_if_modified(|acked| {
            let newer = durable > *acked;
            if newer {
                *acked = durable;
            }
            newer
        });
    }

    /// Whether a replayable frame costing `len` bytes should wait for the
    /// client's acks rather than push older output into the spool.
    ///
    /// One wait per episode: the grace starts again only once the client
    /// has caught up to half the bound. A client that stays slower than the
    /// function, but acks often enough to make room for the odd frame, would
    /// otherwise hold the function to its own pace; this way the function
    /// runs on and the client reads its output back from the spool.
    pub(super) fn wait_for_acks(&mut self, len: usize) -> bool {
        let limit = self.log.unspooled_limit();
        let unspooled = self.log.unspooled_bytes();
        if unspooled <= limit / 2 {
            self.spill_wait = None;
        }
        let fits = unspooled + len <= limit;
        let may_wait = len <= limit && self.client.is_some() && self.kill_reason.is_none();
        if fits || !may_wait {
            return false;
        }
        let since = *self.spill_wait.get_or_insert_with(Instant::now);
        since.elapsed() < SPILL_GRACE
    }

    pub(super) fn on_output(&mut self, ev: Option<OutputEvent>) {
        match ev {
            Some(OutputEvent::Output {
                replayable: true,
                ref bytes,
                ..
            }) if self.wait_for_acks(bytes.len() + crate::session::log::ENTRY_OVERHEAD) => {
                self.held = ev;
            }
            Some(OutputEvent::Output {
                stream,
                end,
                bytes,
                offset,
                replayable,
            }) => {
                metrics::add(&metrics::METRICS.bytes_received, bytes.len() as u64);
                self.last_output = Instant::now();
                let entry = Entry::Output { stream, end, bytes };
                let appended = if replayable {
                    self.log.append_replayable(entry, offset)
                } else {
                    self.log.append(entry, offset)
                };
                self.spool_result(appended.map(drop));
            }
            Some(OutputEvent::BadFrames(message)) => {
                self.kill(ExitReason::ProtocolError { message });
            }
            Some(OutputEvent::Closed) | None => self.watch_exit(),
        }
    }
}
