"""Bento's wire protocol, the driver's side: private to Bento.

The function API (send, recv, poll) is in bento.py; the driver
(bento_driver.py) uses this module to frame output, keep it until the
controller acknowledges it, read and check the controller's frames, and
hold the input messages.  Function authors import bento, not this.

Frame format (both directions): an 8-byte header, then the payload.
  byte 0    kind (u8)
  byte 1    flags (u8); bit 0 = END, other bits must be 0
  bytes 2-3 reserved, must be 0
  bytes 4-7 payload length, u32 big-endian, at most MAX_PAYLOAD
See docs/driver.md (protocol v2: acknowledged, retransmittable output and
credit-based input).
"""

import collections
import io
import os
import select
import struct
import threading

try:
    # The C module under `signal`: the same functions, without importing
    # enum (about 2-3 ms of a cold start, see bento_driver._json_loads).
    import _signal as signal
except ImportError:  # not CPython
    import signal

# --- the protocol's numbers ------------------------------------------------
#
# The controller's side of these is in Rust, in src/wire/driver/.  A Rust
# test imports this module with python3 and checks that the two agree:
# KIND_*, FLAG_END, HEADER_SIZE, MAX_PAYLOAD, NONCE_SIZE and the START
# defaults DEFAULT_*.  Keep the names.

HEADER = struct.Struct(">BBHI")  # kind, flags, reserved, length
HEADER_SIZE = HEADER.size  # 8
MAX_PAYLOAD = 1 << 20  # 1 MiB: the largest payload either side accepts

FLAG_END = 0x01

# container -> controller; DATA, STDOUT and STDERR are retransmittable and
# make up the output offsets, SYNC and CREDIT are control frames.
KIND_DATA = 1
KIND_STDOUT = 2
KIND_STDERR = 3
KIND_SYNC = 4
KIND_CREDIT = 5
KIND_READY = 6
# controller -> container
KIND_START = 16
KIND_INPUT = 17
KIND_EOF = 18
KIND_ACK = 19
KIND_RESUME = 20

NONCE_SIZE = 16

# START defaults
DEFAULT_WINDOW = 8 << 20  # bytes of unacknowledged output
DEFAULT_MAX_INPUTS = 64  # received but unconsumed inputs (EOF included)
DEFAULT_MAX_INPUT_BYTES = 8 << 20  # ... and their payload bytes, plus:
INPUT_BYTES_SLACK = 1 << 20  # one more message may be on its way

# --- derived, and this driver's own ----------------------------------------

_STDIN_KINDS = frozenset((KIND_START, KIND_INPUT, KIND_EOF, KIND_ACK, KIND_RESUME))

U64 = struct.Struct(">Q")
RESUME_PAYLOAD = struct.Struct(">Q16s")  # offset, nonce (24 bytes)
SYNC_PAYLOAD = struct.Struct(">16sQQQ")  # nonce, offset, received, consumed (40)

CHUNK_SIZE = 256 << 10  # 256 KiB: the size the driver chunks output in

# The main thread's blocking waits wake up this often (seconds): CPython can
# leave a signal's Python handler pending while the main thread blocks on a
# lock (the signal arrived just before it went to sleep, or was taken by
# another thread); waking up runs it.
_SIGNAL_POLL = 0.25

_BATCH_FRAMES = 400  # frames per writev (IOV_MAX is 1024 on Linux)
_BATCH_BYTES = 1 << 20  # payload bytes per writev, roughly


class ProtocolError(Exception):
    """The controller sent something that is not a valid frame sequence."""


def _byte_view(data):
    """A flat unsigned-byte memoryview of a bytes-like object, copying only if
    the object is not C-contiguous."""
    view = memoryview(data)
    if view.format == "B" and view.ndim == 1 and view.c_contiguous:
        return view
    try:
        return view.cast("B")
    except TypeError:  # not C-contiguous
        return memoryview(view.tobytes())


