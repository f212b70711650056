//! Frames on the byte streams: the header, the incremental decoder over
//! the container's stdout, and encoding for its stdin.
//!
//! Every frame is an 8-byte header — kind, flags, two reserved zero bytes,
//! payload length (u32, big-endian) — then the payload. The container's
//! stdout is untrusted: the decoder bounds every length, rejects anything
//! that does not parse, and never buffers more than one frame.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{Kind, Sync, FLAG_END, HEADER_LEN, MAX_PAYLOAD, NONCE_LEN, SYNC_LEN};

/// One decoded frame from the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub end: bool,
    pub payload: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("frame header has non-zero reserved bytes")]
    Reserved,
    #[error("frame of {0} bytes is larger than the 1 MiB limit")]
    TooLarge(u32),
    #[error("stream ended inside a frame")]
    Truncated,
    #[error("{0} frame of {1} bytes, which is not its size")]
    BadPayload(Kind, usize),
}

/// Incremental decoder over the bytes of the container's stdout, which arrive
/// in chunks of any size.
///
/// Each frame's payload is copied once, into a buffer of exactly its size
/// from the frame pool (`mem::frame_pool`), so that a frame never pins
/// the engine's read buffer it arrived in and a stream's frames reuse
/// memory instead of faulting in new pages.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Fed bytes not taken into a frame yet (the tail of the last chunk).
    rest: Bytes,
    /// A header split across chunks, collected here.
    head: Vec<u8>,
    /// The frame whose header has been read and whose payload is arriving.
    filling: Option<Filling>,
}

#[derive(Debug)]
struct Filling {
    kind: Kind,
    end: bool,
    len: usize,
    payload: Vec<u8>,
}

/// A frame header, checked: a known kind, zero reserved bytes, and a
/// length within [`MAX_PAYLOAD`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    /// The `END` flag: the last frame of a message.
    pub end: bool,
    pub len: usize,
}

