//! A session's output log: every output message gets a sequence number
//! (1, 2, 3, …) and is kept until a client acknowledges it.
//!
//! **Durability.** The driver keeps every frame until it is told (ACK) that
//! the frame is durable, and retransmits what is not after a controller
//! crash. So an entry must be durable before [`OutputLog::durable_offset`]
//! passes it, and it is durable once it is either in the spool file (see
//! `spool.rs`) or acknowledged by a client, with a checkpoint in the spool
//! that carries the numbering and the resume point on.
//!
//! **Lazy spooling.** A client that keeps up acknowledges output while it is
//! still in memory, and such output never needs to touch the disk. So an
//! entry the driver can retransmit ([`OutputLog::append_replayable`]) stays
//! in memory only, unspooled, until the first of:
//! - a client acknowledges it (a checkpoint is written instead);
//! - it would leave the memory window, or the unspooled bytes exceed
//!   [`MAX_UNSPOOLED`]: the oldest are spooled (the session actor first
//!   gives an attached client a moment to make room with its acks, see
//!   `SPILL_GRACE`);
//! - the owner calls [`OutputLog::flush`] (output went quiet, the client
//!   left, the function ended).
//!
//! Everything else (the exit, raw stderr, which no driver retransmits) is
//! written through at once, after whatever is unspooled before it, so the
//! file stays in seq order. Since retransmitted frames come back as the
//! same entries with the same seqs, a client that was sent an unspooled
//! entry before a crash gets exactly the same entry again, or nothing if it
//! says it has it.
//!
//! The newest entries are kept in memory, up to `window` bytes, so a client
//! that keeps up is served without reading the file back. An in-memory
//! index maps each spooled, unacknowledged seq to its place in the file.
//! Acknowledging trims the index and the cache, and once nothing spooled
//! is unacknowledged a checkpoint record carries the numbering on; the file
//! starts over when it is large.
//!
//! The log never drops anything on its own. The bound on what it holds in
//! total is enforced by its owner, which stops reading the container when
//! [`OutputLog::pending_bytes`] reaches the session's cap.

mod spool;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;

use crate::wire::api::{ExitInfo, Stream};
use spool::{Spool, TAG_CHECKPOINT, TAG_EXIT};

/// The most output kept unspooled, in bytes. It must stay well below the
/// driver's window (`wire::driver::DRIVER_WINDOW`), or the driver would stop writing
/// while it waits for an ACK that only a client's ack could bring.
pub const MAX_UNSPOOLED: usize = 4 << 20;
/// What one entry costs beyond its payload, charged wherever a size is
/// bounded (the memory window, what is held unspooled, the output cap, a
/// page of `GET /output`). Without it an empty message cost nothing, and a
/// function sending millions of them went past every bound. It is about
/// what an entry really takes: its place in memory (seq, offset, buffer
/// handle) or in the index and the spool's record header.
pub const ENTRY_OVERHEAD: usize = 64;
/// Acknowledged records are cleared away once the spool reaches this.
const TRUNCATE_AT: u64 = 8 << 20;

/// One logged message.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Output {
        stream: Stream,
        end: bool,
        bytes: Bytes,
    },
    /// Always the last entry of a log.
    Exit(ExitInfo),
}

impl Entry {
    /// Payload bytes, as users count output.
    fn len(&self) -> usize {
        match self {
            Entry::Output { bytes, .. } => bytes.len(),
            Entry::Exit(_) => 64,
        }
    }

    /// What holding it costs, as the bounds count it.
    pub fn cost(&self) -> usize {
        self.len() + ENTRY_OVERHEAD
    }
}

/// An entry held in memory, with the stream offset it took the log to.
#[derive(Debug)]
struct Held {
    seq: u64,
    offset: u64,
    entry: Entry,
}

