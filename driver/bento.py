"""Bento function API: send(), recv() and poll().

Inside a Bento container these three names are also available as builtins,
so a function can use them without importing anything.  This module also
holds the wire-protocol primitives shared with the driver (bento_driver.py);
they are private to Bento and not part of the function API.

Frame format (both directions): an 8-byte header, then the payload.
  byte 0    kind (u8)
  byte 1    flags (u8); bit 0 = END, other bits must be 0
  bytes 2-3 reserved, must be 0
  bytes 4-7 payload length, u32 big-endian, at most MAX_PAYLOAD
See docs/driver.md.
"""

import io
import os
import select
import signal
import struct
import threading

__all__ = ["send", "recv", "poll"]

# --- wire protocol --------------------------------------------------------

HEADER = struct.Struct(">BBHI")  # kind, flags, reserved, length
HEADER_SIZE = HEADER.size  # 8
MAX_PAYLOAD = 1 << 20  # 1 MiB: the largest payload either side accepts
CHUNK_SIZE = 256 << 10  # 256 KiB: the size the driver chunks output in

FLAG_END = 0x01

# container -> controller
KIND_DATA = 1
KIND_STDOUT = 2
KIND_STDERR = 3
# controller -> container
KIND_START = 16
KIND_INPUT = 17
KIND_EOF = 18

_STDIN_KINDS = frozenset((KIND_START, KIND_INPUT, KIND_EOF))


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


class FrameWriter:
    """Writes frames to a file descriptor.

    One re-entrant lock serialises every frame, and a whole DATA message is
    written under it, so frames from different threads never interleave
    inside a frame and the chunks of one message stay together.

    Signals: a Python signal handler that raises (KeyboardInterrupt, or the
    driver's SIGTERM handler) could fire between two os.write() calls of one
    frame and leave a truncated frame on the stream.  The driver's handlers
    therefore ask `deferring_signals()` first; while the main thread is inside
    a write they only record the signal, and the writer re-raises it (with
    signal.raise_signal) once the frame or message is complete.
    """

    def __init__(self, fd):
        self._fd = fd
        self._lock = threading.RLock()
        self._main_ident = threading.main_thread().ident
        self._main_depth = 0  # only touched by the main thread
        self._deferred_signal = None

    # Signal deferral (see class docstring).  Signal handlers run in the main
    # thread, so only the main thread's nesting depth matters.
    def deferring_signals(self, signum):
        """Called from a signal handler: return True (and remember signum) if
        the main thread is in the middle of writing a frame."""
        if self._main_depth > 0:
            self._deferred_signal = signum
            return True
        self._deferred_signal = None
        return False

    def _enter(self):
        if threading.get_ident() == self._main_ident:
            self._main_depth += 1
            return True
        return False

    def _leave(self, in_main):
        if in_main:
            self._main_depth -= 1
            if self._main_depth == 0 and self._deferred_signal is not None:
                signum, self._deferred_signal = self._deferred_signal, None
                signal.raise_signal(signum)

    def _write_all(self, header, payload):
        bufs = [memoryview(header)]
        if len(payload):
            bufs.append(payload)
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
            while n:
                first = len(bufs[0])
                if n >= first:
                    n -= first
                    bufs.pop(0)
                else:
                    bufs[0] = bufs[0][n:]
                    n = 0

    def _frame(self, kind, flags, payload):
        self._write_all(HEADER.pack(kind, flags, 0, len(payload)), payload)

    def write_stream(self, kind, data):
        """Write bytes as STDOUT/STDERR frames (no END flag); nothing for b""."""
        view = _byte_view(data)
        if not len(view):
            return
        in_main = self._enter()
        try:
            with self._lock:
                for start in range(0, len(view), CHUNK_SIZE):
                    self._frame(kind, 0, view[start:start + CHUNK_SIZE])
        finally:
            self._leave(in_main)

    def write_message(self, kind, data):
        """Write one message as frames of `kind`, END on the last one.  An
        empty message is one empty frame with END."""
        view = _byte_view(data)
        total = len(view)
        in_main = self._enter()
        try:
            with self._lock:
                if total == 0:
                    self._frame(kind, FLAG_END, view)
                    return
                for start in range(0, total, CHUNK_SIZE):
                    end = min(start + CHUNK_SIZE, total)
                    flags = FLAG_END if end == total else 0
                    self._frame(kind, flags, view[start:end])
        finally:
            self._leave(in_main)


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
        with memoryview(b) as view:
            n = view.nbytes
            self._writer.write_stream(self._kind, view)
        return n


# --- function API ---------------------------------------------------------

_EOF = object()  # end-of-input sentinel; stays in the inbox once it arrives


class Channel:
    """What the driver installs: where messages go and come from."""

    def __init__(self, writer, inbox, flush_output):
        self.writer = writer
        self.inbox = inbox  # queue.Queue of bytes, then _EOF
        self.flush_output = flush_output  # callable: flush stdout/stderr


_channel = None


def _install(channel):
    global _channel
    _channel = channel


def _get_channel():
    if _channel is None:
        raise RuntimeError("bento: send/recv/poll only work inside the Bento driver")
    return _channel


def send(data):
    """Send one message to the client.  `data` is str (sent UTF-8 encoded) or
    a bytes-like object (bytes, bytearray, memoryview)."""
    if isinstance(data, str):
        payload = data.encode("utf-8")
    elif isinstance(data, (bytes, bytearray, memoryview)):
        payload = data
    else:
        raise TypeError(
            "send() argument must be str, bytes, bytearray or memoryview, not %s"
            % type(data).__name__)
    channel = _get_channel()
    # Output printed before send() reaches the client before the message.
    channel.flush_output()
    channel.writer.write_message(KIND_DATA, payload)


def recv():
    """Return the next input message as bytes, blocking until one arrives,
    or None once the input has ended (and on every call after that)."""
    channel = _get_channel()
    # Don't sit on a half-printed prompt while waiting for input.
    channel.flush_output()
    item = channel.inbox.get()
    if item is _EOF:
        channel.inbox.put(item)  # keep it there for the next recv()/poll()
        return None
    return item


def poll():
    """True if recv() would return without blocking: a message is waiting or
    the input has ended."""
    return not _get_channel().inbox.empty()
