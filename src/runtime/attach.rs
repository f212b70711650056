//! Attaching to a container's stdio over the engine's Unix socket, reading
//! the multiplexed stream with reads as large as the engine can fill.
//!
//! Why not bollard's `attach_container`: it reads the hijacked connection
//! through a `FramedRead` whose buffer starts at 8 KiB and is topped up one
//! byte at a time once full: a 1 GiB stream took about 110,000
//! `recvfrom` calls, a quarter of them returning one byte (`docs/performance.md`).
//! This is the same Engine API request (`POST /containers/{id}/attach`,
//! upgraded to a raw stream) on the same socket. Engines reached over TCP,
//! TLS or SSH still go through bollard ([`super::DockerRuntime`] decides).
//!
//! The stream is Docker's `stdcopy` format: an 8-byte header (stream type,
//! three zero bytes, big-endian payload length) before each payload. Payloads
//! come out as zero-copy slices of the read buffer, split wherever a read
//! ended; the frame decoder downstream does not care where chunks split.

use bytes::{Buf, BufMut, BytesMut};
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::UnixStream;

use super::{ContainerIo, OutputChunk, Result, RuntimeError};

/// The first read buffer, as large as bollard's; reads that fill it double
/// it, up to [`MAX_READ`]. An idle session keeps the small one.
const MIN_READ: usize = 8 << 10;
/// The engine relays in 32 KiB pieces: two of them per read. 256 KiB
/// measured no better (fewer, larger bursts towards the client) and holds
/// four times the memory per streaming session.
const MAX_READ: usize = 64 << 10;
/// The engine's answer to the upgrade: status line and headers.
const MAX_RESPONSE_HEAD: usize = 16 << 10;
const HEADER: usize = 8;

/// The socket path of a `unix://` Docker host, `None` for any other kind.
pub fn unix_socket_path(host: &str) -> Option<&str> {
    host.strip_prefix("unix://").filter(|p| !p.is_empty())
}

/// `POST /containers/{id}/attach` with stdin, stdout and stderr and no
/// logs, upgraded to a raw stream.
pub async fn attach(socket: &Path, id: &str) -> Result<ContainerIo> {
    // Container ids and names are [a-zA-Z0-9_.-]; anything else would have
    // to be escaped, and is not a container of ours.
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(RuntimeError::Engine(format!(
            "attach: {id:?} is not a container id"
        )));
    }
    let mut conn = UnixStream::connect(socket)
        .await
        .map_err(|e| io_error("connect to", socket, e))?;
    let request = format!(
        "POST /containers/{id}/attach?stream=1&stdin=1&stdout=1&stderr=1&logs=0 HTTP/1.1\r\n\
         Host: docker\r\n\
         Connection: Upgrade\r\n\
         Upgrade: tcp\r\n\
         Content-Length: 0\r\n\r\n"
    );
    conn.write_all(request.as_bytes())
        .await
        .map_err(|e| io_error("write to", socket, e))?;
    let mut buf = BytesMut::with_capacity(MIN_READ);
    let head_len = loop {
        if let Some(n) = response_head(&buf, id)? {
            break n;
        }
        if buf.len() >= MAX_RESPONSE_HEAD {
            return Err(RuntimeError::Engine(
                "attach: the engine's response has no end".into(),
            ));
        }
        let n = conn
            .read_buf(&mut buf)
            .await
            .map_err(|e| io_error("read from", socket, e))?;
        if n == 0 {
            return Err(RuntimeError::Engine(
                "attach: the engine closed the connection before answering".into(),
            ));
        }
    };
    // What followed the head is the start of the stream.
    buf.advance(head_len);
    let (read, write) = conn.into_split();
    Ok(ContainerIo {
        output: demux(read, buf),
        input: Box::pin(write),
    })
}

fn io_error(what: &str, socket: &Path, e: std::io::Error) -> RuntimeError {
    RuntimeError::Engine(format!("attach: {what} {}: {e}", socket.display()))
}

/// The length of the response head if it is complete and says the
/// connection was upgraded; an error for any other answer.
fn response_head(buf: &[u8], id: &str) -> Result<Option<usize>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let n = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(RuntimeError::Engine(format!(
                "attach: bad response from the engine: {e}"
            )))
        }
    };
    match response.code {
        Some(101) | Some(200) => Ok(Some(n)),
        Some(404) => Err(RuntimeError::NotFound(id.to_string())),
        code => {
            // The engine's error body is JSON after the head; the status
            // says enough, and its reason phrase the rest.
            Err(RuntimeError::Engine(format!(
                "attach: the engine answered {} {}",
                code.unwrap_or(0),
                response.reason.unwrap_or("")
            )))
        }
    }
}

