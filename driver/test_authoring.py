"""Tests for what a function's author sees of the driver: the syntax check
the controller runs at submit (a START of {"check": {"code", "filename"}}), tracebacks under the
submitted file name, send()'s argument error, the warning about
arguments for a function without main(), and what the bento module
exposes.  Same harness as test_driver.py.

    python3 -m unittest discover -s driver -v
"""

import json
import signal
import sys
import unittest

from test_driver import (HERE, DriverTestCase, EOF, START, end_of, frame,
                         message_frames, start_frames)


def check_frames(code, filename="counter.py"):
    body = {"check": {"code": code, "filename": filename}}
    return message_frames(START, json.dumps(body).encode("utf-8"))


class CheckTests(DriverTestCase):
    """START {"check": {...}}: compile only, answer with one DATA message."""

    def check(self, code, filename="counter.py"):
        r = self.run_raw(check_frames(code, filename) + frame(EOF))
        self.assertOk(r)
        self.assertEqual(len(r.messages), 1, r)
        return json.loads(r.messages[0])

    def test_valid_code_is_ok_and_not_run(self):
        answer = self.check('print("ran")\nsend("ran")\n')
        self.assertEqual(answer, {"ok": True})

    def test_syntax_error_position_and_message(self):
        r = self.run_raw(check_frames('x = 1\nsend("never")\ny = (1,\n')
                         + frame(EOF))
        self.assertOk(r)
        self.assertEqual(r.stdout + r.stderr, "")  # nothing ran
        answer = json.loads(r.messages[0])
        self.assertEqual(answer["error"], {
            "kind": "SyntaxError", "message": "'(' was never closed",
            "line": 3, "column": 5})

    def test_column_counts_characters_not_bytes(self):
        answer = self.check('s = "ééé" +\n')
        self.assertEqual((answer["error"]["line"], answer["error"]["column"]),
                         (1, 12))

    def test_indentation_error_kind(self):
        answer = self.check("def f():\nreturn 1\n")
        self.assertEqual(answer["error"]["kind"], "IndentationError")
        self.assertEqual(answer["error"]["line"], 2)

    def test_errors_found_after_parsing_are_caught(self):
        # Not grammar errors: the compiler's; a parser alone would pass them.
        answer = self.check("x = 1\nreturn x\n")
        self.assertEqual(answer["error"]["message"], "'return' outside function")
        self.assertEqual(answer["error"]["line"], 2)

    def test_nul_character_has_a_position(self):
        answer = self.check("x = 1\ny = 2\x00\n")
        self.assertEqual((answer["error"]["line"], answer["error"]["column"]),
                         (2, 6))

    def test_too_deep_for_the_compiler_is_refused_with_a_message(self):
        answer = self.check("x = " + "-" * 200000 + "1\n")
        self.assertIn(answer["error"]["kind"], ("MemoryError", "RecursionError"))
        self.assertNotEqual(answer["error"]["message"], "")
        self.assertIsNone(answer["error"]["line"])

    def test_check_must_be_an_object_with_code(self):
        for body, why in (({"code": "pass", "check": True}, '"check" must be an object'),
                          ({"check": {"filename": "x.py"}}, '"code" must be a string')):
            with self.subTest(body=body):
                r = self.run_raw(message_frames(START, json.dumps(body).encode()),
                                 close_stdin=True)
                self.assertEqual(r.returncode, 2, r)
                self.assertIn(why, r.raw_stderr)


