//! The accept loop: every client connection is served by hyper with a
//! header timeout and counted against a cap, and a failing `accept` (out of
//! descriptors, say) never ends or spins the loop.
//!
//! `axum::serve` has none of this: a connection that never sends a request
//! holds its descriptor forever, so enough idle connections leave the
//! controller unable to accept anyone.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connections over the cap being answered 503 at once; more than that are
/// closed without an answer (see `nofile::default_max_connections`, which
/// leaves room for these).
pub(crate) const MAX_REFUSING: usize = 32;
/// How long a refused connection may take to receive its 503 and close.
const REFUSE_TIME: Duration = Duration::from_secs(1);
/// Bytes of a refused connection's request read (and dropped) before it is
/// closed; see [`refuse`].
const REFUSE_DRAIN: usize = 64 << 10;
/// The first pause after a failed `accept`, and the longest.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The answer to a connection over the cap, sent without reading its request.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain; charset=utf-8\r\n\
content-length: 46\r\n\
retry-after: 1\r\n\
connection: close\r\n\
\r\n\
too many connections to the server; try again\n";

/// How connections are served.
pub(crate) struct Settings {
    /// Client connections open at once, attached WebSockets included.
    pub max_connections: usize,
    /// How long a connection may take to send a request head, counted from
    /// when it was accepted or its last response was sent.
    pub header_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets the
/// requests in flight finish and closes idle connections.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    settings: Settings,
    shutdown: CancellationToken,
) {
    let open = Arc::new(Semaphore::new(settings.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let connections = TaskTracker::new();
    let mut http = http1::Builder::new();
    // hyper starts the header timer whenever it waits for a request head:
    // on a new connection and after every response on a kept-alive one. So
    // it is the idle timeout too. An upgraded connection (an attached
    // WebSocket) has left hyper and is not subject to it.
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout);
    let mut backoff = BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok((stream, peer)) => {
                backoff = BACKOFF_MIN;
                (stream, peer)
            }
            // The peer gave up before we took it: nothing is wrong here.
            Err(e) if per_connection(&e) => continue,
            Err(e) => {
                // Out of descriptors (EMFILE, ENFILE) or kernel memory: the
                // connection stays in the backlog. Retrying at once would
                // spin; pause, growing the pause while it lasts.
                tracing::warn!(error = %e, pause = ?backoff, "cannot accept a connection");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        match open.clone().try_acquire_owned() {
            Ok(permit) => {
                let conn = http.serve_connection(
                    TokioIo::new(Counted {
                        stream,
                        _permit: permit,
                    }),
                    TowerToHyperService::new(
                        app.clone()
                            .layer(axum::Extension(crate::controller::tenancy::Peer(peer))),
                    ),
                );
                let stop = shutdown.clone();
                connections.spawn(async move {
                    let mut conn = std::pin::pin!(conn.with_upgrades());
                    let result = tokio::select! {
                        r = conn.as_mut() => r,
                        _ = stop.cancelled() => {
                            // Requests in flight finish; idle connections close.
                            conn.as_mut().graceful_shutdown();
                            conn.await
                        }
                    };
                    if let Err(e) = result {
                        // Timeouts, resets, malformed requests: the peer's
                        // business, not worth more than a debug line.
                        tracing::debug!(error = %e, "connection ended");
                    }
                });
            }
            Err(_) => {
                // Answered here, without waiting: a new socket's send
                // buffer always has room for these few bytes.
                let sent = stream.try_write(BUSY).unwrap_or(0);
                match refusing.clone().try_acquire_owned() {
                    Ok(slot) => {
                        connections.spawn(async move {
                            refuse(stream, sent).await;
                            drop(slot);
                        });
                    }
                    // Closing politely would cost more descriptors than are
                    // set aside for it: close at once. A client that had
                    // sent its request may then see a reset instead.
                    Err(_) => drop(stream),
                }
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Accept errors about one connection only, after which the next accept
/// may well succeed at once.
fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Finishes answering 503 (the first `sent` bytes of it are out) and
/// closes, without parsing the request. What the client sends is read and
/// dropped until it closes (briefly, and only so much): closing a socket
/// with unread bytes sends a reset, which can make the client lose the
/// answer before it reads it.
async fn refuse(mut stream: TcpStream, sent: usize) {
    let answered = tokio::time::timeout(REFUSE_TIME, async {
        stream
            .write_all(BUSY.get(sent..).unwrap_or_default())
            .await?;
        stream.shutdown().await?;
        let mut buf = [0u8; 4096];
        let mut drained = 0;
        while drained < REFUSE_DRAIN {
            match stream.read(&mut buf).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<(), io::Error>(())
    })
    .await;
    if let Ok(Err(e)) = answered {
        tracing::debug!(error = %e, "refused connection ended");
    }
}

/// A client connection that holds its place under the cap for as long as
/// its socket is open: through an upgrade too, since the upgraded stream
/// owns it.
struct Counted {
    // Fields drop in order: the place is given back just before the socket
    // closes, so a client that sees the close can connect again at once.
    _permit: OwnedSemaphorePermit,
    stream: TcpStream,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::BUSY;

    #[test]
    fn the_busy_answer_is_well_formed() {
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut headers);
        let head = match response.parse(BUSY) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!("not a whole response head: {other:?}"),
        };
        assert_eq!(response.code, Some(503));
        let length = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok());
        assert_eq!(length, Some(BUSY.len() - head));
    }
}