def _stable_view(data):
    """Like _byte_view, but the bytes must stay unchanged for as long as the
    driver keeps the frame (until acknowledged): a view of an immutable
    bytes object is kept as it is, anything else (bytearray, a buffer the
    caller will reuse, ...) is copied once."""
    view = _byte_view(data)
    if isinstance(view.obj, bytes):
        return view
    return memoryview(view.tobytes())


class _SignalGuard:
    """Defers the driver's raising signal handlers (SIGINT, SIGTERM) while the
    main thread is inside a section that must not be cut short: registering
    a frame or a whole DATA message, or taking a message off the inbox.

    A Python signal handler runs in the main thread between two bytecodes.
    The driver's handlers call `deferring(signum)` first; inside a guarded
    section it records the signal and returns True, and `leave()` re-raises
    it (signal.raise_signal) once the outermost section is done.

    `wait(cond)` is a Condition.wait that a signal *may* interrupt: used
    where the section has not changed anything yet (waiting for window space
    before the first frame, or for an input message), so a blocked send() or
    recv() can still be interrupted.  It returns at least every
    _SIGNAL_POLL seconds (callers loop on their condition anyway).
    """

    def __init__(self):
        self._main_ident = threading.main_thread().ident
        self._depth = 0  # only touched by the main thread
        self._interruptible = False
        self._deferred = None

    def deferring(self, signum):
        if self._depth > 0 and not self._interruptible:
            self._deferred = signum
            return True
        self._deferred = None
        return False

    def enter(self):
        if threading.get_ident() == self._main_ident:
            self._depth += 1
            return True
        return False

    def leave(self, in_main):
        if in_main:
            self._depth -= 1
            if self._depth == 0 and self._deferred is not None:
                signum, self._deferred = self._deferred, None
                signal.raise_signal(signum)

    def wait(self, cond, in_main):
        """cond.wait(), interruptible by a signal if this is the main
        thread's outermost guarded section."""
        if in_main and self._depth == 1:
            self._interruptible = True
            try:
                if self._deferred is not None:
                    # It came between enter() and here: nothing has been
                    # done yet, so let it interrupt now rather than after
                    # a wait that may never end.
                    signum, self._deferred = self._deferred, None
                    signal.raise_signal(signum)
                cond.wait(_SIGNAL_POLL)
            finally:
                self._interruptible = False
        else:
            cond.wait()


