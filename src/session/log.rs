//! A session's output log: every output message gets a sequence number
//! (1, 2, 3, …) and is kept until a client acknowledges it.
//!
//! Every entry is written through to an append-only spool file under the
//! data dir before the driver is told it may forget it, so output survives
//! a crash of the controller. The newest entries are also kept in memory, up
//! to `window` bytes, so a client that keeps up is served without reading
//! the file back. An in-memory index maps each unacknowledged seq to its
//! place in the file. Acknowledging trims the index and the cache, and when
//! nothing unacknowledged is left the file is truncated to a single
//! checkpoint record that carries the numbering on.
//!
//! The log never drops anything on its own. The bound on what it holds in
//! total is enforced by its owner, which stops reading the container when
//! [`OutputLog::pending_bytes`] reaches the session's cap.
//!
//! Record format: `seq u64 | stream offset u64 | tag u8 | end u8 | len u32 |
//! payload`, big-endian. Tag 1-3 is a [`Stream`], 0 the exit (JSON), 255 a
//! checkpoint. The stream offset is how far into the driver's frame stream
//! the log reached with this record: where the driver resumes after a crash.

use bytes::Bytes;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::protocol::{ExitInfo, Stream};

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
    fn len(&self) -> usize {
        match self {
            Entry::Output { bytes, .. } => bytes.len(),
            Entry::Exit(_) => 64,
        }
    }
}

const RECORD_HEADER: usize = 8 + 8 + 1 + 1 + 4;
const TAG_EXIT: u8 = 0;
const TAG_CHECKPOINT: u8 = 255;
/// Acknowledged records are truncated away once the spool reaches this.
const TRUNCATE_AT: u64 = 8 << 20;

pub struct OutputLog {
    path: PathBuf,
    file: Option<File>,
    /// Where the next record goes.
    end: u64,
    /// Seq the next appended entry gets.
    next_seq: u64,
    /// Everything up to here has been acknowledged and forgotten.
    acked: u64,
    /// How far into the driver's frame stream the log has got.
    stream_offset: u64,
    /// `(file offset, payload length)` of each unacknowledged seq, from
    /// `acked + 1` on.
    index: VecDeque<(u64, u64)>,
    pending_bytes: u64,
    /// The newest entries, `(seq, entry)`, contiguous, at most `window` bytes.
    mem: VecDeque<(u64, Entry)>,
    mem_bytes: usize,
    window: usize,
    /// An exit entry has been appended.
    has_exit: bool,
}

impl OutputLog {
    /// A new, empty log.
    pub fn new(path: PathBuf, window: usize) -> OutputLog {
        OutputLog {
            path,
            file: None,
            end: 0,
            next_seq: 1,
            acked: 0,
            stream_offset: 0,
            index: VecDeque::new(),
            pending_bytes: 0,
            mem: VecDeque::new(),
            mem_bytes: 0,
            window,
            has_exit: false,
        }
    }

    /// Reopens a log after a restart: reads the spool, drops a record torn
    /// by the crash, and forgets what is known to be acknowledged.
    pub fn recover(path: PathBuf, window: usize, acked: u64) -> io::Result<OutputLog> {
        let mut log = OutputLog::new(path, window);
        let file = match OpenOptions::new().read(true).write(true).open(&log.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                log.acked = acked;
                log.next_seq = acked + 1;
                return Ok(log);
            }
            Err(e) => return Err(e),
        };
        let size = file.metadata()?.len();
        let mut at = 0u64;
        let mut first_seq = None;
        while at + RECORD_HEADER as u64 <= size {
            let mut h = [0u8; RECORD_HEADER];
            file.read_exact_at(&mut h, at)?;
            let seq = be64(&h[0..8]);
            let off = be64(&h[8..16]);
            let tag = h[16];
            let len = u32::from_be_bytes([h[18], h[19], h[20], h[21]]) as u64;
            if at + RECORD_HEADER as u64 + len > size {
                break; // torn by the crash: the driver still holds it
            }
            log.stream_offset = off;
            log.next_seq = seq + 1;
            if tag == TAG_CHECKPOINT {
                log.acked = seq;
                log.index.clear();
                log.pending_bytes = 0;
                first_seq = None;
            } else {
                first_seq.get_or_insert(seq);
                let payload_len = if tag == TAG_EXIT { 64 } else { len };
                log.index.push_back((at, payload_len));
                log.pending_bytes += payload_len;
                log.has_exit |= tag == TAG_EXIT;
            }
            at += RECORD_HEADER as u64 + len;
        }
        if at < size {
            file.set_len(at)?;
        }
        log.end = at;
        log.file = Some(file);
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

