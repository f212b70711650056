//! A session's input history: every input message it applied, in seq
//! order, in a file beside its output spool (`{id}.inputs`).
//!
//! The stdin writer records each input before it writes it to the driver,
//! so every applied input is in the history. A record is the payload's
//! length (u32, little endian) and the payload; end of input is not
//! recorded (a fork decides its own). The file is written unbuffered: a
//! controller killed with SIGKILL loses nothing the kernel was handed, and
//! a record torn by a crash is cut off when the file is opened again.
//!
//! The history is bounded (`fork_history_max`). At the bound a marker
//! record (length `u32::MAX`) is written and nothing more: forks past that
//! point are refused, earlier ones still work.

use bytes::Bytes;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::points::POINT_SIZE;

const HEADER: u64 = 4;
const MARKER: u32 = u32::MAX;

/// How far the history has got, shared with the session actor, which
/// answers fork requests.
#[derive(Debug, Default)]
pub struct HistoryState {
    /// Inputs recorded: seqs 1 to this.
    pub count: AtomicU64,
    /// The bound was reached (or the file failed): inputs after `count`
    /// are not kept.
    pub truncated: AtomicBool,
}

/// The writing end, owned by the stdin writer.
pub struct InputHistory {
    file: Option<File>,
    path: PathBuf,
    /// What the history costs so far, charged against `max`: each record's
    /// header and payload, and the replay point its input will take.
    cost: u64,
    max: u64,
    state: Arc<HistoryState>,
}

impl InputHistory {
    /// Opens the history at `path`, keeping the records already there
    /// (after a restart) and cutting off a torn last one; a new one is
    /// created with its first input. A file that cannot be opened leaves
    /// the session unforkable from there on, which is logged, not fatal.
    pub fn open(path: PathBuf, max: u64) -> InputHistory {
        let state = Arc::new(HistoryState::default());
        let mut h = InputHistory {
            file: None,
            path,
            cost: 0,
            max,
            state,
        };
        if h.path.exists() {
            h.open_file();
        }
        h
    }

    fn open_file(&mut self) {
        match self.reopen() {
            Ok(file) => self.file = Some(file),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot keep the input history");
                self.state.truncated.store(true, Ordering::Release);
            }
        }
    }

    fn reopen(&mut self) -> io::Result<File> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let (count, valid, truncated) = scan(&data);
        file.set_len(valid)?;
        file.seek(SeekFrom::End(0))?;
        self.cost = valid + count * POINT_SIZE as u64;
        self.state.count.store(count, Ordering::Release);
        self.state.truncated.store(truncated, Ordering::Release);
        Ok(file)
    }

    pub fn state(&self) -> Arc<HistoryState> {
        self.state.clone()
    }

    /// Records input `seq`. One already recorded (a client's resend after
    /// a restart) is skipped; past the bound, or after a gap, or when the
    /// file fails, the history stops there.
    pub fn record(&mut self, seq: u64, bytes: &[u8]) {
        if self.file.is_none() && !self.state.truncated.load(Ordering::Acquire) {
            self.open_file();
        }
        let state = &self.state;
        if state.truncated.load(Ordering::Acquire) {
            return;
        }
        let count = state.count.load(Ordering::Acquire);
        if seq <= count {
            return;
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let cost = HEADER + bytes.len() as u64 + POINT_SIZE as u64;
        let fits =
            self.cost + cost <= self.max && u32::try_from(bytes.len()).is_ok_and(|n| n < MARKER);
        if Some(seq) != count.checked_add(1) || !fits {
            if let Err(e) = file.write_all(&MARKER.to_le_bytes()) {
                tracing::warn!(error = %e, "cannot mark the input history as full");
            }
            state.truncated.store(true, Ordering::Release);
            return;
        }
        let mut record = Vec::with_capacity(bytes.len() + HEADER as usize);
        record.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        record.extend_from_slice(bytes);
        match file.write_all(&record) {
            Ok(()) => {
                self.cost += cost;
                state.count.store(seq, Ordering::Release);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot write the input history");
                state.truncated.store(true, Ordering::Release);
                self.file = None;
            }
        }
    }
}

