"""Tests for the Bento driver: run bento_driver.py as a subprocess, play the
controller (speak the frame protocol, acknowledge output), and check what
comes back.

    python3 -m unittest discover -s driver -v

BENTO_TEST_PYTHON selects the interpreter that runs the driver (default: the
one running the tests).  BENTO_TEST_COMMAND replaces the whole driver command
line, e.g. to run the suite against a built image:

    BENTO_TEST_COMMAND="docker run --rm -i --network none --read-only \
        --tmpfs /tmp bento-driver-check" python3 -m unittest discover -s driver
"""

import collections
import json
import os
import shlex
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "bento_driver.py")
PYTHON = os.environ.get("BENTO_TEST_PYTHON", sys.executable)
COMMAND = (shlex.split(os.environ["BENTO_TEST_COMMAND"])
           if os.environ.get("BENTO_TEST_COMMAND")
           else [PYTHON, "-u", "-I", "-B", DRIVER])
TIMEOUT = 60

HEADER = struct.Struct(">BBHI")
U64 = struct.Struct(">Q")
SYNC_PAYLOAD = struct.Struct(">16sQQQ")
MAX_PAYLOAD = 1 << 20
CHUNK = 256 << 10  # the driver's output chunk size
END = 1
DATA, STDOUT, STDERR, SYNC, CREDIT, READY = 1, 2, 3, 4, 5, 6
START, INPUT, EOF, ACK, RESUME = 16, 17, 18, 19, 20
RETRANSMITTABLE = (DATA, STDOUT, STDERR)


def frame(kind, payload=b"", flags=END, reserved=0, length=None):
    if length is None:
        length = len(payload)
    return HEADER.pack(kind, flags, reserved, length) + payload


def ack_frame(offset):
    return frame(ACK, U64.pack(offset), flags=0)


def resume_frame(offset, nonce):
    return frame(RESUME, U64.pack(offset) + nonce, flags=0)


def message_frames(kind, payload, chunk=MAX_PAYLOAD):
    """One message as frames of at most `chunk` bytes, END on the last."""
    if not payload:
        return frame(kind, b"", END)
    out = []
    for start in range(0, len(payload), chunk):
        piece = payload[start:start + chunk]
        last = start + chunk >= len(payload)
        out.append(frame(kind, piece, END if last else 0))
    return b"".join(out)


def start_frames(code, args=(), filename="function.py", chunk=MAX_PAYLOAD, **extra):
    body = {"code": textwrap.dedent(code), "args": list(args), "filename": filename}
    body.update(extra)
    return message_frames(START, json.dumps(body).encode("utf-8"), chunk)


# One frame from the driver.  offset: its out_offset (None for SYNC/CREDIT);
# raw: header + payload as received.
Frame = collections.namedtuple("Frame", "kind flags payload offset raw")


class FrameParser:
    """Incremental, strict parser of the driver's stdout.  Tracks out_offset:
    it counts DATA/STDOUT/STDERR frames and restarts at each SYNC's offset."""

    def __init__(self):
        self.buf = bytearray()
        self.offset = 0
        self.error = None
        self.seen_any = False  # READY must come before any other frame

    def feed(self, data):
        """Return the complete frames in data (plus what was left over)."""
        if self.error:
            return []
        self.buf += data
        frames = []
        pos = 0
        buf = self.buf
        while len(buf) - pos >= 8:
            kind, flags, reserved, length = HEADER.unpack_from(buf, pos)
            problem = None
            if kind not in (DATA, STDOUT, STDERR, SYNC, CREDIT, READY):
                problem = "unknown frame kind %d" % kind
            elif reserved:
                problem = "nonzero reserved bytes"
            elif length > MAX_PAYLOAD:
                problem = "oversized frame (%d bytes)" % length
            elif kind == DATA and flags not in (0, END):
                problem = "bad DATA flags %d" % flags
            elif kind != DATA and flags:
                problem = "flags %d on a kind %d frame" % (flags, kind)
            elif kind == SYNC and length != SYNC_PAYLOAD.size:
                problem = "SYNC of %d bytes" % length
            elif kind == CREDIT and length != 8:
                problem = "CREDIT of %d bytes" % length
            elif kind == READY and (length or self.seen_any):
                problem = "READY of %d bytes, or not first" % length
            if problem:
                self.error = "%s at stream byte %d" % (problem, pos)
                break
            if len(buf) - pos - 8 < length:
                break
            raw = bytes(buf[pos:pos + 8 + length])
            payload = raw[8:]
            if kind in RETRANSMITTABLE:
                frames.append(Frame(kind, flags, payload, self.offset, raw))
                self.offset += len(raw)
            else:
                if kind == SYNC:
                    self.offset = SYNC_PAYLOAD.unpack(payload)[1]

                frames.append(Frame(kind, flags, payload, None, raw))
            self.seen_any = True
            pos += 8 + length
        del buf[:pos]
        return frames


class Result:
    """What a finished driver produced: exit status, frames, messages."""

    def __init__(self, testcase, returncode, frames, raw_stderr, error=None):
        testcase.assertIsNone(error, "malformed output: %s" % error)
        self.returncode = returncode
        self.raw_stderr = raw_stderr.decode("utf-8", "replace")
        self.all_frames = frames
        self.frames = [(f.kind, f.flags, f.payload) for f in frames
                       if f.kind in RETRANSMITTABLE]
        self.credits = [U64.unpack(f.payload)[0] for f in frames if f.kind == CREDIT]
        self.messages = []
        self.events = []  # ("data", bytes) / ("stdout", text) / ("stderr", text)
        parts = []
        for kind, flags, payload in self.frames:
            if kind == DATA:
                parts.append(payload)
                if flags & END:
                    message = b"".join(parts)
                    parts = []
                    self.messages.append(message)
                    self.events.append(("data", message))
            else:
                name = "stdout" if kind == STDOUT else "stderr"
                text = payload.decode("utf-8")
                if self.events and self.events[-1][0] == name:
                    self.events[-1] = (name, self.events[-1][1] + text)
                else:
                    self.events.append((name, text))
        testcase.assertEqual(parts, [], "DATA message without END")
        self.stdout = "".join(t for k, t in self.events if k == "stdout")
        self.stderr = "".join(t for k, t in self.events if k == "stderr")

    def __repr__(self):
        return "<Result rc=%s events=%r raw_stderr=%r>" % (
            self.returncode, [(k, v[:200]) for k, v in self.events],
            self.raw_stderr[:2000])


