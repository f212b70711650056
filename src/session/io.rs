//! The two tasks that serve a container's stdio for its session actor.
//!
//! - The **reader** decodes the driver's frames from the attach stream and
//!   hands output to the actor over a small bounded channel. When the actor
//!   stops taking output (the session's output cap), the reader stops reading,
//!   the pipe fills, and the function blocks: backpressure, nothing dropped.
//! - The **stdin writer** applies input exactly once, in order (seed 004's
//!   triage). It is a task of its own so that a function that never reads its
//!   stdin blocks only the input path, never output delivery or `kill`.

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::InputItem;
use crate::driver_frame::{
    self, Decoder, KIND_DATA, KIND_EOF, KIND_INPUT, KIND_STDERR, KIND_STDOUT,
};
use crate::protocol::Stream;
use crate::runtime::{self, OutputChunk};

/// Output from the reader, in the order the container produced it.
#[derive(Debug)]
pub enum OutputEvent {
    Output {
        stream: Stream,
        end: bool,
        bytes: bytes::Bytes,
    },
    /// The frame stream is corrupt; later stdout is discarded.
    BadFrames(String),
    /// The attach stream ended: the container has exited or is exiting.
    Closed,
}

/// Events from the stdin writer and the exit watcher.
#[derive(Debug)]
pub enum ControlEvent {
    /// Input up to `seq` has been written to the function (or discarded
    /// because the function had already ended).
    InputApplied(u64),
    /// A client sent input out of order.
    InputProtocol { client: u64, message: String },
    /// The container has ended.
    Exited(runtime::ContainerState),
}

pub fn spawn_reader(
    mut output: BoxStream<'static, runtime::Result<OutputChunk>>,
    tx: mpsc::Sender<OutputEvent>,
    session: String,
) {
    tokio::spawn(async move {
        let mut decoder = Decoder::new();
        let mut corrupt = false;
        while let Some(chunk) = output.next().await {
            let event = match chunk {
                Ok(OutputChunk::Stdout(bytes)) => {
                    if corrupt {
                        continue;
                    }
                    decoder.feed(&bytes);
                    loop {
                        match decoder.next_frame() {
                            Ok(Some(f)) => {
                                let stream = match f.kind {
                                    KIND_DATA => Stream::Data,
                                    KIND_STDOUT => Stream::Stdout,
                                    KIND_STDERR => Stream::Stderr,
                                    _ => Stream::Stderr,
                                };
                                let end = f.end || stream != Stream::Data;
                                let ev = OutputEvent::Output {
                                    stream,
                                    end,
                                    bytes: f.payload,
                                };
                                if tx.send(ev).await.is_err() {
                                    return;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(session = %session, error = %e, "function wrote a bad frame");
                                corrupt = true;
                                if tx
                                    .send(OutputEvent::BadFrames(e.to_string()))
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                                break;
                            }
                        }
                    }
                    continue;
                }
                Ok(OutputChunk::Stderr(bytes)) => OutputEvent::Output {
                    stream: Stream::Stderr,
                    end: true,
                    bytes,
                },
                Err(e) => {
                    tracing::warn!(session = %session, error = %e, "attach stream failed");
                    break;
                }
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
        if !corrupt {
            if let Err(e) = decoder.finish() {
                let _ = tx.send(OutputEvent::BadFrames(e.to_string())).await;
            }
        }
        let _ = tx.send(OutputEvent::Closed).await;
    });
}

/// How far input has got, shared by the stdin writer (which advances it)
/// and the actor (which tells attaching clients).
#[derive(Debug)]
pub struct InputProgress {
    /// The input seq expected next.
    pub next: AtomicU64,
    /// End of input has been applied.
    pub closed: AtomicBool,
}

impl Default for InputProgress {
    fn default() -> Self {
        InputProgress {
            next: AtomicU64::new(1),
            closed: AtomicBool::new(false),
        }
    }
}

pub fn spawn_stdin_writer(
    mut input: Pin<Box<dyn AsyncWrite + Send>>,
    mut rx: mpsc::Receiver<InputItem>,
    events: mpsc::Sender<ControlEvent>,
    progress: Arc<InputProgress>,
) {
    tokio::spawn(async move {
        let mut eof_written = false;
        // Once the function is gone, input is acknowledged and discarded so
        // that clients do not resend it forever.
        let mut broken = false;
        while let Some(item) = rx.recv().await {
            let expected = progress.next.load(Ordering::Acquire);
            if item.seq < expected {
                // A duplicate from a resend: already applied, ack again.
                if events
                    .send(ControlEvent::InputApplied(expected - 1))
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            if item.seq > expected {
                let message = format!("input seq {} skips {}", item.seq, expected);
                let ev = ControlEvent::InputProtocol {
                    client: item.client,
                    message,
                };
                if events.send(ev).await.is_err() {
                    return;
                }
                continue;
            }
            // Input after end of input (say, from a client that reattached
            // and ended its own stdin) is acknowledged and discarded, like
            // input to a function that has ended.
            if !broken && !eof_written {
                let result = match &item.bytes {
                    Some(b) => write_message(&mut input, KIND_INPUT, b).await,
                    None => write_message(&mut input, KIND_EOF, &[]).await,
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "function's stdin is closed");
                    broken = true;
                }
            }
            if item.bytes.is_none() && !eof_written {
                eof_written = true;
                progress.closed.store(true, Ordering::Release);
            }
            progress.next.store(item.seq + 1, Ordering::Release);
            // Ack in batches: only when no more input is waiting.
            if rx.is_empty()
                && events
                    .send(ControlEvent::InputApplied(item.seq))
                    .await
                    .is_err()
            {
                return;
            }
        }
    });
}

/// Writes one message as driver frames and flushes.
pub async fn write_message(
    w: &mut Pin<Box<dyn AsyncWrite + Send>>,
    kind: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    for frame in driver_frame::encode_message(kind, payload) {
        w.write_all(&frame).await?;
    }
    w.flush().await
}