impl Header {
    /// Parses a header of either direction.
    pub fn parse(h: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
        let kind = Kind::from_u8(h[0]).ok_or(FrameError::UnknownKind(h[0]))?;
        if h[2] != 0 || h[3] != 0 {
            return Err(FrameError::Reserved);
        }
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        if len as usize > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(len));
        }
        Ok(Header {
            kind,
            end: h[1] & FLAG_END != 0,
            len: len as usize,
        })
    }

    /// Parses a header the driver wrote: controller → driver kinds are
    /// unknown here (only a function forging frames could write them).
    fn parse_from_driver(h: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
        let header = Header::parse(h)?;
        if !header.kind.is_from_driver() {
            return Err(FrameError::UnknownKind(h[0]));
        }
        Ok(header)
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Feeds more bytes. Call [`Decoder::next_frame`] until it returns `None`
    /// before feeding again, so the decoder never holds more than one frame
    /// plus one chunk.
    pub fn feed(&mut self, bytes: Bytes) {
        if self.rest.is_empty() {
            self.rest = bytes;
        } else {
            // Fed twice without decoding in between (seek_sync's callers):
            // keep both, in order.
            let mut joined = BytesMut::with_capacity(self.rest.len() + bytes.len());
            joined.extend_from_slice(&self.rest);
            joined.extend_from_slice(&bytes);
            self.rest = joined.freeze();
        }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed. After
    /// an error the stream is corrupt; the decoder's state is unspecified.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.filling.is_none() {
            let Some(header) = self.take_header() else {
                return Ok(None);
            };
            let Header { kind, end, len } = Header::parse_from_driver(&header)?;
            let payload = crate::mem::frame_pool::FRAMES.take(len);
            self.filling = Some(Filling {
                kind,
                end,
                len,
                payload,
            });
        }
        let Some(f) = self.filling.as_mut() else {
            return Ok(None);
        };
        let n = (f.len - f.payload.len()).min(self.rest.len());
        f.payload.extend_from_slice(&self.rest[..n]);
        self.rest.advance(n);
        if f.payload.len() < f.len {
            // Everything fed is copied out: let go of the chunk, so that
            // the reader's buffer is unshared again and reused for the
            // next read instead of reallocated.
            self.rest = Bytes::new();
            return Ok(None);
        }
        Ok(self.filling.take().map(|f| Frame {
            kind: f.kind,
            end: f.end,
            payload: crate::mem::frame_pool::FRAMES.freeze(f.payload),
        }))
    }

    /// The next header, once all of its bytes have arrived.
    fn take_header(&mut self) -> Option<[u8; HEADER_LEN]> {
        if self.head.is_empty() && self.rest.len() >= HEADER_LEN {
            let mut h = [0u8; HEADER_LEN];
            self.rest.copy_to_slice(&mut h);
            return Some(h);
        }
        let n = (HEADER_LEN - self.head.len()).min(self.rest.len());
        self.head.extend_from_slice(&self.rest[..n]);
        self.rest.advance(n);
        if self.rest.is_empty() {
            // As above: the chunk is spent.
            self.rest = Bytes::new();
        }
        let h = <[u8; HEADER_LEN]>::try_from(&self.head[..]).ok()?;
        self.head.clear();
        Some(h)
    }

    /// Discards bytes up to the SYNC frame carrying `nonce` and decodes it.
    /// After a controller restart the stream is joined at an arbitrary
    /// point, possibly inside a frame; the driver marks the point it resumes
    /// from with this frame. `Ok(None)`: not found yet (the bytes before the
    /// last possible partial match are dropped, so memory stays bounded).
    /// Call it before [`Decoder::next_frame`], which then decodes what
    /// follows the SYNC frame.
    pub fn seek_sync(&mut self, nonce: &[u8; NONCE_LEN]) -> Option<Sync> {
        let mut buf = BytesMut::with_capacity(self.head.len() + self.rest.len());
        buf.extend_from_slice(&self.head);
        buf.extend_from_slice(&self.rest);
        self.head.clear();
        let mut pattern = [0u8; HEADER_LEN + NONCE_LEN];
        pattern[0] = Kind::Sync as u8;
        pattern[4..8].copy_from_slice(&(SYNC_LEN as u32).to_be_bytes());
        pattern[HEADER_LEN..].copy_from_slice(nonce);
        let found = match buf.windows(pattern.len()).position(|w| w == pattern) {
            Some(at) if buf.len() >= at + HEADER_LEN + SYNC_LEN => {
                buf.advance(at + HEADER_LEN + NONCE_LEN);
                let offset = buf.get_u64();
                let inputs_received = buf.get_u64();
                let inputs_consumed = buf.get_u64();
                Some(Sync {
                    offset,
                    inputs_received,
                    inputs_consumed,
                })
            }
            Some(at) => {
                buf.advance(at);
                None
            }
            None => {
                let keep = (pattern.len() - 1).min(buf.len());
                let drop = buf.len() - keep;
                buf.advance(drop);
                None
            }
        };
        self.rest = buf.freeze();
        found
    }

    /// The bytes fed but not decoded yet, a partial frame included.
    pub fn into_remaining(self) -> Bytes {
        let mut b = BytesMut::new();
        b.extend_from_slice(&self.head);
        if let Some(f) = &self.filling {
            encode_header(&mut b, f.kind, f.end, f.len);
            b.extend_from_slice(&f.payload);
        }
        b.extend_from_slice(&self.rest);
        b.freeze()
    }

    /// Call at end of stream: an incomplete frame left over is an error.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.head.is_empty() && self.filling.is_none() && self.rest.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated)
        }
    }
}

/// Encodes a frame for the container's stdin.
pub fn encode(kind: Kind, end: bool, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(HEADER_LEN + payload.len());
    encode_header(&mut b, kind, end, payload.len());
    b.extend_from_slice(payload);
    b.freeze()
}

/// Writes just a header, for payloads sent separately.
pub fn encode_header(b: &mut BytesMut, kind: Kind, end: bool, len: usize) {
    b.put_u8(kind as u8);
    b.put_u8(if end { FLAG_END } else { 0 });
    b.put_u16(0);
    // Callers chunk at MAX_PAYLOAD, far below u32::MAX.
    b.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
}