class Driver:
    """A running driver, with the test playing the controller.

    A thread reads and checks the driver's stdout; with auto_ack it ACKs
    each batch of output as it arrives (the driver exits only once all its
    output is acknowledged).  Another thread drains the raw stderr.  stdin
    stays open until close_stdin(): a closed stdin means "controller gone".
    """

    def __init__(self, testcase, auto_ack=True):
        self.testcase = testcase
        self.auto_ack = auto_ack
        self.proc = subprocess.Popen(
            COMMAND, cwd=HERE,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        testcase.addCleanup(self.close)
        self.cond = threading.Condition()
        self.frames = []
        self.ready = 0  # READY frames seen
        self.parser = FrameParser()
        self.stdout_closed = False
        self.acked = 0
        self.stderr_chunks = []
        self.cursor = 0  # next_message() position in self.frames
        self._stdin_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True)]
        for t in self._threads:
            t.start()

    # -- stdin ---------------------------------------------------------------

    def write(self, data):
        with self._stdin_lock:
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass  # the driver has exited (or stdin was closed)

    def ack(self, offset):
        with self.cond:
            self.acked = max(self.acked, offset)
        self.write(ack_frame(offset))

    def close_stdin(self):
        with self._stdin_lock:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass

    # -- stdout / stderr -----------------------------------------------------

    def _read_stdout(self):
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            new = self.parser.feed(chunk)
            with self.cond:
                # READY (checked by the parser: first, once, empty) is
                # counted here, not kept with the output frames.
                self.ready += sum(1 for f in new if f.kind == READY)
                self.frames.extend(f for f in new if f.kind != READY)
                offset = self.parser.offset
                self.cond.notify_all()
            if self.auto_ack and offset > self.acked and not self.parser.error:
                self.ack(offset)
        with self.cond:
            if self.parser.buf and not self.parser.error:
                self.parser.error = "stream ended inside a frame"
            self.stdout_closed = True
            self.cond.notify_all()

    def _read_stderr(self):
        fd = self.proc.stderr.fileno()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self.stderr_chunks.append(chunk)

    @property
    def raw_stderr(self):
        return b"".join(self.stderr_chunks).decode("utf-8", "replace")

    def wait_for(self, predicate, what="the expected output", timeout=TIMEOUT):
        """Wait until predicate(frames) is true; return its value."""
        with self.cond:
            value = self.cond.wait_for(
                lambda: predicate(self.frames) or self.stdout_closed or self.parser.error,
                timeout)
            value = predicate(self.frames)
            if not value:
                self.testcase.fail("driver did not produce %s (error=%s, frames=%r, "
                                   "stderr=%r)" % (what, self.parser.error,
                                                   self.frames[-5:], self.raw_stderr))
            return value

    def wait_output(self, nframes, kinds=RETRANSMITTABLE):
        """Wait for at least nframes frames of the given kinds; return them."""
        def enough(frames):
            picked = [f for f in frames if f.kind in kinds]
            return picked if len(picked) >= nframes else None
        return self.wait_for(enough, "%d frames of kinds %s" % (nframes, kinds))

    def next_message(self):
        """Wait for the next complete DATA message (after the last one
        returned) and return it."""
        def find(frames):
            parts = []
            for i in range(self.cursor, len(frames)):
                f = frames[i]
                if f.kind == DATA:
                    parts.append(f.payload)
                    if f.flags & END:
                        return i + 1, b"".join(parts)
            return None
        index, message = self.wait_for(find, "a DATA message")
        self.cursor = index
        return message

    def quiet(self, seconds=0.15):
        """Sleep, then return the frames received so far."""
        time.sleep(seconds)
        with self.cond:
            return list(self.frames)

    # -- exit ----------------------------------------------------------------

    def wait(self, timeout=TIMEOUT):
        """Wait for the driver to exit; return its status."""
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.testcase.fail("driver did not exit (frames=%r, stderr=%r)"
                               % (self.frames[-5:], self.raw_stderr))
        for t in self._threads:
            t.join(timeout)
        return status

    def alive(self):
        return self.proc.poll() is None

    def result(self):
        status = self.wait()
        return Result(self.testcase, status, self.frames,
                      b"".join(self.stderr_chunks), self.parser.error)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for t in self._threads:
            t.join(5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


class DriverTestCase(unittest.TestCase):
    def run_raw(self, stdin_bytes, close_stdin=False, auto_ack=True):
        """Run a driver fed stdin_bytes, acknowledging its output, until it
        exits.  close_stdin closes stdin after the bytes (the controller
        going away), as malformed-input tests need."""
        d = Driver(self, auto_ack=auto_ack)
        d.write(stdin_bytes)
        if close_stdin:
            d.close_stdin()
        return d.result()

    def run_many(self, stdin_list, close_stdin=False):
        """run_raw() for several inputs, the drivers running side by side."""
        drivers = []
        for stdin_bytes in stdin_list:
            d = Driver(self)
            d.write(stdin_bytes)
            if close_stdin:
                d.close_stdin()
            drivers.append(d)
        return [d.result() for d in drivers]

    @staticmethod
    def driver_input(code, args=(), inputs=(), eof=True):
        data = start_frames(code, args)
        for message in inputs:
            data += message_frames(INPUT, message)
        if eof:
            data += frame(EOF)
        return data

    def run_driver(self, code, args=(), inputs=(), eof=True):
        return self.run_raw(self.driver_input(code, args, inputs, eof),
                            close_stdin=not eof)

    def session(self, code, args=(), auto_ack=True, **start):
        """An interactive driver: START sent, nothing else."""
        d = Driver(self, auto_ack=auto_ack)
        d.write(start_frames(code, args, **start))
        return d

    def assertOk(self, result):
        self.assertEqual(result.returncode, 0, result)


class BasicTests(DriverTestCase):
    def test_hello(self):
        r = self.run_driver('send("hello")')
        self.assertOk(r)
        self.assertEqual(r.messages, [b"hello"])

    def test_env_is_set_before_the_function_and_reaches_its_subprocesses(self):
        code = """
            import os, subprocess, sys
            send(os.environ["GREETING"])
            child = subprocess.run([sys.executable, "-c",
                                    "import os; print(os.environ['GREETING'])"],
                                   capture_output=True, text=True)
            send(child.stdout.strip())
        """
        d = self.session(code, env={"GREETING": "h\u00e9llo world"})
        try:
            self.assertEqual(d.next_message(), "h\u00e9llo world".encode())
            self.assertEqual(d.next_message(), "h\u00e9llo world".encode())
        finally:
            d.close()

    def test_ready_comes_first_and_before_start(self):
        d = Driver(self)
        try:
            # Nothing written to its stdin yet: READY, and nothing else.
            d.wait_for(lambda frames: d.ready or None, "READY")
            self.assertEqual(d.quiet(), [])
            self.assertEqual(d.ready, 1)
            d.write(start_frames('send("after")'))
            self.assertEqual(d.next_message(), b"after")
        finally:
            d.close()

    def test_the_output_pipe_is_grown_before_ready(self):
        import fcntl
        if not hasattr(fcntl, "F_GETPIPE_SZ"):
            self.skipTest("no F_GETPIPE_SZ on this platform")
        if os.environ.get("BENTO_TEST_COMMAND"):
            # The pipe we read is the container engine's, not the driver's.
            self.skipTest("the driver does not write to our pipe directly")
        d = Driver(self)
        try:
            d.wait_for(lambda frames: d.ready or None, "READY")
            import bento_driver
            want = bento_driver.PIPE_SIZE
            try:
                with open("/proc/sys/fs/pipe-max-size") as f:
                    want = min(want, int(f.read()))
            except (OSError, ValueError):
                pass
            size = fcntl.fcntl(d.proc.stdout.fileno(), fcntl.F_GETPIPE_SZ)
            self.assertEqual(size, want)
        finally:
            d.close()

    def test_print_and_send_ordering(self):
        r = self.run_driver("""
            import sys
            print("one")
            send("m1")
            print("two", end="")   # no newline: send() must flush it first
            send(b"m2")
            print("err", file=sys.stderr)
            print("three")
        """)
        self.assertOk(r)
        self.assertEqual(r.events, [
            ("stdout", "one\n"), ("data", b"m1"), ("stdout", "two"),
            ("data", b"m2"), ("stderr", "err\n"), ("stdout", "three\n")])

    def test_unflushed_output_is_not_lost(self):
        r = self.run_driver('import sys; print("partial", end=""); sys.stdout.flush(); '
                            'sys.stdout.buffer.write(b"!"); sys.stderr.write("e")')
        self.assertOk(r)
        self.assertEqual(r.stdout, "partial!")
        self.assertEqual(r.stderr, "e")

    def test_unicode_output(self):
        r = self.run_driver(r'''
            print("h\u00e9llo \u2713")
            print("lone \udcff surrogate")
            send("\u00fc")
        ''')
        self.assertOk(r)
        self.assertEqual(r.stdout, "h\u00e9llo \u2713\nlone \\udcff surrogate\n")
        self.assertEqual(r.messages, ["\u00fc".encode("utf-8")])

    def test_send_accepted_types(self):
        r = self.run_driver("""
            import array
            send("s"); send(b"b"); send(bytearray(b"ba")); send(memoryview(b"xmvx")[1:3])
            send(memoryview(array.array("H", [0x4142])))   # format "H", cast to bytes
            send(memoryview(b"abcdef")[::2])     # non-contiguous
            send(b"")
            for bad in (42, None, array.array("B", b"x"), ["list"]):
                try:
                    send(bad)
                except TypeError as e:
                    send("TypeError: " + str(e))
        """)
        self.assertOk(r)
        self.assertEqual(r.messages[:7], [
            b"s", b"b", b"ba", b"mv", (0x4142).to_bytes(2, sys.byteorder), b"ace", b""])
        self.assertEqual(len(r.messages), 11, r)
        for m, name in zip(r.messages[7:], [b"int", b"NoneType", b"array", b"list"]):
            self.assertTrue(m.startswith(b"TypeError: "), r)
            self.assertIn(name, m)

    def test_empty_message_is_one_end_frame(self):
        r = self.run_driver('send("")')
        self.assertOk(r)
        self.assertEqual(r.frames, [(DATA, END, b"")])

    def test_name_is_main_and_namespace_is_clean(self):
        r = self.run_driver("""
            import builtins
            if __name__ == "__main__":
                send("main block ran")
            send(" ".join(sorted(globals())))
            send(repr(send is builtins.send and recv is builtins.recv and poll is builtins.poll))
            import sys
            send(repr(sys.modules["__main__"] is sys.modules[__name__]))
        """)
        self.assertOk(r)
        self.assertEqual(r.messages[0], b"main block ran")
        names = set(r.messages[1].decode().split())
        self.assertLessEqual(
            names, {"__name__", "__doc__", "__package__", "__loader__", "__spec__",
                    "__file__", "__builtins__", "builtins"}, r.messages[1])
        self.assertEqual(r.messages[2:], [b"True", b"True"])

    def test_from_bento_import(self):
        r = self.run_driver("""
            from bento import send as s, recv as r, poll as p
            import bento, builtins
            s("via module")
            s(repr(r is builtins.recv and p is builtins.poll and bento.send is s))
            s(r())
        """, inputs=[b"x"])
        self.assertOk(r)
        self.assertEqual(r.messages, [b"via module", b"True", b"x"])

    def test_dataclass_and_pickle_in_main(self):
        # Need sys.modules["__main__"] to be the function's module.
        r = self.run_driver("""
            import dataclasses, pickle
            @dataclasses.dataclass
            class P:
                x: int
            send(repr(pickle.loads(pickle.dumps(P(3)))))
        """)
        self.assertOk(r)
        self.assertEqual(r.messages, [b"P(x=3)"])


class InputTests(DriverTestCase):
    def test_echo_until_eof(self):
        inputs = [b"first", b"", bytes(range(256)), "\u00e9".encode()]
        r = self.run_driver("""
            while True:
                m = recv()
                if m is None:
                    break
                assert type(m) is bytes, type(m)
                send(m)
            send(repr(recv()))
            send(repr(recv()))
        """, inputs=inputs)
        self.assertOk(r)
        self.assertEqual(r.messages, inputs + [b"None", b"None"])

    def test_input_message_split_over_frames(self):
        big = os.urandom(3 * MAX_PAYLOAD + 123)
        data = start_frames("""
            m = recv()
            send(str(len(m)))
            send(m)
            send(recv())
        """)
        data += message_frames(INPUT, big)  # four frames, END on the last
        data += message_frames(INPUT, b"abc", chunk=1)  # three 1-byte frames
        data += frame(EOF)
        r = self.run_raw(data)
        self.assertOk(r)
        self.assertEqual(r.messages[0], str(len(big)).encode())
        self.assertEqual(r.messages[1], big)
        self.assertEqual(r.messages[2], b"abc")

    def test_start_split_over_frames(self):
        code = "send(%r)\n" % ("x" * 100) + "#" + "y" * 5000 + "\n"
        r = self.run_raw(start_frames(code, chunk=1000) + frame(EOF))
        self.assertOk(r)
        self.assertEqual(r.messages, [b"x" * 100])

    def test_stdin_closed_without_eof_is_eof(self):
        r = self.run_driver("""
            send(recv())
            send(repr(recv()))
            send(repr(poll()))
        """, inputs=[b"only"], eof=False)
        self.assertOk(r)
        self.assertEqual(r.messages, [b"only", b"None", b"True"])

    def test_poll(self):
        s = self.session("""
            import time
            send(repr(poll()))          # nothing sent yet
            send(b"got " + recv())
            deadline = time.monotonic() + 30
            while not poll() and time.monotonic() < deadline:
                time.sleep(0.01)
            send(repr(poll()))          # a message is waiting
            send(recv())
            while not poll() and time.monotonic() < deadline:
                time.sleep(0.01)
            send(repr(poll()))          # end of input reached
            send(repr(recv()))
            send(repr(poll()))
        """)
        self.assertEqual(s.next_message(), b"False")
        s.write(message_frames(INPUT, b"a"))
        self.assertEqual(s.next_message(), b"got a")
        s.write(message_frames(INPUT, b"b"))
        self.assertEqual(s.next_message(), b"True")
        self.assertEqual(s.next_message(), b"b")
        s.write(frame(EOF))
        self.assertEqual(s.next_message(), b"True")
        self.assertEqual(s.next_message(), b"None")
        self.assertEqual(s.next_message(), b"True")
        self.assertEqual(s.wait(), 0)

    def test_builtin_input_does_not_read_frames(self):
        r = self.run_driver("""
            import sys
            try:
                input()
            except EOFError:
                send("EOFError")
            send(sys.stdin.read() or "empty")
            send(recv())
        """, inputs=[b"frame"])
        self.assertOk(r)
        self.assertEqual(r.messages, [b"EOFError", b"empty", b"frame"])


class MainTests(DriverTestCase):
    def test_main_args_and_return_value(self):
        r = self.run_driver("""
            def main(*args):
                return [[type(a).__name__, a] for a in args]
        """, args=["1", '"s"', "plain", '{"a": [1, 2]}', "true", "null", "[1"])
        self.assertOk(r)
        self.assertEqual(len(r.messages), 1, r)
        self.assertEqual(json.loads(r.messages[0]), [
            ["int", 1], ["str", "s"], ["str", "plain"], ["dict", {"a": [1, 2]}],
            ["bool", True], ["NoneType", None], ["str", "[1"]])

    def test_main_return_variants(self):
        cases = [
            ('return "text"', [b"text"]),
            ('return b"\\x00raw"', [b"\x00raw"]),
            ("return None", []),
            ("pass", []),
            ("return 3.5", [b"3.5"]),
            ("return object", [b"<class 'object'>"]),  # not JSON: repr
            ("return {1, 2}", [b"{1, 2}"]),
        ]
        results = self.run_many(self.driver_input("def main():\n    %s\n" % body)
                                for body, _ in cases)
        for (body, expected), r in zip(cases, results):
            with self.subTest(body=body):
                self.assertOk(r)
                self.assertEqual(r.messages, expected)

    def test_main_called_after_module_code(self):
        r = self.run_driver("""
            send("module")
            def main(x):
                send("main")
                return x + 1
        """, args=["41"])
        self.assertOk(r)
        self.assertEqual(r.messages, [b"module", b"main", b"42"])

    def test_non_callable_main_is_ignored(self):
        r = self.run_driver('main = 5\nsend("ok")')
        self.assertOk(r)
        self.assertEqual(r.messages, [b"ok"])

    def test_async_main(self):
        r = self.run_driver("""
            import asyncio
            async def main(n):
                await asyncio.sleep(0)
                return n * 2
        """, args=["21"])
        self.assertOk(r)
        self.assertEqual(r.messages, [b"42"])

    def test_sys_argv(self):
        r = self.run_driver("import sys\nsend(repr(sys.argv))", args=["a", "1"])
        self.assertOk(r)
        self.assertEqual(r.messages, [b"['function.py', 'a', '1']"])


class ErrorTests(DriverTestCase):
    def test_exception_traceback_and_exit_1(self):
        r = self.run_driver("""
            print("before")
            def inner():
                return 1 / 0
            inner()
        """)
        self.assertEqual(r.returncode, 1, r)
        self.assertEqual(r.stdout, "before\n")
        self.assertIn("Traceback (most recent call last):", r.stderr)
        self.assertIn('File "function.py", line 4, in inner', r.stderr)
        self.assertIn("return 1 / 0", r.stderr)  # source lines are shown
        self.assertIn("ZeroDivisionError: division by zero", r.stderr)
        self.assertNotIn("bento_driver", r.stderr)
        self.assertEqual(r.raw_stderr, "")

    def test_exception_in_main(self):
        r = self.run_driver("""
            def main(x):
                raise ValueError("bad %s" % x)
        """, args=["7"])
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("in main", r.stderr)
        self.assertIn("ValueError: bad 7", r.stderr)
        self.assertNotIn("bento_driver", r.stderr)
        self.assertEqual(r.messages, [])

    def test_chained_exception(self):
        r = self.run_driver("""
            try:
                {}["k"]
            except KeyError as e:
                raise RuntimeError("wrapped") from e
        """)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("KeyError: 'k'", r.stderr)
        self.assertIn("RuntimeError: wrapped", r.stderr)
        self.assertNotIn("bento_driver", r.stderr)

    def test_syntax_error(self):
        r = self.run_driver('send("never")\nx = (1,\n')
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("SyntaxError", r.stderr)
        self.assertIn('File "function.py"', r.stderr)
        self.assertNotIn("bento_driver", r.stderr)
        self.assertEqual(r.messages, [])

    def test_sys_exit_codes(self):
        cases = [
            ("sys.exit(3)", 3, ""),
            ("sys.exit()", 0, ""),
            ("sys.exit(0)", 0, ""),
            ("sys.exit(None)", 0, ""),
            ('sys.exit("fatal problem")', 1, "fatal problem\n"),
            ("raise SystemExit(4)", 4, ""),
        ]
        results = self.run_many(
            self.driver_input('import sys\nprint("out")\n%s\nsend("unreachable")' % stmt)
            for stmt, _, _ in cases)
        for (stmt, code, stderr), r in zip(cases, results):
            with self.subTest(stmt=stmt):
                self.assertEqual(r.returncode, code, r)
                self.assertEqual(r.stderr, stderr)
                self.assertEqual(r.stdout, "out\n")
                self.assertEqual(r.messages, [])

    def test_sys_exit_in_main(self):
        r = self.run_driver("import sys\ndef main():\n    sys.exit(5)\n")
        self.assertEqual(r.returncode, 5, r)

    def test_keyboard_interrupt(self):
        r = self.run_driver("raise KeyboardInterrupt")
        self.assertEqual(r.returncode, 130, r)
        self.assertIn("KeyboardInterrupt", r.stderr)

    def test_recv_interrupted_by_sigint(self):
        s = self.session('send("ready")\nrecv()\n')
        self.assertEqual(s.next_message(), b"ready")
        s.proc.send_signal(signal.SIGINT)
        self.assertEqual(s.wait(), 130)

    def test_sigterm(self):
        s = self.session("""
            try:
                send("ready")
                recv()
            finally:
                print("cleanup ran")
        """)
        self.assertEqual(s.next_message(), b"ready")
        s.proc.send_signal(signal.SIGTERM)
        r = s.result()
        self.assertEqual(r.returncode, 143, r)
        self.assertEqual(r.frames, [(DATA, END, b"ready"), (STDOUT, 0, b"cleanup ran\n")])


class StreamTests(DriverTestCase):
    def test_large_message_is_chunked(self):
        r = self.run_driver("""
            import random
            data = random.Random(42).randbytes(5 * 1024 * 1024)
            send(data)
            send("after")
        """)
        self.assertOk(r)
        import random
        expected = random.Random(42).randbytes(5 * 1024 * 1024)
        data_frames = [f for f in r.frames if f[0] == DATA]
        self.assertGreater(len(data_frames), 5)
        for kind, flags, payload in data_frames[:-2]:
            self.assertEqual(flags, 0)
            self.assertLessEqual(len(payload), MAX_PAYLOAD)
            self.assertGreater(len(payload), 0)
        self.assertEqual(data_frames[-2][1], END)
        self.assertEqual(data_frames[-1], (DATA, END, b"after"))
        self.assertEqual(r.messages, [expected, b"after"])

    def test_large_print_is_chunked(self):
        r = self.run_driver('import sys\nprint("x" * 3_000_000)\n'
                            'sys.stderr.buffer.write(b"y" * 2_500_000)')
        self.assertOk(r)
        self.assertEqual(r.stdout, "x" * 3_000_000 + "\n")
        self.assertEqual(r.stderr, "y" * 2_500_000)

    def test_fd1_writes_do_not_corrupt_the_stream(self):
        r = self.run_driver("""
            import os, subprocess, sys
            os.write(1, b"garbage-from-fd1\\n")
            print("framed")
            subprocess.run(["sh", "-c", "echo garbage-from-child"], check=True)
            os.write(sys.stdout.fileno(), b"garbage-via-fileno\\n")
            send("still fine")
        """)
        self.assertOk(r)
        self.assertEqual(r.messages, [b"still fine"])
        self.assertEqual(r.stdout, "framed\n")
        self.assertNotIn("garbage", r.stdout + r.stderr)
        self.assertIn("garbage-from-fd1", r.raw_stderr)
        self.assertIn("garbage-from-child", r.raw_stderr)
        self.assertIn("garbage-via-fileno", r.raw_stderr)

    def test_threads(self):
        r = self.run_driver("""
            import threading
            def work(n):
                for i in range(200):
                    print("thread %d line %d" % (n, i))
                    send(("%d:%d:" % (n, i)).encode() + bytes([n]) * 300_000)
            threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        """)
        self.assertOk(r)
        self.assertEqual(len(r.messages), 800)
        for m in r.messages:
            n = int(m.split(b":", 1)[0])
            self.assertTrue(m.endswith(bytes([n]) * 300_000))
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 800)
        self.assertEqual(sorted(lines), sorted(
            "thread %d line %d" % (n, i) for n in range(4) for i in range(200)))

    def test_non_daemon_threads_finish_and_atexit_runs(self):
        r = self.run_driver("""
            import atexit, threading, time
            atexit.register(lambda: print("atexit"))
            def late():
                time.sleep(0.3)
                send("late")
            threading.Thread(target=late).start()
        """)
        self.assertOk(r)
        self.assertEqual(r.messages, [b"late"])
        self.assertEqual(r.stdout, "atexit\n")

    def test_busy_daemon_thread_does_not_hold_up_exit(self):
        r = self.run_driver("""
            import threading, time
            def spam():
                while True:
                    send(b"d" * 300_000)   # two frames per message
                    print("spam")
            threading.Thread(target=spam, daemon=True).start()
            time.sleep(0.2)
            send("main done")
        """)
        self.assertOk(r)  # Result() checked that every message has its END
        self.assertIn(b"main done", r.messages)
        for m in r.messages:
            self.assertIn(m, (b"main done", b"d" * 300_000))

    def test_sigint_during_large_sends_keeps_frames_whole(self):
        r = self.run_driver("""
            import os, signal, threading, time
            def interrupt():
                time.sleep(0.3)
                os.kill(os.getpid(), signal.SIGINT)
            threading.Thread(target=interrupt, daemon=True).start()
            block = b"z" * (2 * 1024 * 1024 + 7)
            while True:
                send(block)
        """)
        # Result() has already checked that every frame is whole.
        self.assertEqual(r.returncode, 130, r)
        self.assertIn("KeyboardInterrupt", r.stderr)
        self.assertGreater(len(r.messages), 0)
        for m in r.messages:
            self.assertEqual(len(m), 2 * 1024 * 1024 + 7)


