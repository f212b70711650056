//! A session's replay points: where in its output stream the function
//! took each input, and a digest of the output between two such places
//! (`{id}.points`, beside the spool).
//!
//! The driver queues each CREDIT in order with the output frames (see
//! `driver/_bento_wire.py`, `credit`), so a CREDIT `n` at stream offset
//! `o` says: the function had made the output up to `o` when it took input
//! `n`, and nothing after. That is what a fork skips (`o` of input `K+1`
//! for `--at-input K`), and the digests are what it checks its replay
//! against. Two inputs taken with no output between may share one CREDIT.
//!
//! A record is `consumed`, `offset`, `digest` (u64 each, little endian)
//! and a flag byte: 1 when the digest is known. After a controller
//! restart the segment in progress was partly taken in by the process
//! that died, so its digest is unknown and is not checked.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::Xxh3;

use crate::wire::api::Stream;

/// Bytes per record.
pub const POINT_SIZE: usize = 25;

/// One CREDIT as the session saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// Inputs the function had taken, this one included.
    pub consumed: u64,
    /// The output stream offset when it took it.
    pub offset: u64,
    /// The digest of the output since the previous point, if known.
    pub digest: Option<u64>,
}

/// The digest of no output.
pub fn empty_digest() -> u64 {
    Xxh3::new().digest()
}

/// The recording end, owned by the session actor.
pub struct PointLog {
    /// Opened with the first point.
    file: Option<File>,
    path: PathBuf,
    /// The file could not be written: no more points.
    failed: bool,
    hasher: Xxh3,
    /// The segment in progress was hashed from its start.
    known: bool,
    /// Where the segment in progress starts.
    from: u64,
    consumed: u64,
    /// Records written.
    count: u64,
    max: u64,
}

impl PointLog {
    /// A new log, or (`restored`) the one a session kept before a restart.
    pub fn open(path: PathBuf, restored: bool, max: u64) -> PointLog {
        let mut log = PointLog {
            file: None,
            path: path.clone(),
            failed: false,
            hasher: Xxh3::new(),
            known: !restored,
            from: 0,
            consumed: 0,
            count: 0,
            max,
        };
        if restored {
            match read(&path, u64::MAX) {
                Ok(points) => {
                    log.count = points.len() as u64;
                    if let Some(last) = points.last() {
                        log.from = last.offset;
                        log.consumed = last.consumed;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the replay points"),
            }
        }
        log
    }

    /// The file, opened (and a record torn by a crash cut off) on first use.
    fn file(&mut self) -> Option<&mut File> {
        if self.file.is_none() && !self.failed {
            let path = &self.path;
            let count = self.count;
            let opened = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| OpenOptions::new().create(true).append(true).open(path))
                .and_then(|f| {
                    f.set_len(count * POINT_SIZE as u64)?;
                    Ok(f)
                });
            match opened {
                Ok(f) => self.file = Some(f),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot keep replay points");
                    self.failed = true;
                }
            }
        }
        self.file.as_mut()
    }

    /// Hashes one output frame of the driver's stream.
    pub fn output(&mut self, stream: Stream, end: bool, bytes: &[u8]) {
        self.hasher.update(&[stream as u8, u8::from(end)]);
        self.hasher.update(&(bytes.len() as u64).to_le_bytes());
        self.hasher.update(bytes);
    }

    /// A CREDIT: records the point (if `consumed` grew) and starts the
    /// next segment. Returns the point and the count before it.
    pub fn consumed(&mut self, consumed: u64, offset: u64) -> Option<(Point, u64)> {
        if consumed <= self.consumed {
            return None;
        }
        let point = Point {
            consumed,
            offset,
            digest: self.known.then(|| self.hasher.digest()),
        };
        let before = self.consumed;
        self.consumed = consumed;
        self.hasher.reset();
        self.known = true;
        self.from = offset;
        if (self.count + 1) * POINT_SIZE as u64 > self.max {
            // The history's bound: no fork reaches here.
            self.failed = true;
            self.file = None;
        } else if let Some(file) = self.file() {
            if let Err(e) = file.write_all(&encode(&point)) {
                tracing::warn!(error = %e, "cannot write a replay point");
                self.failed = true;
                self.file = None;
            } else {
                self.count += 1;
            }
        }
        Some((point, before))
    }

    /// Inputs taken, by the last CREDIT.
    pub fn consumed_so_far(&self) -> u64 {
        self.consumed
    }

    /// Records written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Where the segment in progress starts, and its digest so far.
    pub fn current(&self) -> (u64, Option<u64>) {
        (self.from, self.known.then(|| self.hasher.digest()))
    }
}

fn encode(p: &Point) -> [u8; POINT_SIZE] {
    let mut out = [0u8; POINT_SIZE];
    out[..8].copy_from_slice(&p.consumed.to_le_bytes());
    out[8..16].copy_from_slice(&p.offset.to_le_bytes());
    out[16..24].copy_from_slice(&p.digest.unwrap_or(0).to_le_bytes());
    out[24] = u8::from(p.digest.is_some());
    out
}

/// The first `n` points at `path` (fewer if it holds fewer).
pub fn read(path: &Path, n: u64) -> io::Result<Vec<Point>> {
    let data = std::fs::read(path)?;
    let u64_at = |c: &[u8], i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&c[i..i + 8]);
        u64::from_le_bytes(b)
    };
    Ok(data
        .chunks_exact(POINT_SIZE)
        .take(usize::try_from(n).unwrap_or(usize::MAX))
        .map(|c| Point {
            consumed: u64_at(c, 0),
            offset: u64_at(c, 8),
            digest: (c[24] == 1).then(|| u64_at(c, 16)),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_carry_the_digest_of_the_output_between_them_and_survive_a_restart() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = d.path().join("s.points");
        let mut log = PointLog::open(path.clone(), false, 1 << 20);
        log.output(Stream::Data, true, b"hello");
        let (p1, before) = log.consumed(1, 13).unwrap_or_else(|| panic!("a point"));
        assert_eq!(before, 0);
        assert!(log.consumed(1, 13).is_none(), "no new input taken");
        let (p2, _) = log.consumed(3, 13).unwrap_or_else(|| panic!("a point"));
        assert_eq!(p2.digest, Some(empty_digest()));
        log.output(Stream::Data, true, b"world");
        let (from, _) = log.current();
        assert_eq!(from, 13);
        drop(log);

        let mut other = PointLog::open(d.path().join("o.points"), false, 1 << 20);
        other.output(Stream::Data, true, b"hellp");
        let (q1, _) = other.consumed(1, 13).unwrap_or_else(|| panic!("a point"));
        assert_ne!(q1.digest, p1.digest, "different output, different digest");

        let mut back = PointLog::open(path.clone(), true, 1 << 20);
        assert_eq!(back.count(), 2);
        assert_eq!(
            back.current(),
            (13, None),
            "the segment in progress is unknown"
        );
        let (p3, before) = back.consumed(4, 26).unwrap_or_else(|| panic!("a point"));
        assert_eq!((before, p3.digest), (3, None));
        let all = read(&path, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(all, vec![p1, p2, p3]);
    }
}
