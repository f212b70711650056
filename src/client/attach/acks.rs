//! When to acknowledge output: [`AckBatcher`]. Pure, so it is tested alone.

use std::time::{Duration, Instant};

/// Batches output acknowledgements.
///
/// Acking every message would double the message count on the socket;
/// acking rarely makes the server hold delivered output longer. So an ack
/// goes out once `every` messages are written, or `interval` after the first
/// unacked write, and at once for the session's exit (the last message, after
/// which the client closes).
#[derive(Debug)]
pub(super) struct AckBatcher {
    interval: Duration,
    every: u64,
    written: u64,
    acked: u64,
    pending_since: Option<Instant>,
    exit_seq: Option<u64>,
}

impl AckBatcher {
    pub(super) fn new(interval: Duration, every: u64) -> Self {
        AckBatcher {
            interval,
            every: every.max(1),
            written: 0,
            acked: 0,
            pending_since: None,
            exit_seq: None,
        }
    }

    /// The consumer has written out everything up to `seq`.
    pub(super) fn written(&mut self, seq: u64, now: Instant) {
        if seq <= self.written {
            return;
        }
        self.written = seq;
        if self.written > self.acked && self.pending_since.is_none() {
            self.pending_since = Some(now);
        }
    }

    pub(super) fn set_exit(&mut self, seq: u64) {
        self.exit_seq = Some(seq);
    }

    /// Whether the exit message has been written out (so it must be acked and
    /// the connection closed).
    pub(super) fn exit_written(&self) -> bool {
        self.exit_seq.is_some_and(|e| self.written >= e)
    }

    /// The seq to ack now, if one is due.
    pub(super) fn due(&self, now: Instant) -> Option<u64> {
        if self.written <= self.acked {
            return None;
        }
        let by_count = self.written - self.acked >= self.every;
        let by_time = self
            .pending_since
            .is_some_and(|t| now.saturating_duration_since(t) >= self.interval);
        (by_count || by_time || self.exit_written()).then_some(self.written)
    }

    /// When the pending ack falls due by time, if one is pending.
    pub(super) fn deadline(&self) -> Option<Instant> {
        if self.written <= self.acked {
            return None;
        }
        self.pending_since.map(|t| t + self.interval)
    }

    pub(super) fn sent(&mut self, seq: u64) {
        self.acked = self.acked.max(seq);
        self.pending_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn acks_by_count() {
        let t = Instant::now();
        let mut a = AckBatcher::new(50 * MS, 64);
        a.written(63, t);
        assert_eq!(a.due(t), None);
        a.written(64, t);
        assert_eq!(a.due(t), Some(64));
        a.sent(64);
        assert_eq!(a.due(t), None);
        assert_eq!(a.deadline(), None);
    }

    #[test]
    fn acks_by_time() {
        let t = Instant::now();
        let mut a = AckBatcher::new(50 * MS, 64);
        a.written(3, t);
        a.written(5, t + 30 * MS);
        assert_eq!(a.deadline(), Some(t + 50 * MS));
        assert_eq!(a.due(t + 49 * MS), None);
        assert_eq!(a.due(t + 50 * MS), Some(5));
    }

    #[test]
    fn acks_exit_at_once() {
        let t = Instant::now();
        let mut a = AckBatcher::new(50 * MS, 64);
        a.set_exit(7);
        a.written(6, t);
        assert!(!a.exit_written());
        assert_eq!(a.due(t), None);
        a.written(7, t);
        assert!(a.exit_written());
        assert_eq!(a.due(t), Some(7));
    }

    #[test]
    fn stale_writes_are_ignored() {
        let t = Instant::now();
        let mut a = AckBatcher::new(50 * MS, 1);
        a.written(5, t);
        a.sent(5);
        a.written(4, t);
        assert_eq!(a.due(t + 100 * MS), None);
    }
}
