//! The two tasks that serve a container's stdio for its session actor.
//!
//! - The **reader** decodes the driver's frames from the attach stream and
//!   hands output to the actor over a small bounded channel, with the
//!   stream offset each frame takes it to. When the actor stops taking
//!   output (the session's output cap), the reader stops reading, and the
//!   driver's window fills: the function blocks. Nothing is dropped.
//! - The **stdin writer** applies input exactly once, in order (seed 004's
//!   triage), never more of it than the driver has room for (credits), and
//!   tells the driver which output is durable (ACK). It is a task of its own
//!   so that a function that never reads its stdin blocks only the input
//!   path, never output delivery or `kill`.

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::AsyncWrite;
use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;

use super::fork::history::InputHistory;
use super::input_window::InputWindow;
use super::InputItem;
use crate::runtime::{self, OutputChunk};
use crate::session::store::Db;
use crate::wire::api::Stream;
use crate::wire::driver::{self, Decoder, FromDriver, ToDriver, DRIVER_WINDOW, HEADER_LEN};

// What the log keeps unspooled is unacknowledged at the driver too: leave
// the driver room to keep writing meanwhile.
const _: () = assert!(super::log::MAX_UNSPOOLED as u64 <= DRIVER_WINDOW / 2);

/// Output from the reader, in the order the container produced it.
#[derive(Debug)]
pub enum OutputEvent {
    Output {
        stream: Stream,
        end: bool,
        bytes: Bytes,
        /// The driver's stream offset after this frame (unchanged for raw
        /// stderr, which is not part of that stream).
        offset: u64,
        /// A frame of the driver's stream, which the driver retransmits
        /// until it is acknowledged; raw stderr is not.
        replayable: bool,
    },
    /// The function took inputs up to `inputs` (a CREDIT) when its output
    /// stream stood at `offset` (the driver queues CREDIT in order with
    /// its output frames): a replay point (`session::fork::points`).
    Consumed { inputs: u64, offset: u64 },
    /// The frame stream is corrupt; later stdout is discarded.
    BadFrames(String),
    /// The attach stream ended: the container has exited or is exiting.
    Closed,
}

/// Events from the stdin writer and the exit watcher.
#[derive(Debug)]
pub enum ControlEvent {
    /// Input up to `seq` has been written to the function (or discarded
    /// because input had ended or the function had).
    InputApplied(u64),
    /// A client sent input out of order.
    InputProtocol { client: u64, message: String },
    /// The driver (or the function forging its frames) broke the input
    /// protocol: the session ends with a protocol error.
    DriverProtocol(String),
    /// The container has ended.
    Exited(runtime::ContainerState),
    /// A fork's stdin writer has written every replayed input.
    ReplayFed,
}