class FrameWriter:
    """The driver's output side: frames to the controller, kept until acked.

    Writers (send(), the stdout/stderr streams, any thread) *register* frames:
    each retransmittable frame gets its out_offset and goes into the retained
    list (until the controller ACKs it) and into the send queue.  One writer
    thread owns the descriptor and writes the queue out, batching frames into
    writev() calls.  So:

      * frames are only ever written whole: no signal handler runs in the
        writer thread, and the exit paths wait for the batch in flight;
      * the stdin reader never blocks on output: ACK updates counters, and
        RESUME replaces the send queue with SYNC + the retained frames from
        the requested offset (written after the batch in flight, so nothing
        interleaves);
      * a writer blocks while its frame would push the unacked bytes over the
        window (unless nothing is unacked).  It waits on a Condition of the
        state lock, so ACK/RESUME are never held up by it.

    `_owner` (re-entrant) is held for a whole write call, so the chunks of
    one DATA message are contiguous and a write_stream() call is not split
    by other threads' frames.  `_lock` guards everything else and is only
    ever held briefly.  Payloads are referenced, not copied, when they are
    immutable bytes (see _stable_view).

    After os.fork() the child has no writer thread and must not touch the
    offsets: its stdout/stderr go raw to fd 2 and send() raises.
    """

    def __init__(self, fd, window=DEFAULT_WINDOW):
        self._fd = fd
        self._guard = _SignalGuard()
        self._owner = threading.RLock()
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)  # writers: window space
        self._work = threading.Condition(self._lock)  # writer thread: queue
        self._idle = threading.Condition(self._lock)  # exit: acked / flushed
        self._window = window
        self._emitted = 0  # out_offset after the last registered frame
        self._acked = 0
        self._retained = collections.deque()  # (offset, end, header, payload)
        self._queue = collections.deque()  # (header, payload) to be written
        self._consumed = 0  # inputs consumed, for CREDIT and SYNC
        self._busy = False  # the writer thread is writing a batch
        self._unbounded = False  # nobody can ACK any more: keep nothing
        self._broken = False  # the frame descriptor failed: write nothing
        self._sealed = False  # exit path: accept no more frames
        self._stopping = False
        self.in_child = False
        self._thread = threading.Thread(
            target=self._run, name="bento-writer", daemon=True)
        self._thread.start()
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    # -- signals -----------------------------------------------------------

    def deferring_signals(self, signum):
        """Called from a signal handler: return True (and remember signum) if
        the main thread is in a section that must complete first."""
        return self._guard.deferring(signum)

    # -- configuration and the controller's side ---------------------------

    def set_window(self, window):
        with self._lock:
            self._window = window
            self._space.notify_all()

    def _ack_locked(self, offset):
        if offset > self._emitted:
            raise ProtocolError(
                "acknowledged offset %d is beyond the %d bytes of output emitted"
                % (offset, self._emitted))
        if offset <= self._acked:
            return
        self._acked = offset
        retained = self._retained
        while retained and retained[0][1] <= offset:
            retained.popleft()
        self._space.notify_all()
        self._idle.notify_all()

    def ack(self, offset):
        """ACK from the controller (stdin reader thread)."""
        with self._lock:
            self._ack_locked(offset)

    def resume(self, offset, nonce, inputs_received):
        """RESUME from the controller (stdin reader thread): treat offset as
        an ACK, then queue SYNC and every retained frame from offset on,
        replacing whatever was still queued (it is all among them)."""
        with self._lock:
            self._ack_locked(offset)
            if self._broken or self._unbounded:
                return
            retained = self._retained
            start = offset
            first = 0
            if retained and offset <= retained[0][0]:
                start = retained[0][0]  # below the oldest frame kept: from there
            elif retained:
                for first, item in enumerate(retained):
                    if item[0] >= offset:
                        break
                else:
                    first = len(retained)
                if first < len(retained):
                    if retained[first][0] != offset:
                        raise ProtocolError(
                            "RESUME offset %d is not a frame boundary" % offset)
                elif offset != self._emitted:
                    raise ProtocolError(
                        "RESUME offset %d is not a frame boundary" % offset)
            else:
                start = self._emitted
            sync = (HEADER.pack(KIND_SYNC, 0, 0, SYNC_PAYLOAD.size)
                    + SYNC_PAYLOAD.pack(nonce, start, inputs_received, self._consumed))
            queue = self._queue
            queue.clear()
            queue.append((sync, b""))
            for index in range(first, len(retained)):
                item = retained[index]
                queue.append((item[2], item[3]))
            # (CREDIT markers queued before are gone with the queue: SYNC
            # carries the count.)
            self._work.notify()

    def stdin_closed(self):
        """The controller's side of stdin is gone for good: nothing can be
        acknowledged any more, so keep nothing and never block writers.
        Queued frames are still written."""
        with self._lock:
            self._unbounded = True
            self._retained.clear()
            self._acked = self._emitted
            self._space.notify_all()
            self._idle.notify_all()

    def ready(self):
        """Queue READY: the driver is up and waits for START.  A control
        frame like CREDIT: not retained, not counted in the offsets."""
        with self._lock:
            if self._broken:
                return
            self._queue.append((HEADER.pack(KIND_READY, 0, 0, 0), b""))
            self._work.notify()

    # -- the function's side -----------------------------------------------

    def credit(self, consumed):
        """The function has consumed `consumed` inputs: send CREDIT soon.
        Never waits for window space.

        The CREDIT is queued in order with the output frames: it follows
        every frame the function sent before it took the input, and
        precedes every frame it sends after.  The controller relies on that
        to know how much output a function had made when it took each
        input (a fork's replay point, docs/fork.md).  Two CREDITs with no
        frame between them coalesce into one, which says as much."""
        if self.in_child:
            return
        in_main = self._guard.enter()
        try:
            with self._lock:
                if consumed > self._consumed:
                    self._consumed = consumed
                    if not self._broken:
                        queue = self._queue
                        if queue and queue[-1][0] is None:
                            queue[-1] = (None, consumed)
                        else:
                            queue.append((None, consumed))
                        self._work.notify()
        finally:
            self._guard.leave(in_main)

    def _register(self, kind, flags, payload, in_main, first):
        """Register one retransmittable frame, waiting for window space."""
        size = HEADER_SIZE + len(payload)
        with self._lock:
            while (not self._unbounded and not self._broken and not self._sealed
                   and self._emitted > self._acked
                   and self._emitted - self._acked + size > self._window):
                if first:
                    self._guard.wait(self._space, in_main)
                else:
                    self._space.wait()
            if self._sealed:
                return  # the main thread, at exit, after seal(): nothing
            header = HEADER.pack(kind, flags, 0, len(payload))
            offset = self._emitted
            self._emitted = offset + size
            if self._broken:
                self._acked = self._emitted
                return
            if self._unbounded:
                self._acked = self._emitted
            else:
                self._retained.append((offset, offset + size, header, payload))
            self._queue.append((header, payload))
            self._work.notify()

    def write_stream(self, kind, data):
        """Write bytes as STDOUT/STDERR frames (no END flag); nothing for b""."""
        if self.in_child:
            self._write_raw_stderr(data)
            return
        view = _stable_view(data)
        if not len(view):
            return
        in_main = self._guard.enter()
        try:
            with self._owner:
                first = True
                for start in range(0, len(view), CHUNK_SIZE):
                    self._register(kind, 0, view[start:start + CHUNK_SIZE],
                                   in_main, first)
                    first = False
        finally:
            self._guard.leave(in_main)

    def write_message(self, kind, data):
        """Write one message as frames of `kind`, END on the last one.  An
        empty message is one empty frame with END."""
        if self.in_child:
            raise RuntimeError(
                "bento: send() is not available in a forked child process")
        view = _stable_view(data)
        total = len(view)
        in_main = self._guard.enter()
        try:
            with self._owner:
                if total == 0:
                    self._register(kind, FLAG_END, view, in_main, True)
                    return
                first = True
                for start in range(0, total, CHUNK_SIZE):
                    end = min(start + CHUNK_SIZE, total)
                    flags = FLAG_END if end == total else 0
                    self._register(kind, flags, view[start:end], in_main, first)
                    first = False
        finally:
            self._guard.leave(in_main)

    # -- exit --------------------------------------------------------------

    def seal(self):
        """The function is done and its output flushed: let a write call in
        progress in another thread (a daemon thread) finish, so no DATA
        message is left without END, then take the owner lock for good, so
        nothing more is written and the wait for acknowledgement has a fixed
        end.  Like interpreter exit, daemon threads just stop there."""
        if self.in_child:
            return
        while not self._owner.acquire(timeout=_SIGNAL_POLL):
            pass
        with self._lock:
            self._sealed = True

    def wait_done(self):
        """Block until every retransmittable frame is acknowledged, or, once
        stdin has closed (or the descriptor failed), until the queue is
        written out.  A signal handler may interrupt the wait."""
        if self.in_child:
            return
        with self._lock:
            while True:
                if self._broken:
                    return
                if self._acked >= self._emitted and not self._queue and not self._busy:
                    return
                self._idle.wait(_SIGNAL_POLL)

    def stop(self):
        """Stop writing (the exit path): let the batch in flight finish, so
        the stream never ends in a truncated frame, and write nothing more."""
        if self.in_child:
            return
        with self._lock:
            self._stopping = True
            self._work.notify_all()
            while self._busy:
                self._idle.wait(_SIGNAL_POLL)

    # -- the writer thread -------------------------------------------------

    def _run(self):
        lock = self._lock
        queue = self._queue
        while True:
            with lock:
                while not self._stopping and not queue:
                    self._work.wait()
                if self._stopping:
                    return
                bufs = []
                nbytes = 0
                while queue and len(bufs) < 2 * _BATCH_FRAMES and nbytes < _BATCH_BYTES:
                    header, payload = queue.popleft()
                    if header is None:  # a CREDIT marker: payload is the count
                        bufs.append(HEADER.pack(KIND_CREDIT, 0, 0, U64.size)
                                    + U64.pack(payload))
                        continue
                    bufs.append(header)
                    if len(payload):
                        bufs.append(payload)
                        nbytes += len(payload)
                self._busy = True
            try:
                self._write_all(bufs)
            except BaseException as exc:
                with lock:
                    self._broken = True
                    self._busy = False
                    queue.clear()
                    self._retained.clear()
                    self._acked = self._emitted
                    self._space.notify_all()
                    self._idle.notify_all()
                try:
                    os.write(2, ("bento driver: cannot write frames: %s\n" % exc)
                             .encode("utf-8", "backslashreplace"))
                except OSError:
                    pass
                return
            with lock:
                self._busy = False
                self._idle.notify_all()

    def _write_all(self, bufs):
        bufs = [memoryview(b) for b in bufs]
        fd = self._fd
        while bufs:
            try:
                if len(bufs) > 1 and _writev is not None:
                    n = _writev(fd, bufs)
                else:
                    n = os.write(fd, bufs[0])
            except BlockingIOError:
                # Someone made the descriptor non-blocking: wait until writable.
                select.select([], [fd], [])
                continue
            done = 0
            while n:
                first = len(bufs[done])
                if n >= first:
                    n -= first
                    done += 1
                else:
                    bufs[done] = bufs[done][n:]
                    n = 0
            if done:
                del bufs[:done]

    # -- fork --------------------------------------------------------------

    def _after_fork_in_child(self):
        # No locks here: another thread may have held them at fork time.
        self.in_child = True
        try:
            os.close(self._fd)
        except OSError:
            pass

    @staticmethod
    def _write_raw_stderr(data):
        view = _byte_view(data)
        while len(view):
            try:
                n = os.write(2, view)
            except OSError:
                return
            view = view[n:]


