//! Recycled buffers for the output frames the controller decodes.
//!
//! A streaming session needs one buffer per frame (64 KiB for a typical
//! `send()`), which lives until a client acknowledges the frame or it is
//! spooled, and then goes back to malloc. glibc returns such memory to the
//! kernel as it goes (heap trimming), so the next frame's buffer
//! page-faults all of its pages in again: in a 1 GiB stream the faults and
//! the kernel zeroing pages were about a tenth of the controller's CPU.
//! Frames the decoder assembles therefore take their buffer from here, and
//! give it back here when the last `Bytes` pointing into it is dropped.
//!
//! Bounds: at most [`POOL_BYTES`] of buffers are kept, process-wide, so
//! the pool costs the same whether one session streams or two hundred; a
//! buffer given back to a full pool pushes out the oldest one. Buffers
//! under [`MIN_POOLED`] bytes are not pooled at all (malloc serves those
//! from its bins, without faults). Once output stops flowing, the
//! [`trim`](crate::mem::trim) task empties the pool, so an idle controller
//! keeps none of it.

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

/// The most buffer capacity the pool keeps.
pub const POOL_BYTES: usize = 2 << 20;
/// Smaller buffers are neither taken from nor given to the pool.
pub const MIN_POOLED: usize = 16 << 10;

struct Pool {
    bufs: VecDeque<Vec<u8>>,
    bytes: usize,
}

/// A bounded set of spare buffers; the controller's is [`FRAMES`].
pub struct FramePool {
    inner: Mutex<Pool>,
}

/// The pool the frame decoder uses.
pub static FRAMES: FramePool = FramePool::new();

impl FramePool {
    pub const fn new() -> FramePool {
        FramePool {
            inner: Mutex::new(Pool {
                bufs: VecDeque::new(),
                bytes: 0,
            }),
        }
    }

    // Held only for a push or a pop, never across an await. A panic while
    // it was held can at worst leave a wrong byte count, so a poisoned lock
    // is used as is.
    fn lock(&self) -> MutexGuard<'_, Pool> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty buffer with room for `len` bytes: a pooled one if one fits
    /// (at most twice `len`, so a small frame does not pin a large buffer),
    /// a new one otherwise.
    pub fn take(&self, len: usize) -> Vec<u8> {
        if len >= MIN_POOLED {
            let mut p = self.lock();
            let fits = |b: &Vec<u8>| b.capacity() >= len && b.capacity() / 2 <= len;
            if let Some(i) = p.bufs.iter().rposition(fits) {
                if let Some(buf) = p.bufs.remove(i) {
                    p.bytes -= buf.capacity();
                    return buf;
                }
            }
        }
        Vec::with_capacity(len)
    }

    /// The filled buffer as `Bytes`; a poolable buffer comes back to the
    /// pool when the last `Bytes` sharing it is dropped.
    pub fn freeze(&'static self, buf: Vec<u8>) -> Bytes {
        if buf.capacity() < MIN_POOLED {
            return Bytes::from(buf);
        }
        Bytes::from_owner(Pooled { buf, home: self })
    }

    /// Frees every pooled buffer (output has stopped flowing).
    pub fn clear(&self) {
        let bufs = {
            let mut p = self.lock();
            p.bytes = 0;
            std::mem::take(&mut p.bufs)
        };
        // Freed here, after the lock is released.
        drop(bufs);
    }

    /// Capacity held by the pool now.
    #[cfg(test)]
    fn pooled_bytes(&self) -> usize {
        self.lock().bytes
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        buf.clear();
        if buf.capacity() > POOL_BYTES {
            return;
        }
        let mut evicted = Vec::new();
        {
            let mut p = self.lock();
            while p.bytes + buf.capacity() > POOL_BYTES {
                match p.bufs.pop_front() {
                    Some(old) => {
                        p.bytes -= old.capacity();
                        evicted.push(old);
                    }
                    None => break,
                }
            }
            p.bytes += buf.capacity();
            p.bufs.push_back(buf);
        }
        // The evicted buffers are freed here, after the lock is released.
    }
}

impl Default for FramePool {
    fn default() -> FramePool {
        FramePool::new()
    }
}

struct Pooled {
    buf: Vec<u8>,
    home: &'static FramePool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.home.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static POOL: FramePool = FramePool::new();

    #[test]
    fn buffers_come_back_within_the_bound_and_clear_empties_the_pool() {
        // Small buffers bypass the pool.
        let small = POOL.freeze(POOL.take(100));
        drop(small);
        assert_eq!(POOL.pooled_bytes(), 0);

        // A large one comes back once its last clone is gone, and is
        // handed out again for a frame of about its size.
        let mut buf = POOL.take(64 << 10);
        buf.extend_from_slice(&[7u8; 64 << 10]);
        let ptr = buf.as_ptr();
        let bytes = POOL.freeze(buf);
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(POOL.pooled_bytes(), 0, "a slice still holds it");
        assert_eq!(&slice[..], &[7u8; 10]);
        drop(slice);
        assert!(POOL.pooled_bytes() >= 64 << 10);
        // Not for a frame less than half its size.
        let other = POOL.take(20 << 10);
        assert_ne!(other.as_ptr(), ptr);
        let again = POOL.take(60 << 10);
        assert_eq!(again.as_ptr(), ptr);
        assert!(again.is_empty());
        assert_eq!(POOL.pooled_bytes(), 0);

        // The bound holds however many come back at once.
        let many: Vec<Bytes> = (0..64).map(|_| POOL.freeze(POOL.take(64 << 10))).collect();
        drop(many);
        assert!(POOL.pooled_bytes() <= POOL_BYTES);
        assert!(POOL.pooled_bytes() > POOL_BYTES - (64 << 10));

        POOL.clear();
        assert_eq!(POOL.pooled_bytes(), 0);
    }
}