class ProtocolErrorTests(DriverTestCase):
    def test_malformed_stdin_exits_2(self):
        good_start = start_frames('send("started")\nwhile recv() is not None: pass')
        sleeper = start_frames('send("started")\nimport time\ntime.sleep(60)')
        cases = {
            "empty stdin": b"",
            "first frame is INPUT": frame(INPUT, b"x") + frame(EOF),
            "first frame is EOF": frame(EOF),
            "START without END then EOF": frame(START, b"{", 0),
            "nonzero reserved": frame(START, b"{}", reserved=1),
            "unknown kind": frame(99, b""),
            "output kind on stdin": frame(DATA, b""),
            "unknown flag": frame(START, b'{"code": ""}', flags=3),
            "oversized length": frame(START, b"", length=MAX_PAYLOAD + 1),
            "truncated header": b"\x10\x01\x00",
            "truncated payload": frame(START, b"{}", length=10),
            "START not JSON": frame(START, b"not json"),
            "START not UTF-8": frame(START, b"\xff\xfe"),
            "START not an object": frame(START, b"[]"),
            "START without code": frame(START, b'{"args": []}'),
            "START args not strings": frame(START, b'{"code": "", "args": [1]}'),
            "second START": good_start + good_start,
            "EOF inside INPUT message": good_start + frame(INPUT, b"a", 0) + frame(EOF),
            "stdin closed inside INPUT message": good_start + frame(INPUT, b"a", 0),
            "EOF with payload": good_start + frame(EOF, b"x"),
            "bad frame after input": good_start + frame(INPUT, b"a") + frame(INPUT, b"", reserved=2),
            "ACK before START": ack_frame(0) + good_start,
            "RESUME before START": resume_frame(0, bytes(16)) + good_start,
            "ACK payload too short": good_start + frame(ACK, b"\0" * 7),
            "RESUME payload too long": good_start + frame(RESUME, b"\0" * 25),
            "INPUT after EOF": sleeper + frame(EOF) + frame(INPUT, b"x"),
            "second EOF": sleeper + frame(EOF) + frame(EOF),
            "window not an integer": start_frames("pass", window="1"),
            "negative window": start_frames("pass", window=-1),
            "max_inputs zero": start_frames("pass", max_inputs=0),
            "env not an object": start_frames("pass", env=["A"]),
            "env value not a string": start_frames("pass", env={"A": 1}),
            "env bad name": start_frames("pass", env={"A=B": "x"}),
            "env NUL in value": start_frames("pass", env={"A": "x\0y"}),
        }
        results = self.run_many(cases.values(), close_stdin=True)
        for name, r in zip(cases, results):
            with self.subTest(name):
                self.assertEqual(r.returncode, 2, r)
                self.assertIn("protocol error", r.raw_stderr)

    def test_start_defaults(self):
        r = self.run_raw(frame(START, b'{"code": "send(__file__)", "extra": 1}') + frame(EOF))
        self.assertOk(r)
        self.assertEqual(r.messages, [b"function.py"])

    def test_custom_filename(self):
        body = json.dumps({"code": "1/0", "args": [], "filename": "handler.py"})
        r = self.run_raw(frame(START, body.encode()) + frame(EOF))
        self.assertEqual(r.returncode, 1, r)
        self.assertIn('File "handler.py", line 1', r.stderr)