_writev = getattr(os, "writev", None)


class FrameReader:
    """Reads and validates frames coming from the controller."""

    def __init__(self, fd):
        self._fd = fd
        self._file = io.open(fd, "rb", buffering=64 * 1024, closefd=False)

    def _read_exact(self, n):
        """Read exactly n bytes; fewer only if the stream ended."""
        parts = []
        remaining = n
        while remaining:
            chunk = self._file.read(remaining)
            if chunk is None:  # non-blocking descriptor with nothing to read
                select.select([self._fd], [], [])
                continue
            if not chunk:
                break
            parts.append(chunk)
            remaining -= len(chunk)
        return b"".join(parts)

    def read_frame(self):
        """Return (kind, flags, payload), or None if stdin ended cleanly
        between frames.  Raise ProtocolError on anything malformed."""
        header = self._read_exact(HEADER_SIZE)
        if not header:
            return None
        if len(header) < HEADER_SIZE:
            raise ProtocolError("stdin closed in the middle of a frame header")
        kind, flags, reserved, length = HEADER.unpack(header)
        if kind not in _STDIN_KINDS:
            raise ProtocolError("unknown frame kind %d" % kind)
        if reserved:
            raise ProtocolError("nonzero reserved bytes in frame header")
        if flags & ~FLAG_END:
            raise ProtocolError("unknown flags 0x%02x in frame header" % flags)
        if length > MAX_PAYLOAD:
            raise ProtocolError(
                "frame payload of %d bytes exceeds the %d byte limit"
                % (length, MAX_PAYLOAD))
        payload = self._read_exact(length)
        if len(payload) < length:
            raise ProtocolError("stdin closed in the middle of a frame payload")
        return kind, flags, payload


