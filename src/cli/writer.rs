//! Where `bento run` and `bento attach` write a session's output: a thread
//! of its own, fed over a bounded queue.
//!
//! Why a thread: tokio's stdout hands every write to its blocking pool, a
//! round trip between threads for each message. With 64 KiB messages that
//! was about five context switches per message, and `bento run` piped to
//! `wc` spent 1.8-2.3 CPU-seconds per GiB of output. This thread takes whatever is
//! queued, writes each run of stdout frames with one `writev` (payloads are
//! not copied), and only then reports the output as written, so the
//! attachment still acks only output that has really left this process.
//!
//! The queue holds at most [`QUEUE`] frames (a frame is at most 1 MiB);
//! when it is full, the follower waits, stops taking events, and the
//! attachment's own bounded queue and the server's flow control take over.

use super::io::newline_after;
use super::render::Render;
use crate::wire::api::{OutputFrame, Stream};
use std::io::{self, IoSlice, Write};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Frames (and marks) that may wait for the thread.
pub(super) const QUEUE: usize = 32;

enum Item {
    Frame(OutputFrame),
    /// Report `seq` as written once everything queued before it is (for
    /// the exit, which is not written anywhere; frames report themselves).
    Mark(u64),
    /// Answer once everything queued before this is written (taken out by
    /// the thread, which answers after the batch).
    Flush(Option<oneshot::Sender<()>>),
}

/// The sending end; the thread ends when this is dropped.
pub(super) struct Writer {
    tx: mpsc::Sender<Item>,
    /// Why the thread stopped, if a write failed.
    failed: Arc<Mutex<Option<io::Error>>>,
}

impl Writer {
    /// Starts the thread. `written(seq)` is called from it once output up to
    /// `seq` has been written, after each batch of writes.
    pub(super) fn spawn<O, E, W>(out: O, err: E, raw: bool, written: W) -> io::Result<Writer>
    where
        O: Write + Send + 'static,
        E: Write + Send + 'static,
        W: Fn(u64) + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(QUEUE);
        let failed = Arc::new(Mutex::new(None));
        let slot = failed.clone();
        std::thread::Builder::new()
            .name("bento-output".into())
            .spawn(move || {
                let mut rx = rx;
                let mut batch = Vec::with_capacity(QUEUE);
                let mut replies = Vec::new();
                if let Err(e) = run(&mut rx, &mut batch, &mut replies, out, err, raw, written) {
                    if let Ok(mut f) = slot.lock() {
                        *f = Some(e);
                    }
                }
                // Only now: a sender or a flush sees these go, and must
                // find the error already in its slot.
                drop(replies);
                drop(batch);
                drop(rx);
            })?;
        Ok(Writer { tx, failed })
    }

    /// Queues a frame.
    pub(super) async fn write(&self, frame: OutputFrame) -> io::Result<()> {
        self.send(Item::Frame(frame)).await
    }

    /// Has `seq` reported as written once everything queued is: for
    /// messages that are not written out, such as the exit.
    pub(super) async fn mark(&self, seq: u64) -> io::Result<()> {
        self.send(Item::Mark(seq)).await
    }

    /// Waits until everything queued so far is written.
    pub(super) async fn flush(&self) -> io::Result<()> {
        let (reply, done) = oneshot::channel();
        self.send(Item::Flush(Some(reply))).await?;
        done.await.map_err(|_| self.failure())
    }

    async fn send(&self, item: Item) -> io::Result<()> {
        self.tx.send(item).await.map_err(|_| self.failure())
    }

    fn failure(&self) -> io::Error {
        let taken = self.failed.lock().ok().and_then(|mut f| f.take());
        taken.unwrap_or_else(|| io::Error::other("the output thread has stopped"))
    }
}