/// Records, valid length and whether the marker was reached.
fn scan(data: &[u8]) -> (u64, u64, bool) {
    let (mut at, mut count) = (0usize, 0u64);
    while let Some(head) = data.get(at..at + HEADER as usize) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if len == MARKER {
            return (count, at as u64 + HEADER, true);
        }
        let end = at + HEADER as usize + len as usize;
        if end > data.len() {
            break;
        }
        at = end;
        count += 1;
    }
    (count, at as u64, false)
}

/// The first `k` inputs of the history at `path`; fewer if it holds fewer.
/// A session that has taken no input has no file yet (it is made with the
/// first record): that is an empty history, not an error.
pub fn read(path: &Path, k: u64) -> io::Result<Vec<Bytes>> {
    let data = match std::fs::read(path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    let mut at = 0usize;
    while (out.len() as u64) < k {
        let Some(head) = data.get(at..at + HEADER as usize) else {
            break;
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if len == MARKER {
            break;
        }
        let start = at + HEADER as usize;
        let Some(payload) = data.get(start..start + len as usize) else {
            break;
        };
        out.push(Bytes::copy_from_slice(payload));
        at = start + len as usize;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_session_without_input_has_an_empty_history() {
        let d = dir();
        let read = read(&d.path().join("never.inputs"), 3).unwrap_or_else(|e| panic!("{e}"));
        assert!(read.is_empty());
    }

    #[test]
    fn records_in_order_skip_resends_and_survive_reopening_and_a_torn_tail() {
        let d = dir();
        let path = d.path().join("s.inputs");
        let mut h = InputHistory::open(path.clone(), 1 << 20);
        h.record(1, b"one");
        h.record(2, b"");
        h.record(2, b"again"); // a resend: already recorded
        h.record(3, b"three");
        drop(h);
        // A crash in the middle of a record.
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        f.write_all(&[9, 0, 0, 0, b'x'])
            .unwrap_or_else(|e| panic!("{e}"));
        drop(f);
        let mut h = InputHistory::open(path.clone(), 1 << 20);
        assert_eq!(h.state().count.load(Ordering::Acquire), 3);
        h.record(4, b"four");
        let got = read(&path, 10).unwrap_or_else(|e| panic!("{e}"));
        let want: Vec<Bytes> = ["one", "", "three", "four"]
            .iter()
            .map(|s| Bytes::from(*s))
            .collect();
        assert_eq!(got, want);
        assert_eq!(read(&path, 2).map(|v| v.len()).ok(), Some(2));
    }

    #[test]
    fn the_bound_and_a_gap_end_the_history_but_keep_what_is_there() {
        let d = dir();
        let path = d.path().join("s.inputs");
        let per = HEADER + 10 + POINT_SIZE as u64;
        let mut h = InputHistory::open(path.clone(), 2 * per + 5);
        h.record(1, b"0123456789");
        h.record(2, b"0123456789");
        h.record(3, b"0123456789"); // over the bound
        h.record(4, b"x");
        let s = h.state();
        assert_eq!(s.count.load(Ordering::Acquire), 2);
        assert!(s.truncated.load(Ordering::Acquire));
        drop(h);
        let h = InputHistory::open(path.clone(), 1 << 20);
        assert!(
            h.state().truncated.load(Ordering::Acquire),
            "the marker survives"
        );
        assert_eq!(read(&path, 5).map(|v| v.len()).ok(), Some(2));

        let gap = d.path().join("g.inputs");
        let mut h = InputHistory::open(gap, 1 << 20);
        h.record(1, b"a");
        h.record(3, b"c");
        assert!(h.state().truncated.load(Ordering::Acquire));
        assert_eq!(h.state().count.load(Ordering::Acquire), 1);
    }
}
