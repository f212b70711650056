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
//! come out split wherever a read ended; the frame decoder downstream does
//! not care where chunks split. Stdout comes out as zero-copy slices of the
//! read buffer (the decoder copies frames out of them at once); raw stderr
//! is copied, because the log keeps it as it is.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
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
/// Connecting, sending the request and reading the answer's head.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
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
    // The stream itself may stay open for as long as the function runs;
    // the engine's answer to the request may not: a hung engine must not
    // stall session creation, the pool or reconcile for good.
    let (conn, buf) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(socket, id))
        .await
        .map_err(|_| {
            RuntimeError::Engine(format!(
                "attach: the engine did not answer within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            ))
        })??;
    let (read, write) = conn.into_split();
    Ok(ContainerIo {
        output: demux(read, buf),
        input: Box::pin(Stdin(Some(write))),
    })
}

/// Sends the request and reads the answer's head; returns the connection
/// and whatever of the stream came with the head.
async fn handshake(socket: &Path, id: &str) -> Result<(UnixStream, BytesMut)> {
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
    loop {
        if let Some(n) = response_head(&buf, id)? {
            // What followed the head is the start of the stream.
            buf.advance(n);
            return Ok((conn, buf));
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
    }
}

/// The container's stdin: the socket's write half, except that dropping it
/// does not half-close the socket (tokio's `OwnedWriteHalf` does). The
/// engine ends an attach's output when its stdin ends, so a half-close
/// would look like the container exiting; bollard's writer does not do it
/// either. The socket closes when the output stream is dropped too.
struct Stdin(Option<OwnedWriteHalf>);

impl Drop for Stdin {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            w.forget();
        }
    }
}

impl Stdin {
    fn half(&mut self) -> std::io::Result<Pin<&mut OwnedWriteHalf>> {
        match self.0.as_mut() {
            Some(w) => Ok(Pin::new(w)),
            // Only Drop takes it.
            None => Err(std::io::Error::other("stdin is gone")),
        }
    }
}