pub struct OutputLog {
    spool: Spool,
    /// Seq the next appended entry gets.
    next_seq: u64,
    /// Everything up to here has been acknowledged and forgotten.
    acked: u64,
    /// Every seq up to here is spooled or acknowledged; later ones are
    /// only in `mem`.
    spooled: u64,
    /// The stream offset on the newest spool record: how far into the
    /// driver's frame stream everything is durable.
    durable: u64,
    /// How far into the driver's frame stream the log has got.
    stream_offset: u64,
    /// `(file offset, payload length)` of each spooled, unacknowledged seq,
    /// from `acked + 1` to `spooled`.
    index: VecDeque<(u64, u64)>,
    pending_bytes: u64,
    /// The newest entries, contiguous up to the last seq, costing at most
    /// `window` bytes (but always every unspooled one).
    mem: VecDeque<Held>,
    /// What the entries in `mem` cost ([`Entry::cost`]).
    mem_bytes: usize,
    /// What the entries after `spooled` cost ([`Entry::cost`]).
    unspooled_bytes: usize,
    window: usize,
    /// An exit entry has been appended.
    has_exit: bool,
}

impl OutputLog {
    /// A new, empty log.
    pub fn new(path: PathBuf, window: usize) -> OutputLog {
        OutputLog {
            spool: Spool::new(path),
            next_seq: 1,
            acked: 0,
            spooled: 0,
            durable: 0,
            stream_offset: 0,
            index: VecDeque::new(),
            pending_bytes: 0,
            mem: VecDeque::new(),
            mem_bytes: 0,
            unspooled_bytes: 0,
            window,
            has_exit: false,
        }
    }

    /// Reopens a log after a restart: reads the spool, drops a record torn
    /// by the crash, and forgets what is known to be acknowledged.
    pub fn recover(path: PathBuf, window: usize, acked: u64) -> io::Result<OutputLog> {
        let mut log = OutputLog::new(path.clone(), window);
        let mut first_seq = None;
        let scanned = Spool::scan(path, |at, h| {
            log.stream_offset = h.offset;
            log.next_seq = h.seq + 1;
            if h.tag == TAG_CHECKPOINT {
                log.acked = h.seq;
                log.index.clear();
                log.pending_bytes = 0;
                first_seq = None;
            } else {
                first_seq.get_or_insert(h.seq);
                let len = if h.tag == TAG_EXIT {
                    64
                } else {
                    u64::from(h.len)
                };
                log.index.push_back((at, len));
                log.pending_bytes += len;
                log.has_exit |= h.tag == TAG_EXIT;
            }
        })?;
        match scanned {
            Some(spool) => log.spool = spool,
            None => {
                log.acked = acked;
                log.next_seq = acked + 1;
                log.spooled = acked;
                return Ok(log);
            }
        }
        log.spooled = log.next_seq - 1;
        log.durable = log.stream_offset;
        // Records before the first one indexed were acknowledged earlier.
        if let Some(first) = first_seq {
            log.acked = log.acked.max(first - 1);
        }
        let known = acked.min(log.next_seq - 1);
        while log.acked < known {
            log.acked += 1;
            if let Some((_, len)) = log.index.pop_front() {
                log.pending_bytes -= len;
            }
        }
        Ok(log)
    }

    /// The highest seq appended so far (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// How far into the driver's frame stream the log has got.
    pub fn stream_offset(&self) -> u64 {
        self.stream_offset
    }

    /// How far into the driver's frame stream output is durable: what the
    /// driver may forget (its ACK).
    pub fn durable_offset(&self) -> u64 {
        self.durable
    }

    pub fn has_exit(&self) -> bool {
        self.has_exit
    }

    /// Messages not yet acknowledged.
    pub fn pending_messages(&self) -> u64 {
        self.last_seq() - self.acked
    }

    /// Payload bytes not yet acknowledged.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    /// What the unacknowledged entries cost, [`ENTRY_OVERHEAD`] each
    /// included: what the output cap bounds.
    pub fn pending_cost(&self) -> u64 {
        let overhead = self
            .pending_messages()
            .saturating_mul(ENTRY_OVERHEAD as u64);
        self.pending_bytes.saturating_add(overhead)
    }

    /// Unacknowledged payload bytes not in the memory cache: what a reader
    /// must fetch from disk.
    pub fn spooled_bytes(&self) -> u64 {
        // (Acknowledging takes entries out of `mem`: all of it is pending.)
        let mem_payload = self
            .mem_bytes
            .saturating_sub(self.mem.len() * ENTRY_OVERHEAD);
        self.pending_bytes.saturating_sub(mem_payload as u64)
    }