/// Encodes one message as frames of at most [`MAX_PAYLOAD`] bytes, with
/// `END` on the last one. An empty message is one empty `END` frame.
pub fn encode_message(kind: Kind, payload: &[u8]) -> Vec<Bytes> {
    if payload.is_empty() {
        return vec![encode(kind, true, &[])];
    }
    let n = payload.len().div_ceil(MAX_PAYLOAD);
    payload
        .chunks(MAX_PAYLOAD)
        .enumerate()
        .map(|(i, c)| encode(kind, i + 1 == n, c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8], chunk: usize) -> Result<Vec<Frame>, FrameError> {
        let mut d = Decoder::new();
        let mut out = vec![];
        for c in bytes.chunks(chunk.max(1)) {
            d.feed(Bytes::copy_from_slice(c));
            while let Some(f) = d.next_frame()? {
                out.push(f);
            }
        }
        d.finish()?;
        Ok(out)
    }

    #[test]
    fn frames_split_anywhere_decode_the_same() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&encode(Kind::Stdout, false, b"hi\n"));
        stream.extend_from_slice(&encode(Kind::Data, true, b"message"));
        stream.extend_from_slice(&encode(Kind::Data, true, b""));
        for chunk in [1, 3, 7, 8, 100] {
            let frames = decode_all(&stream, chunk).expect("good frames");
            assert_eq!(frames.len(), 3, "chunk size {chunk}");
            assert_eq!(&frames[1].payload[..], b"message");
            assert!(frames[2].end && frames[2].payload.is_empty());
        }
    }

    #[test]
    fn large_frames_across_chunks_keep_every_byte() {
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut stream = Vec::new();
        stream.extend_from_slice(&encode(Kind::Data, true, &big[..65536]));
        stream.extend_from_slice(&encode(Kind::Stdout, false, b"x"));
        stream.extend_from_slice(&encode(Kind::Data, true, &big));
        for chunk in [1000, 32768 + 8, 70_000, stream.len()] {
            let frames = decode_all(&stream, chunk).expect("good frames");
            assert_eq!(frames.len(), 3, "chunk size {chunk}");
            assert_eq!(&frames[0].payload[..], &big[..65536]);
            assert_eq!(&frames[1].payload[..], b"x");
            assert_eq!(&frames[2].payload[..], &big[..]);
        }
        // What is left mid-frame is given back as it was fed.
        let mut d = Decoder::new();
        d.feed(Bytes::copy_from_slice(&stream[..70_000]));
        assert!(matches!(d.next_frame(), Ok(Some(_))));
        assert!(matches!(d.next_frame(), Ok(Some(_))));
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.finish(), Err(FrameError::Truncated));
        assert_eq!(&d.into_remaining()[..], &stream[65536 + 8 + 9..70_000]);
    }

    #[test]
    fn huge_length_is_rejected_without_allocating() {
        let mut d = Decoder::new();
        d.feed(Bytes::from_static(&[
            Kind::Data as u8,
            0,
            0,
            0,
            0xff,
            0xff,
            0xff,
            0xff,
        ]));
        assert_eq!(d.next_frame(), Err(FrameError::TooLarge(u32::MAX)));
        assert!(d.filling.is_none());
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(
            decode_all(b"hello world!", 4),
            Err(FrameError::UnknownKind(b'h'))
        );
        assert_eq!(
            decode_all(&[1, 0, 9, 0, 0, 0, 0, 0], 8),
            Err(FrameError::Reserved)
        );
        assert_eq!(
            decode_all(&[1, 0, 0, 0, 0, 0, 0, 5, b'a'], 8),
            Err(FrameError::Truncated)
        );
    }

    #[test]
    fn sync_is_found_anywhere_in_noise() {
        let nonce = [7u8; NONCE_LEN];
        let mut payload = nonce.to_vec();
        for v in [100u64, 3, 2] {
            payload.extend_from_slice(&v.to_be_bytes());
        }
        let mut stream = b"tail of an old frame".to_vec();
        stream.extend_from_slice(&encode(Kind::Sync, false, &payload));
        stream.extend_from_slice(&encode(Kind::Data, true, b"next"));
        for chunk in [1, 5, 64] {
            let mut d = Decoder::new();
            let mut found = None;
            let mut frames = vec![];
            for c in stream.chunks(chunk) {
                d.feed(Bytes::copy_from_slice(c));
                if found.is_none() {
                    found = d.seek_sync(&nonce);
                }
                if found.is_some() {
                    while let Ok(Some(f)) = d.next_frame() {
                        frames.push(f);
                    }
                }
            }
            let want = Sync {
                offset: 100,
                inputs_received: 3,
                inputs_consumed: 2,
            };
            assert_eq!(found, Some(want), "chunk {chunk}");
            assert_eq!(frames.len(), 1);
            assert_eq!(&frames[0].payload[..], b"next");
        }
        // A wrong nonce is never taken, and noise does not pile up.
        let mut d = Decoder::new();
        for _ in 0..1000 {
            d.feed(Bytes::copy_from_slice(&stream));
            assert_eq!(d.seek_sync(&[9u8; NONCE_LEN]), None);
        }
        assert!(d.rest.len() < HEADER_LEN + NONCE_LEN);
    }

    #[test]
    fn long_messages_are_chunked() {
        let big = vec![7u8; MAX_PAYLOAD * 2 + 5];
        let frames = encode_message(Kind::Input, &big);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0][1], 0);
        assert_eq!(frames[2][1], FLAG_END);
        assert_eq!(encode_message(Kind::Input, b"").len(), 1);
    }
}
