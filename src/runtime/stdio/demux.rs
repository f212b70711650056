//! Docker's `stdcopy` stream, demultiplexed: an 8-byte header (stream
//! type, three zero bytes, big-endian payload length) before each payload.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::runtime::{OutputChunk, Result, RuntimeError};

/// The first read buffer, as large as bollard's; reads that fill it double
/// it, up to [`MAX_READ`]. An idle session keeps the small one.
pub(super) const MIN_READ: usize = 8 << 10;
/// The engine relays in 32 KiB pieces: two of them per read. 256 KiB
/// measured no better (fewer, larger bursts towards the client) and holds
/// four times the memory per streaming session.
const MAX_READ: usize = 64 << 10;
const HEADER: usize = 8;

/// Where the demultiplexer is in the `stdcopy` stream.
#[derive(Clone, Copy)]
enum Part {
    /// At a header (whole or partly in the buffer).
    Header,
    /// Inside a payload of `left` more bytes.
    Payload { stream: u8, left: usize },
}

struct Demux<R> {
    read: R,
    buf: BytesMut,
    part: Part,
    /// How much the next read asks for.
    want: usize,
}

pub(super) fn demux<R>(read: R, buf: BytesMut) -> BoxStream<'static, Result<OutputChunk>>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let state = Demux {
        read,
        buf,
        part: Part::Header,
        want: MIN_READ,
    };
    stream::unfold(Some(state), |state| async move {
        let mut d = state?;
        match d.next().await {
            Some(Ok(chunk)) => Some((Ok(chunk), Some(d))),
            // An error ends the stream after it is reported.
            Some(Err(e)) => Some((Err(e), None)),
            None => None,
        }
    })
    // Polling again after the end gives the end again, as bollard's does.
    .fuse()
    .boxed()
}

impl<R: AsyncRead + Unpin> Demux<R> {
    /// The next chunk of output; `None` at the end of the stream.
    async fn next(&mut self) -> Option<Result<OutputChunk>> {
        loop {
            if let Some(chunk) = self.take() {
                match chunk {
                    Ok(Some(chunk)) => return Some(Ok(chunk)),
                    Ok(None) => continue,
                    Err(e) => return Some(Err(e)),
                }
            }
            match self.fill().await {
                Ok(true) => {}
                // The engine ends the stream when the container's stdio
                // closes; a payload cut short ends with it.
                Ok(false) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Decodes from the buffer: `None` if it needs more bytes, `Ok(None)`
    /// after consuming something that is not output (a header, stdin).
    fn take(&mut self) -> Option<Result<Option<OutputChunk>>> {
        match self.part {
            Part::Header => {
                if self.buf.len() < HEADER {
                    return None;
                }
                let stream = self.buf[0];
                let len = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]);
                if stream > 2 {
                    return Some(Err(RuntimeError::Engine(format!(
                        "attach: stream type {stream} in the engine's output"
                    ))));
                }
                self.buf.advance(HEADER);
                if len > 0 {
                    self.part = Part::Payload {
                        stream,
                        left: len as usize,
                    };
                }
                Some(Ok(None))
            }
            Part::Payload { stream, left } => {
                if self.buf.is_empty() {
                    return None;
                }
                let n = left.min(self.buf.len());
                self.part = if n == left {
                    Part::Header
                } else {
                    Part::Payload {
                        stream,
                        left: left - n,
                    }
                };
                let chunk = match stream {
                    // The frame decoder copies stdout out of the slice.
                    1 => Some(OutputChunk::Stdout(self.buf.split_to(n).freeze())),
                    // Raw stderr goes into the log as it is: a slice would
                    // keep the whole read buffer alive for as long as the
                    // log holds it, and each read would need a new buffer.
                    2 => {
                        let copy = Bytes::copy_from_slice(&self.buf[..n]);
                        self.buf.advance(n);
                        Some(OutputChunk::Stderr(copy))
                    }
                    // Stdin is never echoed without a TTY.
                    _ => {
                        self.buf.advance(n);
                        None
                    }
                };
                Some(Ok(chunk))
            }
        }
    }

    /// One read; `false` at the end of the stream.
    async fn fill(&mut self) -> Result<bool> {
        // Whole payloads were handed out as slices; once their readers drop
        // them, `reserve` finds the allocation unshared and reuses it.
        self.buf.reserve(self.want);
        // `reserve` may leave more room than asked for; read no more than
        // `want`, so that the buffer a session holds stays bounded.
        let room = self.want;
        let mut limited = (&mut self.buf).limit(room);
        let n = self
            .read
            .read_buf(&mut limited)
            .await
            .map_err(|e| RuntimeError::Engine(format!("attach stream: {e}")))?;
        if n == room && self.want < MAX_READ {
            self.want *= 2;
        }
        Ok(n > 0)
    }
}