def end_of(f):
    return f.offset + len(f.raw)


def syncs(frames):
    return [SYNC_PAYLOAD.unpack(f.payload) for f in frames if f.kind == SYNC]


class AckTests(DriverTestCase):
    """Protocol v2: output is kept until acknowledged; exit waits for it."""

    def test_exit_waits_for_ack(self):
        d = self.session('send("x")\nprint("y")\nimport sys\nsys.exit(3)',
                         auto_ack=False)
        frames = d.wait_output(2)
        self.assertEqual([(f.kind, f.payload, f.offset) for f in frames],
                         [(DATA, b"x", 0), (STDOUT, b"y\n", 9)])
        d.quiet()
        self.assertTrue(d.alive(), "exited with output unacknowledged")
        d.ack(end_of(frames[0]))  # not everything yet
        d.quiet()
        self.assertTrue(d.alive(), "exited with output unacknowledged")
        d.ack(end_of(frames[1]))
        self.assertEqual(d.wait(), 3)

    def test_no_output_needs_no_ack(self):
        d = self.session("pass", auto_ack=False)
        self.assertEqual(d.wait(), 0)

    def test_stdin_closed_during_exit_wait_exits(self):
        d = self.session('send("x")', auto_ack=False)
        d.wait_output(1)
        d.quiet(0.1)
        self.assertTrue(d.alive())
        d.close_stdin()  # the controller is gone for good
        self.assertEqual(d.wait(), 0)

    def test_sigterm_still_waits_for_ack(self):
        d = self.session('send("ready")\nrecv()', auto_ack=False)
        f = d.wait_output(1)[0]
        d.proc.send_signal(signal.SIGTERM)
        d.quiet()
        self.assertTrue(d.alive(), "exited with output unacknowledged")
        d.ack(end_of(f))
        self.assertEqual(d.wait(), 143)

    def test_signal_during_exit_wait_exits_at_once(self):
        d = self.session('send("x")\nimport sys\nsys.exit(4)', auto_ack=False)
        d.wait_output(1)
        d.quiet()
        self.assertTrue(d.alive())
        d.proc.send_signal(signal.SIGTERM)
        self.assertEqual(d.wait(), 4)  # the function's own status

    def test_ack_beyond_output_is_a_protocol_error(self):
        d = self.session('send("x")\nrecv()', auto_ack=False)
        f = d.wait_output(1)[0]
        d.ack(end_of(f) + 1)
        self.assertEqual(d.wait(), 2)
        self.assertIn("protocol error", d.raw_stderr)
        self.assertIn("beyond", d.raw_stderr)

    def test_old_and_repeated_acks_are_ignored(self):
        d = self.session('send("a")\nsend("b")', auto_ack=False)
        a, b = d.wait_output(2)
        for offset in (end_of(a), 0, end_of(a), 3):  # 3: below the ack, ignored
            d.ack(offset)
        d.quiet(0.1)
        self.assertTrue(d.alive())
        d.ack(end_of(b))
        self.assertEqual(d.wait(), 0)