class OutputRaw(io.RawIOBase):
    """Raw binary stream whose writes become STDOUT or STDERR frames.

    fileno() reports the process's own descriptor (1 or 2) so code that needs
    a real descriptor (subprocess, faulthandler) still works; bytes written to
    it directly bypass the framing and reach the container's real stderr.
    """

    def __init__(self, writer, kind, fileno, name):
        super().__init__()
        self._writer = writer
        self._kind = kind
        self._fileno = fileno
        self.name = name
        self.mode = "wb"

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        return self._fileno

    def write(self, b):
        # The buffer is usually BufferedWriter's own (reused): the writer
        # copies it, since it keeps frames until they are acknowledged.
        with memoryview(b) as view:
            n = view.nbytes
            self._writer.write_stream(self._kind, view)
        return n


# --- input ----------------------------------------------------------------

# What Inbox.get() returns at the end of input (recv() returns None), and
# on every later call: it stays in the inbox once it arrives.
END_OF_INPUT = object()


class Inbox:
    """Input messages received but not yet consumed by recv().

    Unbounded, so the stdin reader never blocks on the function; the
    controller keeps within the credit limits (max_inputs messages, EOF
    included, and max_input_bytes + 1 MiB of payload, the message being
    assembled included), and a violation is a protocol error.  Consuming
    a message (or the end of input, once) sends CREDIT.
    """

    def __init__(self, writer, max_inputs=DEFAULT_MAX_INPUTS,
                 max_input_bytes=DEFAULT_MAX_INPUT_BYTES):
        self._writer = writer
        self._guard = writer._guard
        self._cond = threading.Condition(threading.Lock())
        self._items = collections.deque()
        self._max_inputs = max_inputs
        self._max_bytes = max_input_bytes + INPUT_BYTES_SLACK
        self.received = 0  # complete INPUT messages + EOF (reader thread)
        self._consumed = 0  # messages + the end of input, once
        self._bytes = 0  # payload bytes received, not consumed (+ partial)
        self._eof_seen = False

    # reader thread

    def add_bytes(self, n):
        """An INPUT frame of n payload bytes arrived."""
        with self._cond:
            self._bytes += n
            if self._bytes > self._max_bytes:
                raise ProtocolError(
                    "%d bytes of unconsumed input exceed max_input_bytes + 1 MiB (%d)"
                    % (self._bytes, self._max_bytes))

    def drop_bytes(self, n):
        """A partial message of n bytes was discarded (RESUME)."""
        with self._cond:
            self._bytes -= n

    def put(self, message):
        with self._cond:
            self.received += 1
            self._items.append(message)
            self._check_count()
            self._cond.notify()

    def put_eof(self, counted=True):
        with self._cond:
            if counted:
                self.received += 1
                self._check_count()
            self._items.append(END_OF_INPUT)
            self._cond.notify_all()

    def _check_count(self):
        if self.received - self._consumed > self._max_inputs:
            raise ProtocolError(
                "%d unconsumed inputs exceed max_inputs (%d)"
                % (self.received - self._consumed, self._max_inputs))

    # the function

    def get(self):
        """The next message, or END_OF_INPUT (which stays), blocking until
        there is one.  A signal can interrupt the wait but not the taking."""
        in_main = self._guard.enter()
        try:
            with self._cond:
                while not self._items:
                    self._guard.wait(self._cond, in_main)
                item = self._items[0]
                if item is END_OF_INPUT:
                    if self._eof_seen:
                        return item
                    self._eof_seen = True
                else:
                    self._items.popleft()
                    self._bytes -= len(item)
                self._consumed += 1
                consumed = self._consumed
            self._writer.credit(consumed)
            return item
        finally:
            self._guard.leave(in_main)

    def empty(self):
        with self._cond:
            return not self._items


# --- the channel ----------------------------------------------------------

class Channel:
    """What the driver installs: where messages go and come from."""

    def __init__(self, writer, inbox, flush_output):
        self.writer = writer
        self.inbox = inbox  # Inbox: bytes, then END_OF_INPUT
        self.flush_output = flush_output  # callable: flush stdout/stderr


_channel = None


def install(channel):
    """The driver's call: from now on send/recv/poll use `channel`."""
    global _channel
    _channel = channel


def get_channel():
    """The installed Channel, for send/recv/poll (bento.py)."""
    if _channel is None:
        raise RuntimeError("bento: send/recv/poll only work inside the Bento driver")
    if _channel.writer.in_child:
        raise RuntimeError(
            "bento: send/recv/poll are not available in a forked child process")
    return _channel
