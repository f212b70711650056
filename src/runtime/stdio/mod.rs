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

use bytes::{Buf, BytesMut};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;

use super::{ContainerIo, Result, RuntimeError};

mod demux;
#[cfg(test)]
mod tests;

use self::demux::{demux, MIN_READ};

/// The engine's answer to the upgrade: status line and headers.
const MAX_RESPONSE_HEAD: usize = 16 << 10;
/// Connecting, sending the request and reading the answer's head.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

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
        self.0.as_ref().is_some_and(|w| w.is_write_vectored())
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