fn run<O: Write, E: Write>(
    rx: &mut mpsc::Receiver<Item>,
    batch: &mut Vec<Item>,
    replies: &mut Vec<oneshot::Sender<()>>,
    mut out: O,
    mut err: E,
    raw: bool,
    written: impl Fn(u64),
) -> io::Result<()> {
    // Unless raw, control characters are shown rather than obeyed (see
    // `render`).
    let mut render = (!raw).then(Render::default);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < QUEUE {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        {
            let mut pending = Pending::default();
            for item in batch.iter_mut() {
                match item {
                    Item::Frame(f) if f.stream == Stream::Stderr => {
                        if let Some(r) = &mut render {
                            f.bytes = r.frame(f);
                        }
                        // Keep the order the function wrote in, as far as a
                        // terminal showing both streams can tell.
                        pending.write(&mut out, &written)?;
                        err.write_all(&f.bytes)?;
                        err.flush()?;
                        written(f.seq);
                    }
                    Item::Frame(f) => {
                        if let Some(r) = &mut render {
                            f.bytes = r.frame(f);
                        }
                        let newline = newline_after(f, raw);
                        pending.push(f, newline);
                    }
                    Item::Mark(seq) => {
                        pending.write(&mut out, &written)?;
                        written(*seq);
                    }
                    Item::Flush(reply) => replies.extend(reply.take()),
                }
            }
            pending.write(&mut out, &written)?;
            // Everything so far must be out: that includes the start of a
            // character the next chunk would have completed (rare: a flush
            // comes before a reconnect notice, or at the end). It is shown
            // as bytes, which loses nothing.
            if !replies.is_empty() {
                if let Some(r) = &mut render {
                    write_held(r, &mut out, &mut err)?;
                }
            }
        }
        batch.clear();
        for reply in replies.drain(..) {
            let _ = reply.send(());
        }
    }
    match &mut render {
        Some(r) => write_held(r, &mut out, &mut err),
        None => Ok(()),
    }
}

/// Writes what the renderer holds back. Its frames were reported written
/// already: at most 3 bytes of an unfinished character per stream, which
/// no terminal would have shown yet anyway.
fn write_held<O: Write, E: Write>(r: &mut Render, out: &mut O, err: &mut E) -> io::Result<()> {
    let (o, e) = r.finish();
    if !o.is_empty() {
        out.write_all(&o)?;
        out.flush()?;
    }
    if !e.is_empty() {
        err.write_all(&e)?;
        err.flush()?;
    }
    Ok(())
}

/// Stdout frames gathered for one `writev`, and where each one ends.
#[derive(Default)]
struct Pending<'a> {
    slices: Vec<IoSlice<'a>>,
    /// (bytes up to the end of a frame, its seq)
    ends: Vec<(usize, u64)>,
    len: usize,
}

impl<'a> Pending<'a> {
    fn push(&mut self, f: &'a OutputFrame, newline: bool) {
        self.slices.push(IoSlice::new(&f.bytes));
        self.len += f.bytes.len();
        if newline {
            self.slices.push(IoSlice::new(b"\n"));
            self.len += 1;
        }
        self.ends.push((self.len, f.seq));
    }

