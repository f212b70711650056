//! The fuzzer plays the driver (or a function forging the driver's frames)
//! against a session's real I/O tasks: `session::io::spawn_reader`, which
//! takes the container's stdout in, and the stdin writer, which applies
//! client input within the driver's credits. A second, well-behaved
//! session runs beside it in the same single-threaded runtime.
//!
//! Input: a little language of operations on session A:
//! - `0 L bytes…`: raw bytes (L of them) onto A's stdout;
//! - `1 kind flags L payload…`: a frame with any container → controller
//!   kind, any flags and an L-byte payload;
//! - `2 u64`: a CREDIT frame claiming that many inputs consumed;
//! - `3 delta size`: a client input message, `delta` seqs after the last
//!   (0 repeats it), of `size` bytes; `size` 255 is end of input;
//! - `4`: what A's stdout has so far goes out as one chunk;
//! - `5 L bytes…`: a chunk of raw stderr.
//!
//! Checked, the controller's invariants:
//! - **the loop always yields**: both sessions' tasks run to their end in
//!   one thread; a task that looped without yielding (a forged credit once
//!   made one loop 2^64 times) would stop everything, and libFuzzer's
//!   `-timeout` reports it;
//! - **memory stays bounded**: no allocation past `-malloc_limit_mb` (a
//!   forged count once made one of 8 TB); every payload is at most
//!   `MAX_PAYLOAD`; the frames written to A's stdin never put more than
//!   `MAX_INPUTS_IN_FLIGHT` inputs beyond the credits A was given;
//! - **a violation ends only that session**: once A's stream is reported
//!   corrupt no more of its stdout is taken as output (a forged credit is
//!   reported, and the session actor then kills A), and session B
//!   delivers exactly its own output, in order, with no violation, whatever
//!   A does.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bento::session::store::Db;
use bento::wire::driver::{self, Kind, MAX_INPUTS_IN_FLIGHT, MAX_PAYLOAD};
use bento::runtime::OutputChunk;
use bento::session::io::{
    spawn_reader, spawn_stdin_writer, ControlEvent, InputProgress, InputReservation,
    OutputEvent, StdinParts,
};
use bento::session::InputItem;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;

/// One state database for the whole run; the writer never needs to write
/// to it here (its input bound is set past any seq).
fn db() -> Arc<Db> {
    static DB: OnceLock<Arc<Db>> = OnceLock::new();
    DB.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("bento-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        match Db::open(&dir) {
            Ok(db) => Arc::new(db),
            Err(e) => panic!("state database: {e}"),
        }
    })
    .clone()
}

/// What the fuzz input asks of session A.
#[derive(Default)]
struct Script {
    stdout: Vec<OutputChunk>,
    inputs: Vec<InputItem>,
}

fn parse(data: &[u8]) -> Script {
    let mut s = Script::default();
    let mut pending = BytesMut::new();
    let mut seq = 0u64;
    let mut i = 0;
    let take = |i: &mut usize, n: usize| -> &[u8] {
        let end = (*i + n).min(data.len());
        let out = &data[*i..end];
        *i = end;
        out
    };
    while i < data.len() {
        let op = data[i];
        i += 1;
        match op % 6 {
            0 => {
                let n = take(&mut i, 1).first().copied().unwrap_or(0) as usize;
                pending.extend_from_slice(take(&mut i, n));
            }
            1 => {
                let head = take(&mut i, 3);
                let [kind, flags, len] = [0, 1, 2].map(|k| head.get(k).copied().unwrap_or(0));
                let payload = take(&mut i, len as usize);
                // Any kind and any flags, not only known ones.
                let mut f = BytesMut::new();
                f.extend_from_slice(&[kind, flags, 0, 0]);
                f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                f.extend_from_slice(payload);
                pending.extend_from_slice(&f);
            }
            2 => {
                let mut b = [0u8; 8];
                let got = take(&mut i, 8);
                b[..got.len()].copy_from_slice(got);
                pending.extend_from_slice(&driver::encode(Kind::Credit, false, &b));
            }
            3 => {
                let head = take(&mut i, 2);
                let delta = head.first().copied().unwrap_or(1) as u64;
                let size = head.get(1).copied().unwrap_or(0);
                seq = seq.saturating_add(delta).max(1);
                let bytes = (size != 255).then(|| Bytes::from(vec![b'i'; size as usize]));
                s.inputs.push(InputItem {
                    client: 1,
                    seq,
                    bytes,
                });
            }
            4 => s.stdout.push(OutputChunk::Stdout(pending.split().freeze())),
            _ => {
                let n = take(&mut i, 1).first().copied().unwrap_or(0) as usize;
                let b = Bytes::copy_from_slice(take(&mut i, n));
                s.stdout.push(OutputChunk::Stderr(b));
            }
        }
    }
    if !pending.is_empty() {
        s.stdout.push(OutputChunk::Stdout(pending.freeze()));
    }
    s
}

/// What one session's tasks did.
#[derive(Default, Debug)]
struct Seen {
    outputs: Vec<Bytes>,
    /// The reader reported a corrupt stream (BadFrames).
    bad_frames: bool,
    /// The writer reported a forged credit (DriverProtocol).
    forged: bool,
    /// Replayable output taken after the stream was corrupt.
    output_after_bad_frames: bool,
    /// The most inputs written to the driver beyond the highest credit it
    /// had sent by then.
    most_uncredited: u64,
}