class TracebackTests(DriverTestCase):
    def test_traceback_names_the_submitted_file(self):
        r = self.run_raw(start_frames("x = 1\ny = x / 0\n", filename="counter.py")
                         + frame(EOF))
        self.assertEqual(r.returncode, 1, r)
        self.assertIn('File "counter.py", line 2, in <module>', r.stderr)
        self.assertNotIn("function.py", r.stderr)

    def test_send_of_an_int_points_at_the_caller(self):
        r = self.run_driver("""
            x = 1
            send(42)
        """)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("TypeError: send() takes str or bytes, not int", r.stderr)
        # The last frame shown is the function's line, not bento.py's.
        lines = r.stderr.splitlines()
        self.assertEqual(lines[-3:-1], ['  File "function.py", line 3, in <module>',
                                        "    send(42)"], r.stderr)
        self.assertNotIn("bento.py", r.stderr)
        self.assertNotIn("bento_driver", r.stderr)

    def test_send_error_inside_main_keeps_the_function_frames(self):
        r = self.run_driver("""
            def helper():
                send(None)
            def main():
                helper()
        """)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("in main", r.stderr)
        self.assertIn('line 3, in helper\n    send(None)\n', r.stderr)
        self.assertIn("TypeError: send() takes str or bytes, not NoneType", r.stderr)
        self.assertNotIn("bento.py", r.stderr)

    # Bento's own frames below the function's are left out wherever the
    # error comes from: bento.py (above), the wire code in _bento_wire.py,
    # or the driver's signal handler.

    def test_interrupt_deferred_inside_send_points_at_the_caller(self):
        # Ctrl-C while send() waits for window space in the middle of a
        # message: the KeyboardInterrupt is raised once the message is
        # queued, from deep inside the wire code.
        message = b"m" * (512 << 10)  # two chunks
        d = self.session("""
            send(b"m" * (512 << 10))
            send("unreachable")
        """, auto_ack=False, window=0)
        first = d.wait_output(1)[0]
        d.proc.send_signal(signal.SIGINT)
        d.quiet(0.2)
        d.auto_ack = True
        d.ack(end_of(first))
        r = d.result()
        self.assertEqual(r.returncode, 130, r)
        self.assertEqual(r.messages, [message])
        self.assertEqual(r.stderr.splitlines()[-3:], [
            '  File "function.py", line 2, in <module>',
            '    send(b"m" * (512 << 10))',
            "KeyboardInterrupt"], r.stderr)
        for name in ("bento.py", "_bento_wire", "bento_driver"):
            self.assertNotIn(name, r.stderr)

    def test_send_in_a_forked_child_points_at_the_caller(self):
        # The child's traceback goes to the real stderr (it has no frame
        # stream), raised by the wire code that finds no channel there.
        r = self.run_driver("""
            import os
            pid = os.fork()
            if pid == 0:
                send("from child")
            os.waitpid(pid, 0)
            send("parent")
        """)
        self.assertOk(r)
        self.assertEqual(r.messages, [b"parent"])
        self.assertTrue(r.raw_stderr.endswith(
            '  File "function.py", line 5, in <module>\n'
            '    send("from child")\n'
            "RuntimeError: bento: send/recv/poll are not available in a "
            "forked child process\n"), r.raw_stderr)
        for name in ("bento.py", "_bento_wire", "bento_driver"):
            self.assertNotIn(name, r.raw_stderr)


class UnusedArgsTests(DriverTestCase):
    WARNING = "bento: %s given, but the function defines no main(); they are ignored\n"

    def test_args_without_main_warn_on_stderr(self):
        r = self.run_driver('send("ran")', args=["1", "two"])
        self.assertOk(r)
        self.assertEqual(r.messages, [b"ran"])
        self.assertEqual(r.stderr, self.WARNING % "2 arguments")

    def test_one_argument_is_singular(self):
        r = self.run_driver("pass", args=["1"])
        self.assertEqual(r.stderr, self.WARNING % "1 argument")

    def test_no_warning_without_args_or_with_main(self):
        for code, args in (("pass", []), ("def main(x):\n    pass\n", ["1"])):
            with self.subTest(code=code):
                r = self.run_driver(code, args=args)
                self.assertOk(r)
                self.assertEqual(r.stderr, "")

    def test_no_warning_when_the_code_reads_argv(self):
        for code in ("import sys\nsend(sys.argv[1])",
                     "from sys import argv\ndef f():\n    return argv\nsend(f()[1])"):
            with self.subTest(code=code):
                r = self.run_driver(code, args=["a"])
                self.assertOk(r)
                self.assertEqual(r.messages, [b"a"])
                self.assertEqual(r.stderr, "")


class ModuleTests(unittest.TestCase):
    """The bento module as an author sees it: send, recv and poll, nothing
    else public (the wire machinery is in _bento_wire)."""

    @classmethod
    def setUpClass(cls):
        sys.path.insert(0, HERE)
        import bento
        cls.bento = bento

    def test_public_names(self):
        self.assertEqual(self.bento.__all__, ["send", "recv", "poll"])
        public = sorted(n for n in dir(self.bento) if not n.startswith("_"))
        self.assertEqual(public, ["poll", "recv", "send"])

    def test_outside_the_driver_the_calls_say_so(self):
        for call in (lambda: self.bento.send("x"), self.bento.recv, self.bento.poll):
            with self.assertRaisesRegex(RuntimeError, "only work inside the Bento driver"):
                call()


if __name__ == "__main__":
    unittest.main()