    /// Writes it all, then reports the last frame written whole, also when
    /// a write fails part way: what reached stdout is acked, the rest (a
    /// partly written frame included) comes again on the next attach.
    fn write<W: Write>(&mut self, w: &mut W, written: &impl Fn(u64)) -> io::Result<()> {
        let mut done = 0;
        let mut rest = &mut self.slices[..];
        let result = loop {
            // Done when every byte is out, not when every slice is: empty
            // frames (an empty message under `--raw`) leave empty slices,
            // and a write of nothing but those answers 0, which would
            // read as a closed stdout.
            if done >= self.len {
                break w.flush();
            }
            match w.write_vectored(rest) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    done += n;
                    IoSlice::advance_slices(&mut rest, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        let whole = self.ends.iter().take_while(|(end, _)| *end <= done).last();
        if let Some(&(_, seq)) = whole {
            written(seq);
        }
        self.slices.clear();
        self.ends.clear();
        self.len = 0;
        result
    }
}

/// Asks for a 1 MiB pipe if stdout is one (the default holds 64 KiB), so
/// this thread and the reader at the other end each move more per wake-up.
/// Best effort: anything else, or a refusal, leaves it as it is.
#[cfg(target_os = "linux")]
pub(super) fn grow_pipe(out: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: F_SETPIPE_SZ takes an int and touches no memory of ours; on
    // a descriptor that is not a pipe it fails with EBADF, which we ignore.
    unsafe {
        libc::fcntl(out.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn grow_pipe(_: &std::fs::File) {}

/// Has malloc keep freed memory for reuse instead of handing it back to the
/// OS at once. Each output message arrives in a buffer of its own, freed
/// once written; with glibc's defaults the next one's buffer was mostly
/// fresh pages (100,000-130,000 page faults per GiB followed, about 10 % of
/// `bento run`'s CPU). A client process holds only a few MiB of output at a
/// time (the queues above are bounded), so keeping up to 64 MiB of free
/// memory around costs nothing real. Not for `bento serve`, whose resident
/// memory with idle and detached sessions matters (see `trim.rs`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(super) fn keep_freed_memory() {
    // SAFETY: mallopt only sets malloc's own tunables; it takes no
    // pointers and may be called from any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(super) fn keep_freed_memory() {}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// A sink the test can read back, recording each write call.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut s = self.0.lock().map_err(|_| io::Error::other("poisoned"))?;
            // Take at most 3 bytes, so partial writes are exercised.
            let n = buf.len().min(3);
            s.0.extend_from_slice(&buf[..n]);
            s.1 += 1;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn bytes(&self) -> Vec<u8> {
            self.0.lock().map(|s| s.0.clone()).unwrap_or_default()
        }
    }

    fn frame(seq: u64, stream: Stream, end: bool, s: &'static str) -> OutputFrame {
        OutputFrame {
            seq,
            stream,
            end,
            bytes: Bytes::from_static(s.as_bytes()),
        }
    }

    #[test]
    fn empty_frames_alone_are_written_as_nothing_and_reported() {
        let mut sink = Sink::default();
        let (a, b) = (
            frame(7, Stream::Data, true, ""),
            frame(8, Stream::Stdout, true, ""),
        );
        let mut p = Pending::default();
        p.push(&a, false);
        p.push(&b, false);
        let got = std::cell::Cell::new(0);
        let r = p.write(&mut sink, &|seq| got.set(seq));
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(got.get(), 8);
        assert!(sink.bytes().is_empty());
    }

    #[tokio::test]
    async fn frames_are_written_in_order_and_reported_after() -> io::Result<()> {
        let (out, err) = (Sink::default(), Sink::default());
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let probe = out.clone();
        let w = Writer::spawn(out.clone(), err.clone(), false, move |seq| {
            // What stdout holds when `seq` is reported.
            let _ = seen_tx.send((seq, probe.bytes()));
        })?;
        w.write(frame(1, Stream::Data, false, "hel")).await?;
        w.write(frame(2, Stream::Data, true, "lo")).await?;
        w.write(frame(3, Stream::Stdout, true, "printed")).await?;
        w.write(frame(4, Stream::Stderr, true, "oops")).await?;
        w.write(frame(5, Stream::Data, true, "after")).await?;
        w.mark(6).await?;
        w.flush().await?;
        assert_eq!(out.bytes(), b"hello\nprintedafter\n");
        assert_eq!(err.bytes(), b"oops");
        drop(w);
        let mut reports = Vec::new();
        while let Some(r) = seen.recv().await {
            reports.push(r);
        }
        // Never ahead of what was written; in order; the mark last.
        let upto = |seq: u64| -> &[u8] {
            match seq {
                1 => b"hel",
                2 => b"hello\n",
                3 | 4 => b"hello\nprinted",
                _ => b"hello\nprintedafter\n",
            }
        };
        for (seq, held) in &reports {
            assert!(
                held.starts_with(upto(*seq)),
                "{seq} reported before it was written"
            );
        }
        assert!(reports.windows(2).all(|p| p[0].0 <= p[1].0), "{reports:?}");
        assert_eq!(reports.last().map(|r| r.0), Some(6));
        Ok(())
    }

    /// Takes `room` bytes, then fails as a closed pipe does.
    struct Narrow {
        room: usize,
        got: Sink,
    }

    impl Write for Narrow {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let n = self.got.write(&buf[..buf.len().min(self.room)])?;
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_write_failing_part_way_reports_the_frames_written_whole() -> io::Result<()> {
        let got = Sink::default();
        let out = Narrow {
            room: 7,
            got: got.clone(),
        };
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let w = Writer::spawn(out, Sink::default(), false, move |seq| {
            let _ = seen_tx.send(seq);
        })?;
        // Held back until all three are queued, so they go in one batch.
        for (seq, text) in [(1, "aaaa"), (2, "bbbb"), (3, "cccc")] {
            w.write(frame(seq, Stream::Data, true, text)).await?;
        }
        let e = match w.flush().await {
            Err(e) => e,
            Ok(()) => panic!("flush reported success after a failed write"),
        };
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        // "aaaa\n" went out whole, "bb" of the next did not finish it.
        assert_eq!(got.bytes(), b"aaaa\nbb");
        drop(w);
        let mut reports = Vec::new();
        while let Some(seq) = seen.recv().await {
            reports.push(seq);
        }
        assert_eq!(reports, vec![1]);
        Ok(())
    }

    #[tokio::test]
    async fn raw_mode_adds_no_newlines() -> io::Result<()> {
        let out = Sink::default();
        let w = Writer::spawn(out.clone(), Sink::default(), true, |_| {})?;
        w.write(frame(1, Stream::Data, true, "a")).await?;
        w.write(frame(2, Stream::Data, true, "b")).await?;
        w.flush().await?;
        assert_eq!(out.bytes(), b"ab");
        Ok(())
    }

    #[tokio::test]
    async fn control_characters_are_shown_unless_raw() -> io::Result<()> {
        let (out, err) = (Sink::default(), Sink::default());
        let w = Writer::spawn(out.clone(), err.clone(), false, |_| {})?;
        w.write(frame(1, Stream::Data, true, "\x1b[31mred\x07"))
            .await?;
        w.write(frame(2, Stream::Stderr, true, "\x1b]0;t\x07"))
            .await?;
        // Text other than controls, UTF-8 included, is left alone.
        w.write(frame(3, Stream::Stdout, true, "ok \u{e9}")).await?;
        w.flush().await?;
        drop(w);
        assert_eq!(
            out.bytes(),
            concat!(r"\x1b[31mred\x07", "\n", "ok \u{e9}").as_bytes()
        );
        assert_eq!(err.bytes(), br"\x1b]0;t\x07");
        Ok(())
    }

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_and_nothing_is_marked_written() -> io::Result<()> {
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let w = Writer::spawn(Broken, Sink::default(), false, move |seq| {
            let _ = seen_tx.send(seq);
        })?;
        w.write(frame(1, Stream::Data, true, "lost")).await?;
        // The thread may fail before or after the mark is queued: the first
        // call to find it gone is told why, whichever that is.
        let marked = w.mark(1).await;
        let e = match (marked, w.flush().await) {
            (Err(e), Err(_)) | (Ok(()), Err(e)) => e,
            (_, Ok(())) => panic!("flush reported success after a failed write"),
        };
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        // The thread is gone: later flushes fail too, and nothing was
        // reported as written.
        assert!(w.flush().await.is_err());
        assert_eq!(seen.recv().await, None);
        Ok(())
    }
}