class WindowTests(DriverTestCase):
    def test_large_message_blocks_on_window(self):
        window = 64 << 10
        d = self.session("""
            send(b"m" * (1 << 20))
            send("done")
        """, auto_ack=False, window=window)
        first = d.wait_output(1)[0]
        frames = d.quiet(0.2)
        # The first 256 KiB chunk goes although it exceeds the window
        # (nothing was unacknowledged); the next one must wait.
        self.assertEqual(len(frames), 1, frames)
        self.assertEqual(len(first.raw), 8 + CHUNK)
        self.assertLessEqual(len(first.raw), window + 8 + CHUNK)
        d.ack(end_of(first))
        d.wait_output(2)
        frames = d.quiet()
        self.assertEqual(len(frames), 2, "a second chunk went without an ACK")
        d.auto_ack = True
        d.ack(end_of(frames[-1]))
        r = d.result()
        self.assertOk(r)
        self.assertEqual(r.messages, [b"m" * (1 << 20), b"done"])

    def test_window_bounds_unacked_output(self):
        window = 4096
        d = self.session("for i in range(3000):\n    print(i)\n",
                         auto_ack=False, window=window)
        def unacked(frames):
            return sum(len(f.raw) for f in frames)
        d.wait_for(lambda frames: unacked(frames) > window - 16,
                   "output filling the window")
        total = unacked(d.quiet(0.15))
        self.assertLessEqual(total, window)
        d.auto_ack = True
        d.ack(total)
        r = d.result()
        self.assertOk(r)
        self.assertEqual(r.stdout, "".join("%d\n" % i for i in range(3000)))

    def test_window_zero_sends_one_frame_at_a_time(self):
        d = self.session('send("a")\nsend("b")', auto_ack=False, window=0)
        a = d.wait_output(1)[0]
        self.assertEqual(len(d.quiet()), 1)
        d.ack(end_of(a))
        b = d.wait_output(2)[1]
        d.ack(end_of(b))
        self.assertEqual(d.wait(), 0)


