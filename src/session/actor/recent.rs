//! The newest output, kept for read-only watchers even after a client has
//! acknowledged it.
//!
//! The log forgets what an attached client acks (`log::OutputLog::ack`), so
//! a watcher paging through `GET /v1/sessions/{token}/output` beside an
//! attached client would see only what that client had not acked yet,
//! which is often nothing. This ring keeps the newest entries, up to
//! [`RECENT_BYTES`] (payload plus the log's `ENTRY_OVERHEAD` each), whether
//! acked or not; a page after an acked seq is served from it.
//!
//! Policy when full: the oldest entries go first. A watcher that falls
//! further behind than the ring skips ahead to the oldest entry kept (its
//! next page starts at a higher seq than it asked for, which tells it so).
//! Each payload is copied in, so the ring pins no larger buffer it was cut
//! from and costs what it counts. It lives in memory only: after a
//! controller restart it starts empty.

use bytes::Bytes;
use std::collections::VecDeque;

use crate::session::log::Entry;

/// The most the ring holds, in bytes charged as above.
pub const RECENT_BYTES: usize = 256 << 10;

#[derive(Default)]
pub(super) struct Recent {
    entries: VecDeque<(u64, Entry)>,
    bytes: usize,
}

impl Recent {
    /// Keeps `entry`, the log's entry `seq`, dropping the oldest to make
    /// room. An entry larger than the whole ring is not kept (and the ring
    /// is emptied, so that it holds no gap).
    pub(super) fn push(&mut self, seq: u64, entry: Entry) {
        if entry.cost() > RECENT_BYTES {
            self.entries.clear();
            self.bytes = 0;
            return;
        }
        let entry = match entry {
            Entry::Output { stream, end, bytes } => Entry::Output {
                stream,
                end,
                bytes: Bytes::copy_from_slice(&bytes),
            },
            exit => exit,
        };
        let c = entry.cost();
        self.bytes += c;
        self.entries.push_back((seq, entry));
        while self.bytes > RECENT_BYTES {
            match self.entries.pop_front() {
                Some((_, e)) => self.bytes -= e.cost(),
                None => break,
            }
        }
    }

    /// The entry `seq`, if still kept.
    pub(super) fn get(&self, seq: u64) -> Option<&Entry> {
        let first = self.entries.front()?.0;
        let i = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.entries
            .get(i)
            .filter(|(s, _)| *s == seq)
            .map(|(_, e)| e)
    }

    /// The oldest seq kept.
    pub(super) fn first_seq(&self) -> Option<u64> {
        self.entries.front().map(|(s, _)| *s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::api::Stream;

    fn out(n: usize) -> Entry {
        Entry::Output {
            stream: Stream::Stdout,
            end: true,
            bytes: vec![b'x'; n].into(),
        }
    }

    #[test]
    fn keeps_the_newest_within_its_bound() {
        let mut r = Recent::default();
        let each = 100 << 10;
        for seq in 1..=5 {
            r.push(seq, out(each));
        }
        // Two entries of 100 KiB (plus overhead) fit in 256 KiB; not three.
        assert_eq!(r.first_seq(), Some(4));
        assert!(r.get(3).is_none());
        assert!(matches!(r.get(5), Some(Entry::Output { bytes, .. }) if bytes.len() == each));
        assert!(r.get(6).is_none());
        assert!(r.bytes <= RECENT_BYTES);
        // One larger than the ring empties it.
        r.push(6, out(RECENT_BYTES));
        assert_eq!(r.first_seq(), None);
        assert!(r.get(6).is_none());
    }
}