/// Where the demultiplexer is in the `stdcopy` stream.
#[derive(Clone, Copy)]
enum Part {
    /// At a header (whole or partly in the buffer).
    Header,
    /// Inside a payload of `left` more bytes.
    Payload { stream: u8, left: usize },
}

struct Demux {
    read: OwnedReadHalf,
    buf: BytesMut,
    part: Part,
    /// How much the next read asks for.
    want: usize,
}

fn demux(read: OwnedReadHalf, buf: BytesMut) -> BoxStream<'static, Result<OutputChunk>> {
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
    .boxed()
}

impl Demux {
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
                let bytes = self.buf.split_to(n).freeze();
                self.part = if n == left {
                    Part::Header
                } else {
                    Part::Payload {
                        stream,
                        left: left - n,
                    }
                };
                Some(Ok(match stream {
                    1 => Some(OutputChunk::Stdout(bytes)),
                    2 => Some(OutputChunk::Stderr(bytes)),
                    // Stdin is never echoed without a TTY.
                    _ => None,
                }))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A `stdcopy` stream from (stream type, payload) pairs.
    fn muxed(parts: &[(u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (stream, payload) in parts {
            out.extend_from_slice(&[*stream, 0, 0, 0]);
            out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            out.extend_from_slice(payload);
        }
        out
    }

    /// Demultiplexes `wire` written in pieces of `piece` bytes through a
    /// real socket pair, joining what each stream got.
    async fn run(wire: Vec<u8>, piece: usize) -> (Vec<u8>, Vec<u8>, Option<String>) {
        let (ours, mut engine) = UnixStream::pair().expect("socket pair");
        let writer = tokio::spawn(async move {
            for p in wire.chunks(piece) {
                engine.write_all(p).await.expect("write");
            }
        });
        let (read, _write) = ours.into_split();
        let mut out = demux(read, BytesMut::new());
        let (mut stdout, mut stderr, mut error) = (Vec::new(), Vec::new(), None);
        while let Some(chunk) = out.next().await {
            match chunk {
                Ok(OutputChunk::Stdout(b)) => stdout.extend_from_slice(&b),
                Ok(OutputChunk::Stderr(b)) => stderr.extend_from_slice(&b),
                Err(e) => error = Some(e.to_string()),
            }
        }
        writer.await.expect("writer");
        (stdout, stderr, error)
    }

    #[tokio::test]
    async fn demultiplexes_however_the_stream_is_split() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let wire = muxed(&[
            (1, b"hello "),
            (2, b"oops\n"),
            (1, &[]),
            (0, b"never echoed"),
            (1, &big),
            (2, b"bye\n"),
            (1, b"!"),
        ]);
        let mut want_out = b"hello ".to_vec();
        want_out.extend_from_slice(&big);
        want_out.push(b'!');
        for piece in [1, 7, 8, 9, 32 << 10, 1 << 20] {
            let (stdout, stderr, error) = run(wire.clone(), piece).await;
            assert_eq!(error, None, "piece {piece}");
            assert!(stdout == want_out, "stdout differs with piece {piece}");
            assert_eq!(stderr, b"oops\nbye\n", "piece {piece}");
        }
    }

    #[tokio::test]
    async fn a_bad_stream_type_is_an_error_and_ends_the_stream() {
        let mut wire = muxed(&[(1, b"ok")]);
        wire.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 1, b'x']);
        wire.extend_from_slice(&muxed(&[(1, b"after")]));
        let (stdout, _, error) = run(wire, 4096).await;
        assert_eq!(stdout, b"ok");
        let error = error.expect("an error");
        assert!(error.contains("stream type 7"), "{error}");
    }

    #[test]
    fn the_upgrade_answer_is_checked() {
        let ok = b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n\x01\x00";
        let n = response_head(ok, "c").expect("ok").expect("complete");
        assert_eq!(&ok[n..], b"\x01\x00");
        assert_eq!(response_head(&ok[..20], "c").expect("partial"), None);
        let missing = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}";
        assert!(matches!(
            response_head(missing, "c"),
            Err(RuntimeError::NotFound(id)) if id == "c"
        ));
        let conflict = b"HTTP/1.1 409 Conflict\r\n\r\n";
        let e = response_head(conflict, "c").expect_err("409");
        assert!(e.to_string().contains("409 Conflict"), "{e}");
        assert!(response_head(b"garbage\r\n\r\n", "c").is_err());
    }

    #[test]
    fn only_unix_hosts_have_a_socket_path() {
        assert_eq!(
            unix_socket_path("unix:///var/run/docker.sock"),
            Some("/var/run/docker.sock")
        );
        assert_eq!(unix_socket_path("unix://"), None);
        assert_eq!(unix_socket_path("tcp://127.0.0.1:2375"), None);
        assert_eq!(unix_socket_path("ssh://host"), None);
    }
}