class ResumeTests(DriverTestCase):
    def test_resume_retransmits_unacked_frames(self):
        d = self.session("""
            recv()
            for i in range(10):
                send("frame %d" % i)
            send(b"B" * 300000)   # bigger than the window: needs all acked
            send(recv())
            print("end")
        """, auto_ack=False, window=4096)
        d.write(message_frames(INPUT, b"a") + message_frames(INPUT, b"b"))
        data = d.wait_output(10)
        frames = d.quiet()
        self.assertEqual([f.payload for f in frames if f.kind in RETRANSMITTABLE],
                         [b"frame %d" % i for i in range(10)])
        self.assertEqual([U64.unpack(f.payload)[0] for f in frames if f.kind == CREDIT],
                         [1])
        k = 4
        d.ack(data[k].offset)
        nonce = os.urandom(16)
        mark = len(frames)
        d.write(resume_frame(data[k].offset, nonce))
        after = d.wait_output(len(data) + (10 - k))[len(data):]
        with d.cond:
            tail = [f for f in d.frames[mark:] if f.kind != CREDIT]
        # SYNC first: nonce, the offset, 2 received, 1 consumed.
        self.assertEqual(tail[0].kind, SYNC, tail)
        self.assertEqual(syncs(tail[:1]), [(nonce, data[k].offset, 2, 1)])
        # Then frames k.. again, byte for byte, at their old offsets.
        self.assertEqual([f.raw for f in after], [f.raw for f in data[k:]])
        self.assertEqual([f.offset for f in after], [f.offset for f in data[k:]])

        # A RESUME below the oldest frame kept restarts from the oldest.
        nonce2 = os.urandom(16)
        mark = len(d.quiet(0.1))
        d.write(resume_frame(0, nonce2))
        again = d.wait_output(len(data) + 2 * (10 - k))[len(data) + (10 - k):]
        with d.cond:
            tail = [f for f in d.frames[mark:] if f.kind != CREDIT]
        self.assertEqual(syncs(tail[:1]), [(nonce2, data[k].offset, 2, 1)])
        self.assertEqual([f.raw for f in again], [f.raw for f in data[k:]])

        # Acknowledge everything: the blocked send goes on, offsets continue.
        d.auto_ack = True
        d.ack(end_of(data[-1]))
        r = d.result()
        self.assertOk(r)
        new = [f for f in r.all_frames if f.kind in RETRANSMITTABLE and f.offset >= end_of(data[-1])]
        self.assertEqual(new[0].offset, end_of(data[-1]))
        self.assertEqual(b"".join(f.payload for f in new if f.kind == DATA),
                         b"B" * 300000 + b"b")
        self.assertEqual(new[-1].payload, b"end\n")
        self.assertEqual(r.credits[-1], 2)

    def test_resume_discards_partial_input(self):
        d = self.session("""
            send("ready")
            send(recv())
            send(repr(recv()))
        """)
        self.assertEqual(d.next_message(), b"ready")
        d.write(frame(INPUT, b"par", flags=0) + frame(INPUT, b"tial", flags=0))
        nonce = os.urandom(16)
        d.write(resume_frame(8 + 5, nonce))
        d.wait_for(lambda frames: syncs(frames), "a SYNC")
        d.write(message_frames(INPUT, b"whole message", chunk=5) + frame(EOF))
        r = d.result()
        self.assertOk(r)
        self.assertEqual(syncs(r.all_frames), [(nonce, 13, 0, 0)])
        self.assertEqual(r.messages, [b"ready", b"whole message", b"None"])

    def test_resume_at_a_non_boundary_is_a_protocol_error(self):
        d = self.session('send("abc")\nrecv()', auto_ack=False)
        d.wait_output(1)
        d.write(resume_frame(3, bytes(16)))
        self.assertEqual(d.wait(), 2)
        self.assertIn("frame boundary", d.raw_stderr)

    def test_resume_beyond_output_is_a_protocol_error(self):
        d = self.session('send("abc")\nrecv()', auto_ack=False)
        d.wait_output(1)
        d.write(resume_frame(12, bytes(16)))
        self.assertEqual(d.wait(), 2)
        self.assertIn("protocol error", d.raw_stderr)

    def test_resume_while_output_flows(self):
        # Repeated RESUMEs during heavy output: rebuilding the stream from
        # offsets (as the controller does) gives exactly the output, in order.
        d = self.session("""
            for i in range(4000):
                print("line %05d" % i)
                if i % 500 == 0:
                    send(b"%d" % i * 1000)
        """, window=32 << 10)
        by_offset = {}
        for n in range(15):
            time.sleep(0.01)
            with d.cond:
                acked = d.acked
            d.write(resume_frame(acked, n.to_bytes(16, "big")))
        r = d.result()
        self.assertOk(r)
        for f in r.all_frames:
            if f.kind in RETRANSMITTABLE:
                self.assertEqual(by_offset.setdefault(f.offset, f.raw), f.raw,
                                 "retransmitted frame differs")
        stream = []
        offset = 0
        while offset in by_offset:
            stream.append(by_offset[offset])
            offset += len(by_offset[offset])
        self.assertEqual(offset, max(o + len(f) for o, f in by_offset.items()))
        text = b"".join(raw[8:] for raw in stream if raw[0] == STDOUT)
        self.assertEqual(text.decode(), "".join("line %05d\n" % i for i in range(4000)))
        self.assertEqual([raw[8:] for raw in stream if raw[0] == DATA],
                         [b"%d" % i * 1000 for i in range(0, 4000, 500)])


