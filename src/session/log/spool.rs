//! A session's spool file: append-only records, read back by their place
//! in the file, and scanned once after a restart.
//!
//! Record format: `seq u64 | stream offset u64 | tag u8 | end u8 | len u32 |
//! payload`, big-endian. Tag 1-3 is a [`Stream`](crate::wire::api::Stream),
//! 0 the exit (JSON), 255 a checkpoint. The stream offset is how far into
//! the driver's frame stream the log reached with this record: where the
//! driver resumes after a crash.
//!
//! The file is created on the first write, so a session whose output never
//! needs spooling has none.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::metrics;

pub const RECORD_HEADER: usize = 8 + 8 + 1 + 1 + 4;
pub const TAG_EXIT: u8 = 0;
pub const TAG_CHECKPOINT: u8 = 255;

/// A record's header, as written and as found by a scan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Header {
    pub seq: u64,
    pub offset: u64,
    pub tag: u8,
    pub end: bool,
    pub len: u32,
}

impl Header {
    fn encode(&self) -> [u8; RECORD_HEADER] {
        let mut h = [0u8; RECORD_HEADER];
        h[0..8].copy_from_slice(&self.seq.to_be_bytes());
        h[8..16].copy_from_slice(&self.offset.to_be_bytes());
        h[16] = self.tag;
        h[17] = self.end as u8;
        h[18..22].copy_from_slice(&self.len.to_be_bytes());
        h
    }

    fn decode(h: &[u8; RECORD_HEADER]) -> Header {
        let be64 = |b: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[..8]);
            u64::from_be_bytes(a)
        };
        Header {
            seq: be64(&h[0..8]),
            offset: be64(&h[8..16]),
            tag: h[16],
            end: h[17] != 0,
            len: u32::from_be_bytes([h[18], h[19], h[20], h[21]]),
        }
    }
}

pub struct Spool {
    path: PathBuf,
    file: Option<File>,
    /// Where the next record goes.
    end: u64,
}

impl Spool {
    pub fn new(path: PathBuf) -> Spool {
        Spool {
            path,
            file: None,
            end: 0,
        }
    }

    #[cfg(test)]
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Bytes in the file.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Opens an existing spool and calls `each` with every whole record's
    /// place and header, in file order. A record torn by a crash is cut
    /// off. `Ok(None)` if there is no file.
    pub fn scan(path: PathBuf, mut each: impl FnMut(u64, Header)) -> io::Result<Option<Spool>> {
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let size = file.metadata()?.len();
        let mut at = 0u64;
        while at + RECORD_HEADER as u64 <= size {
            let mut h = [0u8; RECORD_HEADER];
            file.read_exact_at(&mut h, at)?;
            let h = Header::decode(&h);
            let next = at + RECORD_HEADER as u64 + u64::from(h.len);
            if next > size {
                break; // torn by the crash: the driver still holds it
            }
            each(at, h);
            at = next;
        }
        if at < size {
            file.set_len(at)?;
        }
        Ok(Some(Spool {
            path,
            file: Some(file),
            end: at,
        }))
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

    /// Appends a record and returns where it starts. It is in the kernel's
    /// page cache when this returns: it survives the controller, not the
    /// machine.
    pub fn write(
        &mut self,
        seq: u64,
        offset: u64,
        tag: u8,
        end: bool,
        payload: &[u8],
    ) -> io::Result<u64> {
        let len = u32::try_from(payload.len()).map_err(|_| io::Error::other("record too large"))?;
        let h = Header {
            seq,
            offset,
            tag,
            end,
            len,
        }
        .encode();
        let at = self.end;
        let f = self.file()?;
        f.write_all_at(&h, at)?;
        f.write_all_at(payload, at + RECORD_HEADER as u64)?;
        self.end = at + (RECORD_HEADER + payload.len()) as u64;
        metrics::add(&metrics::METRICS.bytes_spooled, payload.len() as u64);
        Ok(at)
    }

    /// Reads back the record at `at`: its header and payload.
    pub fn read(&mut self, at: u64) -> io::Result<(Header, Vec<u8>)> {
        let f = self.file()?;
        let mut h = [0u8; RECORD_HEADER];
        f.read_exact_at(&mut h, at)?;
        let h = Header::decode(&h);
        let mut payload = vec![0u8; h.len as usize];
        f.read_exact_at(&mut payload, at + RECORD_HEADER as u64)?;
        Ok((h, payload))
    }

    /// Empties the file (when nothing in it is needed any more).
    pub fn clear(&mut self) -> io::Result<()> {
        if let Some(f) = &self.file {
            f.set_len(0)?;
        }
        self.end = 0;
        Ok(())
    }

    /// Deletes the file.
    pub fn remove(&mut self) {
        self.file = None;
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove spool");
            }
        }
    }
}