    /// The most output kept unspooled: past it, the oldest is spooled.
    pub fn unspooled_limit(&self) -> usize {
        self.window.min(MAX_UNSPOOLED)
    }

    /// What the entries held in memory only, not yet durable, cost
    /// ([`Entry::cost`]).
    pub fn unspooled_bytes(&self) -> usize {
        self.unspooled_bytes
    }

    /// Appends an entry, written through to the spool (after anything
    /// unspooled before it), and returns its seq. `stream_offset` is how far
    /// into the driver's frame stream this entry takes the log.
    pub fn append(&mut self, entry: Entry, stream_offset: u64) -> io::Result<u64> {
        self.flush()?;
        self.push(entry, stream_offset, true)
    }

    /// Appends an entry that the driver retransmits until it is durable (a
    /// frame of its stream): it may stay in memory only, see the module
    /// docs. Returns its seq.
    pub fn append_replayable(&mut self, entry: Entry, stream_offset: u64) -> io::Result<u64> {
        let lazy = self.window > 0 && !matches!(entry, Entry::Exit(_));
        if !lazy {
            return self.append(entry, stream_offset);
        }
        self.push(entry, stream_offset, false)
    }

    fn push(&mut self, entry: Entry, offset: u64, spool_now: bool) -> io::Result<u64> {
        let seq = self.next_seq;
        let (len, cost) = (entry.len(), entry.cost());
        if spool_now {
            self.spool_entry(seq, offset, &entry)?;
        } else {
            self.unspooled_bytes += cost;
        }
        self.next_seq += 1;
        self.stream_offset = self.stream_offset.max(offset);
        self.pending_bytes += len as u64;
        self.has_exit |= matches!(entry, Entry::Exit(_));
        // (An entry left unspooled always has a window to stay in.)
        if self.window > 0 {
            self.mem_bytes += cost;
            self.mem.push_back(Held { seq, offset, entry });
        }
        self.shrink(1)?;
        Ok(seq)
    }

    /// Writes one entry to the spool; it must be the one after `spooled`.
    fn spool_entry(&mut self, seq: u64, offset: u64, entry: &Entry) -> io::Result<()> {
        debug_assert_eq!(seq, self.spooled + 1, "spooled out of order");
        let at = match entry {
            Entry::Output { stream, end, bytes } => {
                self.spool.write(seq, offset, *stream as u8, *end, bytes)?
            }
            Entry::Exit(info) => {
                let json = serde_json::to_vec(info)?;
                self.spool.write(seq, offset, TAG_EXIT, true, &json)?
            }
        };
        self.index.push_back((at, entry.len() as u64));
        self.spooled = seq;
        self.durable = self.durable.max(offset);
        Ok(())
    }

    /// Spools the oldest unspooled entry, if there is one.
    fn spool_next(&mut self) -> io::Result<bool> {
        let seq = self.spooled + 1;
        let Some(first) = self.mem.front().map(|h| h.seq) else {
            return Ok(false);
        };
        if seq < first || seq >= self.next_seq {
            return Ok(false);
        }
        // A clone (of a `Bytes`: a reference count), so that `mem` is not
        // borrowed while the spool is written.
        let i = (seq - first) as usize;
        let Some(held) = self.mem.get(i) else {
            return Ok(false);
        };
        let (offset, entry) = (held.offset, held.entry.clone());
        self.spool_entry(seq, offset, &entry)?;
        self.unspooled_bytes -= entry.cost();
        Ok(true)
    }