class CreditTests(DriverTestCase):
    def test_each_recv_sends_credit_and_control_frames_are_not_counted(self):
        d = self.session("""
            import sys
            while True:
                m = recv()
                print("got", m)
                sys.stderr.write("e\\n")
                send(repr(m))
                if m is None:
                    break
            send(repr(recv()))   # end of input again: not counted twice
        """, auto_ack=False)

        def credits(frames):
            return [U64.unpack(f.payload)[0] for f in frames if f.kind == CREDIT]

        for n, message in enumerate([b"a", b"b", b"c"], 1):
            d.write(message_frames(INPUT, message))
            d.wait_for(lambda frames: n in credits(frames), "CREDIT %d" % n)
            self.assertEqual(d.next_message(), repr(message).encode())
        d.write(frame(EOF))
        d.wait_for(lambda frames: 4 in credits(frames), "CREDIT 4")
        self.assertEqual(d.next_message(), b"None")
        self.assertEqual(d.next_message(), b"None")
        frames = d.quiet(0.1)
        self.assertEqual(credits(frames), [1, 2, 3, 4])
        total = sum(len(f.raw) for f in frames if f.kind in RETRANSMITTABLE)
        self.assertTrue(d.alive())
        d.ack(total)
        self.assertEqual(d.wait(), 0)

    def test_credit_is_in_order_with_the_output_around_the_recv(self):
        # All inputs are there at once, so a flag-style CREDIT would be
        # written after whatever the batch held; a fork's replay point needs
        # each CREDIT exactly between the output before and after its recv.
        d = self.session("""
            send("before")
            total = 0
            for _ in range(50):
                total += int(recv())
                send(str(total))
        """)
        d.write(b"".join(message_frames(INPUT, b"%d" % i) for i in range(1, 51)))
        self.assertEqual(d.wait(), 0)
        order = []
        for f in d.frames:
            if f.kind == CREDIT:
                order.append(("credit", U64.unpack(f.payload)[0]))
            elif f.kind == DATA:
                order.append(("data", f.payload))
        # Between two outputs exactly one input was taken: each CREDIT n
        # follows the answer to input n - 1 and precedes the one to n.
        expected = [("data", b"before")]
        total = 0
        for i in range(1, 51):
            total += i
            expected += [("credit", i), ("data", b"%d" % total)]
        self.assertEqual(order, expected)

    def test_too_many_inputs_is_a_protocol_error(self):
        d = self.session('send("ready")\nimport time\ntime.sleep(60)', max_inputs=2)
        self.assertEqual(d.next_message(), b"ready")
        d.write(message_frames(INPUT, b"x") + message_frames(INPUT, b"y"))
        d.write(resume_frame(13, bytes(16)))  # answered: both were accepted
        d.wait_for(lambda frames: syncs(frames), "a SYNC")
        self.assertEqual(syncs(d.frames)[0][2:], (2, 0))
        d.write(message_frames(INPUT, b"z"))
        self.assertEqual(d.wait(), 2)
        self.assertIn("max_inputs", d.raw_stderr)

    def test_eof_counts_as_an_input(self):
        r = self.run_raw(start_frames("import time\ntime.sleep(60)", max_inputs=1)
                         + message_frames(INPUT, b"x") + frame(EOF))
        self.assertEqual(r.returncode, 2, r)
        self.assertIn("max_inputs", r.raw_stderr)

    def test_too_many_input_bytes_is_a_protocol_error(self):
        d = self.session('send("ready")\nimport time\ntime.sleep(60)',
                         max_input_bytes=1000)
        self.assertEqual(d.next_message(), b"ready")
        # max_input_bytes + 1 MiB is still fine ...
        d.write(message_frames(INPUT, b"x" * ((1 << 20) + 1000)))
        d.write(resume_frame(13, bytes(16)))
        d.wait_for(lambda frames: syncs(frames), "a SYNC")
        self.assertEqual(syncs(d.frames)[0][2:], (1, 0))
        # ... one byte more is not, even before the message is complete.
        d.write(frame(INPUT, b"y", flags=0))
        self.assertEqual(d.wait(), 2)
        self.assertIn("max_input_bytes", d.raw_stderr)

    def test_consumed_input_frees_credit(self):
        inputs = [b"%d" % i for i in range(5)]
        d = self.session("""
            while (m := recv()) is not None:
                send(m)
        """, max_inputs=1)
        for i, message in enumerate(inputs, 1):
            d.write(message_frames(INPUT, message))
            d.wait_for(lambda frames: any(f.kind == CREDIT and f.payload == U64.pack(i)
                                          for f in frames), "CREDIT %d" % i)
        d.write(frame(EOF))
        r = d.result()
        self.assertOk(r)
        self.assertEqual(r.messages, inputs)