impl AsyncWrite for Stdin {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.half() {
            Ok(w) => w.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.half() {
            Ok(w) => w.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.half() {
            Ok(w) => w.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.half() {
            Ok(w) => w.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

fn io_error(what: &str, socket: &Path, e: std::io::Error) -> RuntimeError {
    RuntimeError::Engine(format!("attach: {what} {}: {e}", socket.display()))
}

/// The length of the response head if it is complete and says the
/// connection was upgraded; an error for any other answer.
fn response_head(buf: &[u8], id: &str) -> Result<Option<usize>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
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

struct Demux<R> {
    read: R,
    buf: BytesMut,
    part: Part,
    /// How much the next read asks for.
    want: usize,
}

fn demux<R>(read: R, buf: BytesMut) -> BoxStream<'static, Result<OutputChunk>>
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
                    // The frame decoder copies stdout out of the slice.
                    1 => Some(OutputChunk::Stdout(bytes)),
                    // Raw stderr goes into the log as it is: a slice would
                    // keep the whole read buffer alive for as long as the
                    // log holds it, and each read would need a new buffer.
                    2 => Some(OutputChunk::Stderr(Bytes::copy_from_slice(&bytes))),
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

    /// Demultiplexes `wire` through a pipe that holds at most `piece`
    /// bytes, so that no read returns more than that: with `piece` under
    /// 8, every header is split across reads.
    async fn run(wire: Vec<u8>, piece: usize) -> (Vec<u8>, Vec<u8>, Option<String>) {
        let (ours, mut engine) = tokio::io::duplex(piece);
        let writer = tokio::spawn(async move {
            engine.write_all(&wire).await.expect("write");
        });
        let mut out = demux(ours, BytesMut::new());
        let (mut stdout, mut stderr, mut error) = (Vec::new(), Vec::new(), None);
        while let Some(chunk) = out.next().await {
            match chunk {
                Ok(OutputChunk::Stdout(b)) => stdout.extend_from_slice(&b),
                Ok(OutputChunk::Stderr(b)) => stderr.extend_from_slice(&b),
                Err(e) => error = Some(e.to_string()),
            }
        }
        // Fused: the end stays the end.
        assert!(out.next().await.is_none());
        writer.await.expect("writer");
        (stdout, stderr, error)
    }

    #[tokio::test]
    async fn demultiplexes_however_the_stream_is_split() {
        let big: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
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
        for piece in [1, 3, 7, 8, 9, 32 << 10, 1 << 20] {
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

    /// A fake engine on a Unix socket: reads one request head, answers
    /// `answer` in one write, then hands the connection to `then`.
    async fn fake_engine<F, Fut>(
        answer: Vec<u8>,
        then: F,
    ) -> (
        tempfile::TempDir,
        std::path::PathBuf,
        tokio::task::JoinHandle<String>,
    )
    where
        F: FnOnce(UnixStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("engine.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut b = [0u8; 1];
                if conn.read_exact(&mut b).await.is_err() {
                    break;
                }
                head.push(b[0]);
            }
            conn.write_all(&answer).await.expect("answer");
            then(conn).await;
            String::from_utf8_lossy(&head).into_owned()
        });
        (dir, path, server)
    }

    const UPGRADED: &[u8] = b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n";

    #[tokio::test]
    async fn attach_reads_the_stream_that_comes_with_the_answer() {
        let mut answer = UPGRADED.to_vec();
        answer.extend_from_slice(&muxed(&[(1, b"first"), (2, b"err")]));
        let (_dir, path, server) = fake_engine(answer, |_| async {}).await;
        let io = attach(&path, "abc_1.x-2").await.expect("attach");
        let chunks: Vec<_> = io.output.collect().await;
        let chunks: Vec<_> = chunks.into_iter().map(|c| c.expect("chunk")).collect();
        assert_eq!(
            chunks,
            vec![
                OutputChunk::Stdout(Bytes::from_static(b"first")),
                OutputChunk::Stderr(Bytes::from_static(b"err")),
            ]
        );
        let request = server.await.expect("server");
        assert!(
            request.starts_with("POST /containers/abc_1.x-2/attach?stream=1&stdin=1&stdout=1&stderr=1&logs=0 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("Upgrade: tcp\r\n"), "{request}");
    }

    #[tokio::test]
    async fn attach_reports_what_the_engine_refused() {
        let (_dir, path, _server) = fake_engine(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
            |_| async {},
        )
        .await;
        assert!(
            matches!(attach(&path, "gone").await, Err(RuntimeError::NotFound(id)) if id == "gone")
        );

        let (_dir, path, _server) = fake_engine(Vec::new(), |_| async {}).await;
        let e = attach(&path, "c").await.err().expect("an error");
        assert!(
            e.to_string()
                .contains("closed the connection before answering"),
            "{e}"
        );

        let e = attach(&path.with_file_name("nothing.sock"), "c")
            .await
            .err()
            .expect("an error");
        assert!(e.to_string().contains("connect to"), "{e}");
        let e = attach(&path, "a/../b").await.err().expect("an error");
        assert!(e.to_string().contains("not a container id"), "{e}");
    }

    #[tokio::test]
    async fn dropping_stdin_does_not_half_close_the_stream() {
        let (tx, rx) = tokio::sync::oneshot::channel::<UnixStream>();
        let (_dir, path, _server) = fake_engine(UPGRADED.to_vec(), |conn| async move {
            let _ = tx.send(conn);
        })
        .await;
        let io = attach(&path, "c").await.expect("attach");
        let engine = rx.await.expect("the engine's end");
        let mut byte = [0u8; 1];
        drop(io.input);
        // A shutdown would be visible at once: the engine would read EOF.
        assert!(matches!(
            engine.try_read(&mut byte),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        ));
        drop(io.output);
        let mut engine = engine;
        assert_eq!(engine.read(&mut byte).await.expect("read"), 0);
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
