//! A session's output log: every output message gets a sequence number
//! (1, 2, 3, …) and is kept until a client acknowledges it.
//!
//! Memory is bounded: the newest messages stay in memory up to `window`
//! bytes; older unacknowledged ones are spilled to an append-only spool file,
//! with an in-memory index from sequence to file offset. Acknowledging trims
//! both, and the spool file is truncated whenever it holds nothing unread.
//!
//! The log never drops anything on its own. The bound on what it holds in
//! total (memory plus spool) is enforced by its owner, which stops reading
//! the container when [`OutputLog::pending_bytes`] reaches the session's cap.

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

/// Spool record header: stream tag (0 = exit), end flag, payload length.
const RECORD_HEADER: usize = 1 + 1 + 4;

struct Spool {
    path: PathBuf,
    file: Option<File>,
    /// `(seq, offset, payload length)` of each record still unread, oldest first.
    index: VecDeque<(u64, u64, u64)>,
    /// Where the next record goes.
    end: u64,
    /// Payload bytes of the unread records.
    bytes: u64,
}

impl Spool {
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
            self.file = Some(f);
        }
        match &self.file {
            Some(f) => Ok(f),
            None => Err(io::Error::other("spool file not open")),
        }
    }

    fn append(&mut self, seq: u64, entry: &Entry) -> io::Result<()> {
        let (tag, end, payload): (u8, bool, Bytes) = match entry {
            Entry::Output { stream, end, bytes } => (*stream as u8, *end, bytes.clone()),
            Entry::Exit(info) => (0, true, Bytes::from(serde_json::to_vec(info)?)),
        };
        let len = u32::try_from(payload.len()).map_err(|_| io::Error::other("record too large"))?;
        let mut header = [0u8; RECORD_HEADER];
        header[0] = tag;
        header[1] = end as u8;
        header[2..6].copy_from_slice(&len.to_be_bytes());
        let at = self.end;
        let f = self.file()?;
        f.write_all_at(&header, at)?;
        f.write_all_at(&payload, at + RECORD_HEADER as u64)?;
        self.index.push_back((seq, at, entry.len() as u64));
        self.end = at + (RECORD_HEADER + payload.len()) as u64;
        self.bytes += entry.len() as u64;
        Ok(())
    }

    fn read(&mut self, seq: u64) -> io::Result<Option<Entry>> {
        let Some(&(first, _, _)) = self.index.front() else {
            return Ok(None);
        };
        let Some(&(s, at, _)) = seq
            .checked_sub(first)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.index.get(i))
        else {
            return Ok(None);
        };
        debug_assert_eq!(s, seq);
        let f = self.file()?;
        let mut header = [0u8; RECORD_HEADER];
        f.read_exact_at(&mut header, at)?;
        let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
        let mut payload = vec![0u8; len];
        f.read_exact_at(&mut payload, at + RECORD_HEADER as u64)?;
        let entry = match Stream::from_u8(header[0]) {
            Some(stream) => Entry::Output {
                stream,
                end: header[1] != 0,
                bytes: Bytes::from(payload),
            },
            None => Entry::Exit(serde_json::from_slice(&payload)?),
        };
        Ok(Some(entry))
    }

    /// Forgets records up to `seq`; empties the file when nothing is left.
    fn trim(&mut self, seq: u64) -> io::Result<()> {
        while let Some(&(s, _, len)) = self.index.front() {
            if s > seq {
                break;
            }
            self.index.pop_front();
            self.bytes = self.bytes.saturating_sub(len);
        }
        if self.index.is_empty() && self.end > 0 {
            self.bytes = 0;
            self.end = 0;
            if let Some(f) = &self.file {
                f.set_len(0)?;
            }
        }
        Ok(())
    }
}

pub struct OutputLog {
    /// Seq the next appended entry gets.
    next_seq: u64,
    /// Everything up to here has been acknowledged and forgotten.
    acked: u64,
    /// The newest entries, `(seq, entry)`, contiguous.
    mem: VecDeque<(u64, Entry)>,
    mem_bytes: usize,
    window: usize,
    /// Entries older than `mem`'s first and newer than `acked`.
    spool: Spool,
}