class StartupTests(DriverTestCase):
    """What a cold start pays for: in a fresh container every module file is
    a round trip through the engine's storage driver."""

    # Modules the driver used to load before running any function (json
    # brings re; linecache brings tokenize and re; signal brings enum).
    HEAVY = ("json", "linecache", "tokenize", "re", "enum")

    def test_a_function_runs_without_the_heavy_modules_loaded(self):
        # Compared with what the bare interpreter loads at start-up (a
        # site-packages .pth file may load re, say).
        r = self.run_driver("""
            import sys
            loaded = [m for m in %r if m in sys.modules]
            import subprocess
            bare = subprocess.run(
                [sys.executable, "-I", "-B", "-c",
                 "import sys; print(sorted(sys.modules))"],
                capture_output=True, text=True, check=True).stdout
            def main(n, word):
                send(repr([m for m in loaded if repr(m) not in bare]))
                return [n, word]
        """ % (self.HEAVY,), args=["3", "plain"])
        self.assertOk(r)
        self.assertEqual(r.messages, [b"[]", b'[3, "plain"]'])

    def test_tracebacks_formatted_by_the_function_show_its_source(self):
        r = self.run_driver("""
            import traceback
            def inner():
                raise KeyError("deep")
            try:
                inner()
            except KeyError:
                send(traceback.format_exc())
        """)
        self.assertOk(r)
        self.assertIn(b'File "function.py", line 4, in inner', r.messages[0])
        self.assertIn(b'raise KeyError("deep")', r.messages[0])


class JsonLoadsTests(unittest.TestCase):
    """bento_driver._json_loads must accept and reject what json.loads does."""

    @classmethod
    def setUpClass(cls):
        sys.path.insert(0, HERE)
        import bento_driver
        cls.driver = bento_driver

    CASES = [
        "0", "-1", "12345678901234567890123", "3.5", "1e400", "-0.0", '"s"',
        '"\\u00e9\\ud83d\\ude00 \\n"', "true", "false", "null", "[]", "{}",
        '{"a": [1, {"b": null}], "c": "d"}', " \t\n\r[1, 2]\r\n ", "NaN",
        "-Infinity", '{"code": "print(1)\\n", "args": ["1"], "window": 8388608}',
        '{"a": 1, "a": 2}',
    ]
    BAD = ["", " ", "plain", "[1", "[1,]", '{"a" 1}', "1 2", "[1] x", '"\\x"',
           "tru", "'s'", "\u00a0 1", "01"]

    def check(self, loads):
        for text in self.CASES:
            with self.subTest(text=text):
                got, want = loads(text), json.loads(text)
                self.assertEqual(repr(got), repr(want))
        for text in self.BAD:
            with self.subTest(text=text):
                with self.assertRaises(ValueError):
                    json.loads(text)
                with self.assertRaises(ValueError):
                    loads(text)

    def test_the_c_scanner_matches_json_loads(self):
        self.assertTrue(self.driver._json_scanner(), "no _json scanner here")
        self.check(self.driver._json_loads)

    def test_without_the_c_scanner_json_itself_is_used(self):
        saved = self.driver._json_scan
        self.driver._json_scan = False
        try:
            self.check(self.driver._json_loads)
        finally:
            self.driver._json_scan = saved


class ForkTests(DriverTestCase):
    def test_forked_child_output_goes_to_raw_stderr(self):
        r = self.run_driver("""
            import os, sys
            print("before")
            pid = os.fork()
            if pid == 0:
                print("child out")
                try:
                    send("from child")
                except RuntimeError as e:
                    print("child send:", e)
                sys.stdout.flush()
                os._exit(0)
            os.waitpid(pid, 0)
            print("after")
            send("parent")
        """)
        self.assertOk(r)
        self.assertEqual(r.stdout, "before\nafter\n")
        self.assertEqual(r.messages, [b"parent"])
        self.assertIn("child out", r.raw_stderr)
        self.assertIn("child send: bento:", r.raw_stderr)


if __name__ == "__main__":
    unittest.main()
