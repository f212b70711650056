"""Tests for the Bento driver: run bento_driver.py as a subprocess, speak the
frame protocol to it, and check what comes back.

    python3 -m unittest discover -s driver -v

BENTO_TEST_PYTHON selects the interpreter that runs the driver (default: the
one running the tests).  BENTO_TEST_COMMAND replaces the whole driver command
line, e.g. to run the suite against a built image:

    BENTO_TEST_COMMAND="docker run --rm -i --network none --read-only \
        --tmpfs /tmp bento-driver-check" python3 -m unittest discover -s driver
"""

import json
import os
import shlex
import signal
import struct
import subprocess
import sys
import textwrap
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "bento_driver.py")
PYTHON = os.environ.get("BENTO_TEST_PYTHON", sys.executable)
COMMAND = (shlex.split(os.environ["BENTO_TEST_COMMAND"])
           if os.environ.get("BENTO_TEST_COMMAND")
           else [PYTHON, "-u", "-I", "-B", DRIVER])
TIMEOUT = 60

HEADER = struct.Struct(">BBHI")
MAX_PAYLOAD = 1 << 20
END = 1
DATA, STDOUT, STDERR = 1, 2, 3
START, INPUT, EOF = 16, 17, 18


def frame(kind, payload=b"", flags=END, reserved=0, length=None):
    if length is None:
        length = len(payload)
    return HEADER.pack(kind, flags, reserved, length) + payload


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


def start_frames(code, args=(), filename="function.py", chunk=MAX_PAYLOAD):
    body = {"code": textwrap.dedent(code), "args": list(args), "filename": filename}
    return message_frames(START, json.dumps(body).encode("utf-8"), chunk)


def parse_frames(testcase, data):
    """Split the driver's stdout into frames, checking every header."""
    frames = []
    pos = 0
    while pos < len(data):
        testcase.assertGreaterEqual(len(data) - pos, 8, "truncated frame header")
        kind, flags, reserved, length = HEADER.unpack_from(data, pos)
        testcase.assertIn(kind, (DATA, STDOUT, STDERR), "unknown frame kind")
        testcase.assertEqual(reserved, 0, "nonzero reserved bytes")
        testcase.assertLessEqual(length, MAX_PAYLOAD, "oversized frame")
        if kind == DATA:
            testcase.assertIn(flags, (0, END))
        else:
            testcase.assertEqual(flags, 0, "END flag on an output frame")
        pos += 8
        testcase.assertGreaterEqual(len(data) - pos, length, "truncated payload")
        frames.append((kind, flags, data[pos:pos + length]))
        pos += length
    return frames


class Result:
    def __init__(self, testcase, returncode, stdout, stderr):
        self.returncode = returncode
        self.raw_stderr = stderr.decode("utf-8", "replace")
        self.frames = parse_frames(testcase, stdout)
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


class DriverTestCase(unittest.TestCase):
    def spawn(self):
        return subprocess.Popen(
            COMMAND, cwd=HERE,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def run_raw(self, stdin_bytes):
        proc = self.spawn()
        try:
            out, err = proc.communicate(stdin_bytes, timeout=TIMEOUT)
        except BaseException:
            proc.kill()
            proc.communicate()
            raise
        return Result(self, proc.returncode, out, err)

    def run_driver(self, code, args=(), inputs=(), eof=True):
        data = start_frames(code, args)
        for message in inputs:
            data += message_frames(INPUT, message)
        if eof:
            data += frame(EOF)
        return self.run_raw(data)

    def assertOk(self, result):
        self.assertEqual(result.returncode, 0, result)


class Session:
    """An interactive driver: write frames and read messages as they come."""

    def __init__(self, testcase, code, args=()):
        self.testcase = testcase
        self.proc = testcase.spawn()
        testcase.addCleanup(self.close)
        self.write(start_frames(code, args))

    def write(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def _read_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.proc.stdout.read(n - len(data))
            if not chunk:
                self.testcase.fail("driver stdout closed early")
            data += chunk
        return data

    def next_message(self):
        """Read frames until a complete DATA message; return it."""
        parts = []
        while True:
            kind, flags, reserved, length = HEADER.unpack(self._read_exact(8))
            self.testcase.assertEqual(reserved, 0)
            payload = self._read_exact(length)
            if kind == DATA:
                parts.append(payload)
                if flags & END:
                    return b"".join(parts)

    def finish(self):
        self.proc.stdin.close()
        self.proc.stdout.read()
        return self.proc.wait(timeout=TIMEOUT)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


class BasicTests(DriverTestCase):
    def test_hello(self):
        r = self.run_driver('send("hello")')
        self.assertOk(r)
        self.assertEqual(r.messages, [b"hello"])

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
        s = Session(self, """
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
        self.assertEqual(s.finish(), 0)

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
        for body, expected in cases:
            with self.subTest(body=body):
                r = self.run_driver("def main():\n    %s\n" % body)
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
        for stmt, code, stderr in cases:
            with self.subTest(stmt=stmt):
                r = self.run_driver('import sys\nprint("out")\n%s\nsend("unreachable")' % stmt)
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
        s = Session(self, 'send("ready")\nrecv()\n')
        self.assertEqual(s.next_message(), b"ready")
        s.proc.send_signal(signal.SIGINT)
        self.assertEqual(s.proc.wait(timeout=TIMEOUT), 130)

    def test_sigterm(self):
        s = Session(self, """
            try:
                send("ready")
                recv()
            finally:
                print("cleanup ran")
        """)
        self.assertEqual(s.next_message(), b"ready")
        s.proc.send_signal(signal.SIGTERM)
        self.assertEqual(s.proc.wait(timeout=TIMEOUT), 143)
        rest = s.proc.stdout.read()
        self.assertEqual(parse_frames(self, rest), [(STDOUT, 0, b"cleanup ran\n")])


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
        }
        for name, data in cases.items():
            with self.subTest(name):
                r = self.run_raw(data)
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


if __name__ == "__main__":
    unittest.main()