impl OutputLog {
    pub fn new(spool_path: PathBuf, window: usize) -> OutputLog {
        OutputLog {
            next_seq: 1,
            acked: 0,
            mem: VecDeque::new(),
            mem_bytes: 0,
            window,
            spool: Spool {
                path: spool_path,
                file: None,
                index: VecDeque::new(),
                end: 0,
                bytes: 0,
            },
        }
    }

    /// The highest seq appended so far (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Messages not yet acknowledged.
    pub fn pending_messages(&self) -> u64 {
        self.last_seq() - self.acked
    }

    /// Payload bytes not yet acknowledged, in memory and spooled.
    pub fn pending_bytes(&self) -> u64 {
        self.mem_bytes as u64 + self.spool.bytes
    }

    pub fn spooled_bytes(&self) -> u64 {
        self.spool.bytes
    }

    /// Appends an entry and returns its seq. Spills the oldest in-memory
    /// entries to the spool while memory holds more than the window.
    pub fn append(&mut self, entry: Entry) -> io::Result<u64> {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.mem_bytes += entry.len();
        self.mem.push_back((seq, entry));
        while self.mem_bytes > self.window && self.mem.len() > 1 {
            let Some((s, e)) = self.mem.pop_front() else {
                break;
            };
            self.mem_bytes -= e.len();
            self.spool.append(s, &e)?;
        }
        Ok(seq)
    }

    /// The entry with this seq, if it is still held.
    pub fn get(&mut self, seq: u64) -> io::Result<Option<Entry>> {
        if seq <= self.acked || seq >= self.next_seq {
            return Ok(None);
        }
        if let Some(&(first, _)) = self.mem.front() {
            if seq >= first {
                let i = (seq - first) as usize;
                return Ok(self.mem.get(i).map(|(_, e)| e.clone()));
            }
        }
        self.spool.read(seq)
    }

    /// Forgets everything up to and including `seq`. Acks beyond the last
    /// seq are clamped; acks at or below the current one change nothing.
    pub fn ack(&mut self, seq: u64) -> io::Result<()> {
        let seq = seq.min(self.last_seq());
        if seq <= self.acked {
            return Ok(());
        }
        self.acked = seq;
        while let Some((s, e)) = self.mem.front() {
            if *s > seq {
                break;
            }
            self.mem_bytes -= e.len();
            self.mem.pop_front();
        }
        self.spool.trim(seq)
    }

    /// Deletes the spool file.
    pub fn remove_spool(&mut self) {
        self.spool.file = None;
        if let Err(e) = std::fs::remove_file(&self.spool.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.spool.path.display(), error = %e, "cannot remove spool");
            }
        }
    }
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
        assert_eq!(l.append(out("a")).ok(), Some(1));
        assert_eq!(l.append(out("bb")).ok(), Some(2));
        assert_eq!(l.pending_bytes(), 3);
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
    fn old_entries_spill_to_disk_and_read_back_in_order() {
        let (_d, mut l) = log(10);
        let msgs: Vec<String> = (0..50).map(|i| format!("message {i}")).collect();
        for m in &msgs {
            l.append(out(m)).ok();
        }
        l.append(Entry::Exit(ExitReason::Exited { code: 3 }.into()))
            .ok();
        assert!(l.spooled_bytes() > 0, "small window must spill");
        assert!(l.mem_bytes <= 64 + 10);
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(l.get(i as u64 + 1).ok().flatten(), Some(out(m)));
        }
        assert!(matches!(l.get(51).ok().flatten(), Some(Entry::Exit(_))));
        let total: usize = msgs.iter().map(|m| m.len()).sum();
        assert_eq!(l.pending_bytes(), total as u64 + 64);
        // Acking part of the spool keeps the rest readable.
        l.ack(20).ok();
        assert_eq!(l.get(21).ok().flatten(), Some(out(&msgs[20])));
        l.ack(51).ok();
        assert_eq!(l.pending_bytes(), 0);
        assert_eq!(l.spool.end, 0, "fully acked spool is truncated");
    }

    #[test]
    fn spool_is_reused_after_truncation() {
        let (_d, mut l) = log(0);
        l.append(out("one")).ok();
        l.append(out("two")).ok();
        l.ack(2).ok();
        l.append(out("three")).ok();
        l.append(out("four")).ok();
        assert_eq!(l.get(3).ok().flatten(), Some(out("three")));
        assert_eq!(l.get(4).ok().flatten(), Some(out("four")));
        l.remove_spool();
    }
}