    /// Unacknowledged bytes not in the memory cache: what a reader must
    /// fetch from disk.
    pub fn spooled_bytes(&self) -> u64 {
        self.pending_bytes.saturating_sub(self.mem_bytes as u64)
    }

    fn file(&mut self) -> io::Result<&File> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&self.path)?;
            self.end = 0;
            self.file = Some(f);
        }
        match &self.file {
            Some(f) => Ok(f),
            None => Err(io::Error::other("spool file not open")),
        }
    }

    fn write_record(&mut self, seq: u64, tag: u8, end: bool, payload: &[u8]) -> io::Result<u64> {
        let len = u32::try_from(payload.len()).map_err(|_| io::Error::other("record too large"))?;
        let mut h = [0u8; RECORD_HEADER];
        h[0..8].copy_from_slice(&seq.to_be_bytes());
        h[8..16].copy_from_slice(&self.stream_offset.to_be_bytes());
        h[16] = tag;
        h[17] = end as u8;
        h[18..22].copy_from_slice(&len.to_be_bytes());
        let at = self.end;
        let f = self.file()?;
        f.write_all_at(&h, at)?;
        f.write_all_at(payload, at + RECORD_HEADER as u64)?;
        self.end = at + (RECORD_HEADER + payload.len()) as u64;
        Ok(at)
    }

    /// Appends an entry and returns its seq. `stream_offset` is how far into
    /// the driver's frame stream this entry takes the log. The entry is in
    /// the spool file (the kernel's, at least) when this returns.
    pub fn append(&mut self, entry: Entry, stream_offset: u64) -> io::Result<u64> {
        let seq = self.next_seq;
        self.stream_offset = self.stream_offset.max(stream_offset);
        let at = match &entry {
            Entry::Output { stream, end, bytes } => {
                self.write_record(seq, *stream as u8, *end, bytes)?
            }
            Entry::Exit(info) => {
                let json = serde_json::to_vec(info)?;
                self.has_exit = true;
                self.write_record(seq, TAG_EXIT, true, &json)?
            }
        };
        self.next_seq += 1;
        let len = entry.len();
        self.index.push_back((at, len as u64));
        self.pending_bytes += len as u64;
        if self.window == 0 {
            return Ok(seq);
        }
        self.mem_bytes += len;
        self.mem.push_back((seq, entry));
        while self.mem_bytes > self.window && self.mem.len() > 1 {
            if let Some((_, e)) = self.mem.pop_front() {
                self.mem_bytes -= e.len();
            }
        }
        Ok(seq)
    }

    /// Changes how much of the newest output is kept in memory, evicting
    /// what no longer fits. With nobody attached there is no one to serve
    /// from memory, so the owner sets it to 0 and a detached session holds
    /// its output on disk alone.
    pub fn set_window(&mut self, window: usize) {
        self.window = window;
        while self.mem_bytes > self.window {
            match self.mem.pop_front() {
                Some((_, e)) => self.mem_bytes -= e.len(),
                None => break,
            }
        }
    }

    /// The entry with this seq, if it is still held.
    pub fn get(&mut self, seq: u64) -> io::Result<Option<Entry>> {
        if seq <= self.acked || seq >= self.next_seq {
            return Ok(None);
        }
        if let Some(&(first, _)) = self.mem.front() {
            if seq >= first {
                return Ok(self.mem.get((seq - first) as usize).map(|(_, e)| e.clone()));
            }
        }
        let Some(&(at, _)) = self.index.get((seq - self.acked - 1) as usize) else {
            return Ok(None);
        };
        let f = self.file()?;
        let mut h = [0u8; RECORD_HEADER];
        f.read_exact_at(&mut h, at)?;
        let len = u32::from_be_bytes([h[18], h[19], h[20], h[21]]) as usize;
        let mut payload = vec![0u8; len];
        f.read_exact_at(&mut payload, at + RECORD_HEADER as u64)?;
        Ok(Some(match Stream::from_u8(h[16]) {
            Some(stream) => Entry::Output {
                stream,
                end: h[17] != 0,
                bytes: Bytes::from(payload),
            },
            None => Entry::Exit(serde_json::from_slice(&payload)?),
        }))
    }

    /// Forgets everything up to and including `seq`. Acks beyond the last
    /// seq are clamped; acks at or below the current one change nothing.
    pub fn ack(&mut self, seq: u64) -> io::Result<()> {
        let seq = seq.min(self.last_seq());
        let before = self.acked;
        while self.acked < seq {
            self.acked += 1;
            if let Some((_, len)) = self.index.pop_front() {
                self.pending_bytes -= len;
            }
        }
        while let Some((s, e)) = self.mem.front() {
            if *s > seq {
                break;
            }
            self.mem_bytes -= e.len();
            self.mem.pop_front();
        }
        if self.acked > before && self.index.is_empty() && self.end > 0 && self.file.is_some() {
            // Nothing left to read back: a checkpoint carries the numbering
            // on for a restart (which forgets what came before it). The
            // file starts over only once it is large: truncating on every
            // ack made a fast client's stream pay a truncation per batch.
            if self.end >= TRUNCATE_AT {
                if let Some(f) = &self.file {
                    f.set_len(0)?;
                }
                self.end = 0;
            }
            self.write_record(self.acked, TAG_CHECKPOINT, false, &[])?;
        }
        Ok(())
    }

    /// Deletes the spool file.
    pub fn remove_spool(&mut self) {
        self.file = None;
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove spool");
            }
        }
    }
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ExitReason;

    fn out(s: &str) -> Entry {
        Entry::Output {
            stream: Stream::Data,
            end: true,
            bytes: Bytes::copy_from_slice(s.as_bytes()),
        }
    }

    fn log(window: usize) -> (tempfile::TempDir, OutputLog) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("s.spool");
        (dir, OutputLog::new(path, window))
    }

    #[test]
    fn sequences_start_at_one_and_ack_trims() {
        let (_d, mut l) = log(1 << 20);
        assert_eq!(l.append(out("a"), 9).ok(), Some(1));
        assert_eq!(l.append(out("bb"), 19).ok(), Some(2));
        assert_eq!(l.pending_bytes(), 3);
        assert_eq!(l.stream_offset(), 19);
        l.ack(1).ok();
        assert_eq!(l.get(1).ok().flatten(), None);
        assert_eq!(l.get(2).ok().flatten(), Some(out("bb")));
        assert_eq!(l.pending_messages(), 1);
        // An ack beyond the end is clamped, an old ack is a no-op.
        l.ack(99).ok();
        l.ack(1).ok();
        assert_eq!(l.acked(), 2);
        assert_eq!(l.pending_bytes(), 0);
    }

    #[test]
    fn entries_beyond_the_memory_window_are_read_back_from_the_spool() {
        let (_d, mut l) = log(10);
        let msgs: Vec<String> = (0..50).map(|i| format!("message {i}")).collect();
        for (i, m) in msgs.iter().enumerate() {
            l.append(out(m), i as u64).ok();
        }
        l.append(Entry::Exit(ExitReason::Exited { code: 3 }.into()), 50)
            .ok();
        assert!(l.spooled_bytes() > 0, "small window must read from disk");
        assert!(l.mem_bytes <= 64 + 10);
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(l.get(i as u64 + 1).ok().flatten(), Some(out(m)));
        }
        assert!(matches!(l.get(51).ok().flatten(), Some(Entry::Exit(_))));
        l.ack(20).ok();
        assert_eq!(l.get(21).ok().flatten(), Some(out(&msgs[20])));
        l.ack(51).ok();
        assert_eq!(l.pending_bytes(), 0);
        // A small spool keeps its acked records, a checkpoint after them.
        let recovered = OutputLog::recover(l.path.clone(), 10, 0);
        let recovered = recovered.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((recovered.acked(), recovered.pending_bytes()), (51, 0));
    }

    #[test]
    fn with_no_window_everything_is_read_from_disk() {
        let (_d, mut l) = log(1 << 20);
        l.append(out("kept"), 1).ok();
        l.set_window(0);
        assert_eq!(l.mem_bytes, 0);
        l.append(out("on disk"), 2).ok();
        assert_eq!(l.mem_bytes, 0);
        assert_eq!(l.get(1).ok().flatten(), Some(out("kept")));
        assert_eq!(l.get(2).ok().flatten(), Some(out("on disk")));
        assert_eq!(l.spooled_bytes(), 11);
    }

    #[test]
    fn a_recovered_log_has_what_was_not_acknowledged() {
        let (d, mut l) = log(1 << 20);
        for i in 0..10 {
            l.append(out(&format!("m{i}")), (i + 1) * 100).ok();
        }
        l.ack(4).ok();
        let path = d.path().join("s.spool");
        // As after a crash: the store knew of acks up to 3 only.
        drop(l);
        let mut r = OutputLog::recover(path.clone(), 1 << 20, 3).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.last_seq(), 10);
        assert_eq!(r.acked(), 3);
        assert_eq!(r.stream_offset(), 1000);
        assert_eq!(r.get(4).ok().flatten(), Some(out("m3")));
        assert_eq!(r.get(10).ok().flatten(), Some(out("m9")));
        // Appending goes on with the next seq.
        assert_eq!(r.append(out("m10"), 1100).ok(), Some(11));
    }

    #[test]
    fn a_torn_record_is_dropped_and_checkpoints_keep_the_numbering() {
        let (d, mut l) = log(1 << 20);
        l.append(out("one"), 10).ok();
        l.append(out("two"), 20).ok();
        l.ack(2).ok(); // a checkpoint after the acked records
        l.append(out("three"), 30).ok();
        let path = d.path().join("s.spool");
        let end = l.end;
        drop(l);
        // A crash in the middle of writing a fourth record.
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        f.write_all_at(&[0u8; 7], end).ok();
        drop(f);
        let mut r = OutputLog::recover(path, 1 << 20, 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.acked(), 2);
        assert_eq!(r.last_seq(), 3);
        assert_eq!(r.stream_offset(), 30);
        assert_eq!(r.get(3).ok().flatten(), Some(out("three")));
        assert_eq!(r.append(out("four"), 40).ok(), Some(4));
        assert_eq!(r.get(4).ok().flatten(), Some(out("four")));
    }

    #[test]
    fn a_large_acked_spool_starts_over_and_repeated_acks_write_nothing() {
        let (_d, mut l) = log(0);
        let mib = Entry::Output {
            stream: Stream::Data,
            end: true,
            bytes: Bytes::from(vec![7u8; 1 << 20]),
        };
        l.append(out("small"), 1).ok();
        l.ack(1).ok();
        let after_first = l.end;
        assert!(after_first > RECORD_HEADER as u64, "small: appended");
        l.ack(1).ok();
        assert_eq!(l.end, after_first, "nothing new acked, nothing written");
        for i in 0..9u64 {
            l.append(mib.clone(), 2 + i).ok();
        }
        assert!(l.end >= TRUNCATE_AT);
        l.ack(10).ok();
        assert_eq!(l.end, RECORD_HEADER as u64, "large: one checkpoint left");
        assert_eq!((l.acked(), l.pending_bytes()), (10, 0));
    }

    #[test]
    fn a_missing_spool_recovers_empty() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let r = OutputLog::recover(dir.path().join("none.spool"), 10, 5);
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.acked(), r.last_seq()), (5, 5));
    }
}