/// Spawns the reader on `tracker`; `offset` is where in the driver's frame
/// stream the output starts (0, or where a resumed driver picks up).
pub fn spawn_reader(
    mut output: BoxStream<'static, runtime::Result<OutputChunk>>,
    tx: mpsc::Sender<OutputEvent>,
    credits: watch::Sender<u64>,
    session: String,
    offset: u64,
    tracker: &TaskTracker,
) {
    let actor = tx.clone();
    let reader = async move {
        let mut decoder = Decoder::new();
        let mut corrupt = false;
        let mut offset = offset;
        while let Some(chunk) = output.next().await {
            let bytes = match chunk {
                Ok(OutputChunk::Stdout(bytes)) => bytes,
                Ok(OutputChunk::Stderr(bytes)) => {
                    let ev = OutputEvent::Output {
                        stream: Stream::Stderr,
                        end: true,
                        bytes,
                        offset,
                        replayable: false,
                    };
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(session = %session, error = %e, "attach stream failed");
                    break;
                }
            };
            if corrupt {
                continue;
            }
            decoder.feed(bytes);
            loop {
                let (stream, end, payload) = match next_output(&mut decoder, &credits) {
                    Ok(Some(Next::Output(stream, end, payload))) => (stream, end, payload),
                    Ok(Some(Next::Consumed(inputs))) => {
                        if tx
                            .send(OutputEvent::Consumed { inputs, offset })
                            .await
                            .is_err()
                        {
                            return;
                        }
                        continue;
                    }
                    Ok(None) => break,
                    Err(message) => {
                        tracing::warn!(session = %session, error = %message, "function wrote a bad frame");
                        corrupt = true;
                        if tx.send(OutputEvent::BadFrames(message)).await.is_err() {
                            return;
                        }
                        break;
                    }
                };
                offset += (HEADER_LEN + payload.len()) as u64;
                let ev = OutputEvent::Output {
                    stream,
                    end: end || stream != Stream::Data,
                    bytes: payload,
                    offset,
                    replayable: true,
                };
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
        }
        if !corrupt {
            if let Err(e) = decoder.finish() {
                let _ = tx.send(OutputEvent::BadFrames(e.to_string())).await;
            }
        }
        let _ = tx.send(OutputEvent::Closed).await;
    };
    // It ends when the actor does at the latest: a container that writes
    // nothing more (one left running at shutdown) would otherwise hold it
    // in `output.next()` for ever, and the tracker's wait with it.
    tracker.spawn(async move {
        tokio::select! {
            _ = reader => {}
            _ = actor.closed() => {}
        }
    });
}

/// What the reader passes on from the driver's frames.
enum Next {
    /// An output frame: stream, end, payload.
    Output(Stream, bool, Bytes),
    /// A CREDIT that took the count of inputs consumed up to this.
    Consumed(u64),
}

/// The next output frame or CREDIT the decoder holds, or `None` until more
/// bytes arrive. Credits are taken in here; anything else the driver says
/// here is ignored. An error means the frame stream is corrupt (or a
/// credit forged).
fn next_output(
    decoder: &mut Decoder,
    credits: &watch::Sender<u64>,
) -> Result<Option<Next>, String> {
    loop {
        let Some(frame) = decoder.next_frame().map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        match FromDriver::try_from(frame).map_err(|e| e.to_string())? {
            FromDriver::Output {
                stream,
                end,
                payload,
            } => return Ok(Some(Next::Output(stream, end, payload))),
            FromDriver::Credit(now) => {
                if take_credit(credits, now)? {
                    return Ok(Some(Next::Consumed(now)));
                }
            }
            // Only meaningful right after RESUME; a stray one (which only
            // the function could forge) is ignored.
            FromDriver::Sync => {}
            // The driver is up; only the warm pool waits for it.
            FromDriver::Ready => {}
        }
    }
}

/// Takes a CREDIT in, checked where it enters: the count only grows.
/// Whether it exceeds what was written only the stdin writer knows; it
/// checks that ([`InputWindow::credit`]). True when the count grew.
fn take_credit(credits: &watch::Sender<u64>, now: u64) -> Result<bool, String> {
    let before = *credits.borrow();
    if now < before {
        return Err(format!(
            "credit went backwards: {now} inputs consumed after {before}"
        ));
    }
    credits.send_replace(now);
    Ok(now > before)
}

/// How far input has got, shared by the stdin writer (which advances it)
/// and the actor (which tells attaching clients).
#[derive(Debug)]
pub struct InputProgress {
    /// The input seq expected next.
    pub next: AtomicU64,
    /// End of input has been applied.
    pub closed: AtomicBool,
    /// Input payload bytes written to the function (for the history; not
    /// kept across a controller restart).
    pub bytes: AtomicU64,
}

impl InputProgress {
    /// Progress after `received` inputs (end of input included) reached the driver.
    pub fn after(received: u64, closed: bool) -> InputProgress {
        InputProgress {
            next: AtomicU64::new(received.saturating_add(1)),
            closed: AtomicBool::new(closed),
            bytes: AtomicU64::new(0),
        }
    }
}

impl Default for InputProgress {
    fn default() -> Self {
        InputProgress::after(0, false)
    }
}

/// How many inputs the stdin writer may write before it must record a
/// higher bound in the store. After a restart, a driver's claim of inputs
/// received is checked against this bound: the driver cannot have received
/// more than was written, and nothing was written past the bound.
pub struct InputReservation {
    pub db: Arc<Db>,
    pub token: String,
    /// The highest input seq that may be written without a new record.
    pub upto: u64,
}

/// Inputs reserved per store write: one small write per this many inputs.
pub const INPUT_RESERVATION_STEP: u64 = 1024;

impl InputReservation {
    /// Makes sure `seq` may be written: records a higher bound first if
    /// needed. An error means the bound could not be made durable, and the
    /// input must not be written.
    fn cover(&mut self, seq: u64) -> Result<(), crate::session::store::DbError> {
        if seq <= self.upto {
            return Ok(());
        }
        let upto = seq.saturating_add(INPUT_RESERVATION_STEP);
        self.db.set_input_reserved(&self.token, upto)?;
        self.upto = upto;
        Ok(())
    }
}

/// The stdin writer's channels.
pub struct StdinParts {
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
    pub rx: mpsc::Receiver<InputItem>,
    pub events: mpsc::Sender<ControlEvent>,
    pub progress: Arc<InputProgress>,
    /// The durable output offset, to acknowledge to the driver.
    pub acks: watch::Receiver<u64>,
    /// Inputs the function has consumed, from the driver's credits. Its
    /// changes only: the count to start from is `consumed`.
    pub credits: watch::Receiver<u64>,
    /// Inputs consumed when the driver was attached (0, or a resumed
    /// driver's checked count).
    pub consumed: u64,
    pub reservation: InputReservation,
    /// A fork's replayed inputs, written first as inputs `1..=K`; clients'
    /// input follows from `K + 1` (which `progress` already says).
    pub replay: std::collections::VecDeque<Bytes>,
    /// The input history, when the session keeps one (`session::fork`).
    pub history: Option<InputHistory>,
}

/// Spawns the stdin writer on `tracker`.
pub fn spawn_stdin_writer(parts: StdinParts, tracker: &TaskTracker) {
    // The actor holds the receiving end of `events`. The writer sees the
    // actor go when it next waits for acks, but not while it is stuck in
    // a write to a function that never reads its stdin: then only this
    // ends it, so that it cannot hold the tracker's wait at shutdown.
    let actor = parts.events.clone();
    tracker.spawn(async move {
        tokio::select! {
            _ = stdin_writer(parts) => {}
            _ = actor.closed() => {}
        }
    });
}

async fn stdin_writer(p: StdinParts) {
    let StdinParts {
        mut input,
        mut rx,
        events,
        progress,
        mut acks,
        mut credits,
        consumed,
        mut reservation,
        mut replay,
        mut history,
    } = p;
    // Inputs written to the driver (end of input included), and what of
    // them it has not consumed yet. A resumed driver's counts were checked
    // against the store before this task was started. A fork's replayed
    // inputs are counted in `progress` already, and written first.
    let mut replayed = 0u64;
    let sent = (progress.next.load(Ordering::Acquire) - 1).saturating_sub(replay.len() as u64);
    // Not the credits' current value: the reader may already have taken a
    // forged one in, which must be checked like any later one.
    let mut window = InputWindow::new(sent, consumed);
    let mut eof_written = progress.closed.load(Ordering::Acquire);
    // Once the function is gone, input is acknowledged and discarded so
    // that clients do not resend it forever.
    let mut broken = false;
    let mut reader_alive = true;
    loop {
        let room = window.has_room();
        tokio::select! {
            biased;
            changed = acks.changed() => {
                if changed.is_err() {
                    return; // the session is gone
                }
                let offset = *acks.borrow_and_update();
                if !broken {
                    if let Err(e) = driver::write(&mut input, &ToDriver::Ack(offset)).await {
                        tracing::debug!(error = %e, "function's stdin is closed");
                        broken = true;
                    }
                }
            }
            changed = credits.changed(), if reader_alive => {
                if changed.is_err() {
                    // The reader is gone: the container's output has ended,
                    // so nothing will be consumed any more.
                    reader_alive = false;
                    broken = true;
                    continue;
                }
                let now = *credits.borrow_and_update();
                if let Err(e) = window.credit(now) {
                    // Forged: the session ends. Input from now on is
                    // acknowledged and discarded, as for an ended function.
                    reader_alive = false;
                    broken = true;
                    if events.send(ControlEvent::DriverProtocol(e.to_string())).await.is_err() {
                        return;
                    }
                }
            }
            // A fork's replay first, as the window allows; clients' input
            // waits until it is written.
            _ = std::future::ready(()), if !replay.is_empty() && (room || broken) => {
                let Some(bytes) = replay.pop_front() else { continue };
                replayed += 1;
                if !broken {
                    if let Some(h) = history.as_mut() {
                        h.record(replayed, &bytes);
                    }
                    if let Err(e) = reservation.cover(replayed) {
                        tracing::warn!(error = %e, "cannot record the input bound");
                    }
                    match driver::write(&mut input, &ToDriver::Input(&bytes)).await {
                        Ok(()) => window.written(bytes.len() as u64),
                        Err(e) => {
                            tracing::debug!(error = %e, "function's stdin is closed");
                            broken = true;
                        }
                    }
                }
                if replay.is_empty() && events.send(ControlEvent::ReplayFed).await.is_err() {
                    return;
                }
            }
            item = rx.recv(), if replay.is_empty() && (room || broken || eof_written) => {
                let Some(item) = item else { return };
                let expected = progress.next.load(Ordering::Acquire);
                if item.seq < expected {
                    // A duplicate from a resend: already applied, ack again.
                    if events.send(ControlEvent::InputApplied(expected - 1)).await.is_err() {
                        return;
                    }
                    continue;
                }
                if item.seq > expected {
                    let message = format!("input seq {} skips {}", item.seq, expected);
                    let ev = ControlEvent::InputProtocol { client: item.client, message };
                    if events.send(ev).await.is_err() {
                        return;
                    }
                    continue;
                }
                // Input after end of input (say, from a client that
                // reattached and ended its own stdin again) is acknowledged
                // and discarded, like input to a function that has ended.
                if !broken && !eof_written {
                    if let Err(e) = reservation.cover(item.seq) {
                        // The input is written all the same: holding it back
                        // would only turn into a misleading protocol error
                        // for the client. What is lost is the bound, so a
                        // restart before it is recorded ends this session
                        // as lost (its SYNC then claims more than recorded).
                        tracing::warn!(error = %e, "cannot record the input bound");
                    }
                    if let (Some(h), Some(b)) = (history.as_mut(), item.bytes.as_ref()) {
                        h.record(item.seq, b);
                    }
                    let msg = match &item.bytes {
                        Some(b) => ToDriver::Input(b),
                        None => ToDriver::Eof,
                    };
                    match driver::write(&mut input, &msg).await {
                        Ok(()) => {
                            let n = item.bytes.as_ref().map_or(0, |b| b.len() as u64);
                            progress.bytes.fetch_add(n, Ordering::Relaxed);
                            window.written(n)
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "function's stdin is closed");
                            broken = true;
                        }
                    }
                    if item.bytes.is_none() {
                        eof_written = true;
                        progress.closed.store(true, Ordering::Release);
                    }
                }
                progress.next.store(item.seq.saturating_add(1), Ordering::Release);
                // Ack in batches: only when no more input is waiting.
                if rx.is_empty() && events.send(ControlEvent::InputApplied(item.seq)).await.is_err() {
                    return;
                }
            }
        }
    }
}