    /// Spools everything that is only in memory.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.spooled < self.last_seq() {
            if !self.spool_next()? {
                break;
            }
        }
        Ok(())
    }

    /// Holds the bounds: unspooled bytes within the window and
    /// [`MAX_UNSPOOLED`], memory within the window (keeping at least `keep`
    /// entries). What leaves memory unspooled is spooled first.
    fn shrink(&mut self, keep: usize) -> io::Result<()> {
        while self.unspooled_bytes > self.unspooled_limit() {
            if !self.spool_next()? {
                break;
            }
        }
        let keep = if self.window == 0 { 0 } else { keep };
        while self.mem_bytes > self.window && self.mem.len() > keep {
            let Some(seq) = self.mem.front().map(|h| h.seq) else {
                break;
            };
            if seq > self.spooled && !self.spool_next()? {
                break;
            }
            if let Some(h) = self.mem.pop_front() {
                self.mem_bytes -= h.entry.cost();
            }
        }
        Ok(())
    }

    /// Changes how much of the newest output is kept in memory, spooling and
    /// evicting what no longer fits. With nobody attached there is no one to
    /// serve from memory, so the owner sets it to 0 and a detached session
    /// holds its output on disk alone.
    pub fn set_window(&mut self, window: usize) -> io::Result<()> {
        self.window = window;
        self.shrink(0)
    }

    /// The entry with this seq, if it is still held.
    pub fn get(&mut self, seq: u64) -> io::Result<Option<Entry>> {
        if seq <= self.acked || seq >= self.next_seq {
            return Ok(None);
        }
        if let Some(first) = self.mem.front().map(|h| h.seq) {
            if seq >= first {
                let held = self.mem.get((seq - first) as usize);
                return Ok(held.map(|h| h.entry.clone()));
            }
        }
        let Some(&(at, _)) = self.index.get((seq - self.acked - 1) as usize) else {
            return Ok(None);
        };
        let (h, payload) = self.spool.read(at)?;
        Ok(Some(match Stream::from_u8(h.tag) {
            Some(stream) => Entry::Output {
                stream,
                end: h.end,
                bytes: Bytes::from(payload),
            },
            None => Entry::Exit(serde_json::from_slice(&payload)?),
        }))
    }

    /// Forgets everything up to and including `seq`. Acks beyond the last
    /// seq are clamped; acks at or below the current one change nothing.
    ///
    /// Acknowledged entries that were never spooled become durable here, by
    /// a checkpoint record; so does a spool with nothing left to read back.
    pub fn ack(&mut self, seq: u64) -> io::Result<()> {
        let seq = seq.min(self.last_seq());
        if seq <= self.acked {
            return Ok(());
        }
        let spooled = self.spooled;
        // Where the driver's stream stands after `seq`, if the spool does
        // not say so yet.
        let mut resume_at = None;
        while self.acked < seq.min(spooled) {
            self.acked += 1;
            if let Some((_, len)) = self.index.pop_front() {
                self.pending_bytes -= len;
            }
        }
        while let Some(h) = self.mem.front() {
            if h.seq > seq {
                break;
            }
            let (len, cost) = (h.entry.len(), h.entry.cost());
            if h.seq > spooled {
                self.pending_bytes -= len as u64;
                self.unspooled_bytes -= cost;
                resume_at = Some(h.offset);
            }
            self.mem_bytes -= cost;
            self.mem.pop_front();
        }
        self.acked = seq;
        self.spooled = spooled.max(seq);
        if !self.index.is_empty() {
            return Ok(());
        }
        // Nothing spooled is left to read back: a checkpoint carries the
        // numbering on for a restart (which forgets what came before it),
        // and the resume point if that moved. The file starts over only
        // once it is large: truncating on every ack made a fast client's
        // stream pay a truncation per batch.
        let offset = resume_at.unwrap_or(self.durable);
        if resume_at.is_none() && self.spool.end() == 0 {
            return Ok(());
        }
        if self.spool.end() >= TRUNCATE_AT {
            self.spool.clear()?;
        }
        self.spool
            .write(self.acked, offset, TAG_CHECKPOINT, false, &[])?;
        self.durable = self.durable.max(offset);
        Ok(())
    }

    /// Starts an empty log at `offset` of the driver's stream: a fork's
    /// log, whose output before that was its parent's (replayed, not
    /// kept). A checkpoint records it, so that a restart resumes there.
    pub fn begin_at(&mut self, offset: u64) -> io::Result<()> {
        if self.last_seq() != 0 || offset <= self.stream_offset {
            return Ok(());
        }
        self.spool.write(0, offset, TAG_CHECKPOINT, false, &[])?;
        self.stream_offset = offset;
        self.durable = self.durable.max(offset);
        Ok(())
    }

    /// Deletes the spool file.
    pub fn remove_spool(&mut self) {
        self.spool.remove();
    }

    #[cfg(test)]
    fn path(&self) -> PathBuf {
        self.spool.path().to_path_buf()
    }
}