impl Seen {
    fn control(&mut self, ev: ControlEvent) {
        if let ControlEvent::DriverProtocol(_) = ev {
            self.forged = true;
        }
    }
}

/// Runs one session's reader and stdin writer over `stdout` and `inputs`
/// until its output has ended and the writer has had its turn.
async fn session(name: &str, stdout: Vec<OutputChunk>, inputs: Vec<InputItem>) -> Seen {
    let (out_tx, mut out_rx) = mpsc::channel(16);
    let (ctl_tx, mut ctl_rx) = mpsc::channel(64);
    let (input_tx, input_rx) = mpsc::channel(64);
    let (_acks_tx, acks_rx) = watch::channel(0u64);
    let (credits_tx, credits_rx) = watch::channel(0u64);
    let credits_seen = credits_tx.subscribe();
    let (driver_stdin, mut from_writer) = tokio::io::duplex(1 << 16);
    let stream = futures_util::stream::iter(stdout.into_iter().map(Ok)).boxed();
    // The controller's tracker in production; here only a place to spawn.
    let tracker = TaskTracker::new();
    spawn_reader(stream, out_tx, credits_tx, name.to_string(), 0, &tracker);
    spawn_stdin_writer(
        StdinParts {
            input: Box::pin(driver_stdin),
            rx: input_rx,
            events: ctl_tx,
            progress: Arc::new(InputProgress::default()),
            acks: acks_rx,
            credits: credits_rx,
            consumed: 0,
            reservation: InputReservation {
                db: db(),
                token: name.to_string(),
                upto: u64::MAX,
            },
            replay: Default::default(),
            history: None,
        },
        &tracker,
    );
    // The driver's side of stdin: counts the input messages written, and
    // compares them with the credits it has sent.
    let most = Arc::new(AtomicU64::new(0));
    let most_w = most.clone();
    tokio::spawn(async move {
        let mut written = 0u64;
        let mut head = [0u8; 8];
        while from_writer.read_exact(&mut head).await.is_ok() {
            let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
            let mut payload = vec![0u8; len];
            if from_writer.read_exact(&mut payload).await.is_err() {
                break;
            }
            let end = head[1] & driver::FLAG_END != 0;
            let kind = driver::Kind::from_u8(head[0]);
            if (kind == Some(Kind::Input) && end) || kind == Some(Kind::Eof) {
                written += 1;
                let credited = *credits_seen.borrow();
                most_w.fetch_max(written.saturating_sub(credited), Ordering::Relaxed);
            }
        }
    });
    // Without blocking: a writer with no room takes no more, as it should.
    for item in inputs {
        if input_tx.try_send(item).is_err() {
            break;
        }
    }
    let mut seen = Seen::default();
    let mut ctl_open = true;
    loop {
        tokio::select! {
            ev = out_rx.recv() => match ev {
                Some(OutputEvent::Output { bytes, replayable, .. }) => {
                    assert!(bytes.len() <= MAX_PAYLOAD, "{name}: payload of {}", bytes.len());
                    seen.output_after_bad_frames |= seen.bad_frames && replayable;
                    seen.outputs.push(bytes);
                }
                Some(OutputEvent::BadFrames(_)) => seen.bad_frames = true,
                // A replay point for a fork (session::fork checks those);
                // here the output and the input's accounting are what count.
                Some(OutputEvent::Consumed { .. }) => {}
                Some(OutputEvent::Closed) | None => break,
            },
            ev = ctl_rx.recv(), if ctl_open => match ev {
                Some(ev) => seen.control(ev),
                None => ctl_open = false,
            },
        }
    }
    // The output has ended. The writer gets its turns (yields, not time:
    // in one thread, everything runnable runs) to take what is queued.
    drop(input_tx);
    for _ in 0..64 {
        tokio::task::yield_now().await;
        while let Ok(ev) = ctl_rx.try_recv() {
            seen.control(ev);
        }
    }
    seen.most_uncredited = most.load(Ordering::Relaxed);
    seen
}

fuzz_target!(|data: &[u8]| {
    let script = parse(data);
    let rt = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    // Session B: two messages, a credit for nothing, then its end.
    let good = [b"b1".as_slice(), b"b2"];
    let mut b_stdout = BytesMut::new();
    for m in good {
        b_stdout.extend_from_slice(&driver::encode(Kind::Data, true, m));
    }
    b_stdout.extend_from_slice(&driver::encode(Kind::Credit, false, &0u64.to_be_bytes()));
    let b_chunks = vec![OutputChunk::Stdout(b_stdout.freeze())];
    let (a, b) = rt.block_on(async {
        tokio::join!(
            session("a", script.stdout, script.inputs),
            session("b", b_chunks, Vec::new())
        )
    });
    assert!(
        !a.output_after_bad_frames,
        "session a's output was taken after its stream was corrupt"
    );
    assert!(
        a.most_uncredited <= MAX_INPUTS_IN_FLIGHT,
        "{} inputs written beyond the credits",
        a.most_uncredited
    );
    assert!(!b.bad_frames && !b.forged, "session b saw a violation: {b:?}");
    assert_eq!(b.outputs, good.map(Bytes::from_static).to_vec(), "session b's output");
});
