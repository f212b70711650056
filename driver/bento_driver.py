"""Bento in-container driver.

Run as:  python3 -u -I -B /opt/bento/bento_driver.py
with the controller's frame stream on stdin and stdout.  It reads a START
message (the function's code, args, filename and flow-control limits), runs
the code, and relays the function's messages and output as frames.  Output
frames are kept until the controller acknowledges them and retransmitted
when it asks (RESUME), so a controller restart loses nothing; the driver
exits only once all output is acknowledged.  Standard library only; works on
Python 3.11 and later.  The protocol is described in docs/driver.md.

Exit status: 0 on success, 1 if the function raised (traceback on the
STDERR stream), the code given to sys.exit(), 130 on KeyboardInterrupt
(SIGINT), 143 on SIGTERM, and 2 if the controller sent malformed frames.
"""

import os
import sys


def _fatal_protocol_error(message):
    """The controller broke the protocol (a bug): report on the real stderr
    and exit 2 at once, from whichever thread noticed."""
    try:
        os.write(2, ("bento driver: protocol error: %s\n" % message).encode(
            "utf-8", "backslashreplace"))
    finally:
        os._exit(2)


class _JsonContext:
    """What json's scanner reads off a JSONDecoder: json.loads's defaults."""
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"),
                      "NaN": float("nan")}.__getitem__


_json_scan = None  # the C scanner once made; False: use the json module


def _json_scanner():
    global _json_scan
    if _json_scan is None:
        try:
            import _json
            _json_scan = _json.make_scanner(_JsonContext())
        except (ImportError, AttributeError, TypeError):
            _json_scan = False
    return _json_scan


def _json_loads(text):
    """json.loads(text) for START and a function's args, without importing
    json: with CPython's C scanner (_json), which json itself uses.

    Why: in a fresh container every module file the interpreter opens is a
    round trip through the engine's storage driver (fuse-overlayfs on our
    machines), and json brings re with it: json and linecache cost 15-30 ms
    of every cold start, _json under 1 ms.  Raises ValueError (json's own
    JSONDecodeError where the scanner reports one) for what json.loads
    rejects."""
    scan = _json_scanner()
    if not scan:
        import json
        return json.loads(text)
    # json.loads skips JSON whitespace (only these four) at both ends.
    s = text.strip(" \t\n\r")
    try:
        value, end = scan(s, 0)
    except StopIteration as exc:
        raise ValueError("Expecting value: char %s" % exc.value) from None
    except SystemError:
        # Malformed JSON inside a value: the scanner reports it with
        # json.decoder's JSONDecodeError, which CPython 3.11 only finds if
        # json.decoder is already imported.  Let json raise it.
        import json
        return json.loads(s)
    if end != len(s):
        raise ValueError("Extra data: char %d" % end)
    return value


def _read_start(reader, wire):
    """Read the START message and return (code, args, filename, limits,
    check, env), limits being a dict of window, max_inputs and
    max_input_bytes, check whether to only compile the code (see
    _check_source), env the variables to set for the function."""
    parts = []
    while True:
        frame = reader.read_frame()
        if frame is None:
            raise wire.ProtocolError("stdin closed before a complete START message")
        kind, flags, payload = frame
        if kind != wire.KIND_START:
            raise wire.ProtocolError(
                "expected a START frame (kind %d), got kind %d"
                % (wire.KIND_START, kind))
        parts.append(payload)
        if flags & wire.FLAG_END:
            break

    try:
        start = _json_loads(b"".join(parts).decode("utf-8"))
    except ValueError as exc:  # includes UnicodeDecodeError, JSONDecodeError
        raise wire.ProtocolError("START payload is not UTF-8 JSON: %s" % exc)
    if not isinstance(start, dict):
        raise wire.ProtocolError("START payload is not a JSON object")
    # A compile-only START carries the code inside "check", so that a
    # driver from before the check, which ignores unknown keys, finds no
    # "code" and refuses it rather than running the code.
    check = start.get("check")
    if check is not None:
        if not isinstance(check, dict):
            raise wire.ProtocolError('START "check" must be an object')
        start = check
    code = start.get("code")
    args = start.get("args", [])
    filename = start.get("filename", "function.py")
    if not isinstance(code, str):
        raise wire.ProtocolError('START "code" must be a string')
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise wire.ProtocolError('START "args" must be a list of strings')
    if not isinstance(filename, str) or not filename:
        raise wire.ProtocolError('START "filename" must be a non-empty string')
    limits = {}
    for key, default, minimum in (("window", wire.DEFAULT_WINDOW, 0),
                                  ("max_inputs", wire.DEFAULT_MAX_INPUTS, 1),
                                  ("max_input_bytes", wire.DEFAULT_MAX_INPUT_BYTES, 0)):
        value = start.get(key, default)
        if type(value) is not int or value < minimum:
            raise wire.ProtocolError(
                'START "%s" must be an integer >= %d' % (key, minimum))
        limits[key] = value
    env = start.get("env", {})
    if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and _env_name_ok(k)
            and "\0" not in v for k, v in env.items()):
        # The controller checked each name and value; this is a last guard,
        # and names nothing (a value may be a secret).
        raise wire.ProtocolError('START "env" must map variable names to strings')
    return code, args, filename, limits, check is not None, env


_ENV_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_ENV_REST = _ENV_FIRST | frozenset("0123456789")


def _env_name_ok(name):
    """What the controller lets through as a variable name (config/env.rs);
    without `re`, which a cold start would otherwise import."""
    return bool(name) and name[0] in _ENV_FIRST and all(c in _ENV_REST for c in name)


def _read_inputs(reader, inbox, writer, wire):
    """Stdin reader thread.  It never blocks on anything but stdin: INPUT
    messages go into the unbounded inbox (the controller keeps within the
    credit limits, which the inbox checks), ACK and RESUME are handled at
    once, at any time, EOF included.  stdin closing between frames counts as
    EOF and means the controller is gone for good."""
    eof = False
    try:
        parts = None  # chunks of the message being assembled, if any
        nbytes = 0  # their payload bytes
        while True:
            frame = reader.read_frame()
            if frame is None:
                if parts is not None:
                    raise wire.ProtocolError(
                        "stdin closed in the middle of an INPUT message")
                break
            kind, flags, payload = frame
            if kind == wire.KIND_INPUT:
                if eof:
                    raise wire.ProtocolError("INPUT frame after EOF")
                inbox.add_bytes(len(payload))
                if parts is None:
                    parts = []
                parts.append(payload)
                nbytes += len(payload)
                if flags & wire.FLAG_END:
                    inbox.put(b"".join(parts))
                    parts = None
                    nbytes = 0
            elif kind == wire.KIND_ACK:
                if len(payload) != wire.U64.size:
                    raise wire.ProtocolError(
                        "ACK payload of %d bytes, not 8" % len(payload))
                writer.ack(wire.U64.unpack(payload)[0])
            elif kind == wire.KIND_RESUME:
                if len(payload) != wire.RESUME_PAYLOAD.size:
                    raise wire.ProtocolError(
                        "RESUME payload of %d bytes, not 24" % len(payload))
                offset, nonce = wire.RESUME_PAYLOAD.unpack(payload)
                if parts is not None:
                    # The controller resends the message whole.
                    inbox.drop_bytes(nbytes)
                    parts = None
                    nbytes = 0
                writer.resume(offset, nonce, inbox.received)
            elif kind == wire.KIND_EOF:
                if eof:
                    raise wire.ProtocolError("second EOF frame")
                if parts is not None:
                    raise wire.ProtocolError("EOF frame inside an INPUT message")
                if payload:
                    raise wire.ProtocolError("EOF frame with a payload")
                eof = True
                inbox.put_eof()
            else:
                raise wire.ProtocolError("unexpected frame kind %d after START" % kind)
    except wire.ProtocolError as exc:
        _fatal_protocol_error(str(exc))
    except OSError as exc:
        _fatal_protocol_error("reading stdin failed: %s" % exc)
    if not eof:
        inbox.put_eof(counted=False)
    writer.stdin_closed()


def _strip_driver_frames(tb):
    """Drop the driver's own frames from the top of a traceback."""
    here = __file__
    while tb is not None and tb.tb_frame.f_code.co_filename == here:
        tb = tb.tb_next
    return tb


def _strip_api_frames(tb):
    """Drop the frames inside Bento's own files from the end of a traceback,
    so that an error raised by send() (a TypeError for send(42)), or a
    signal that arrived inside recv(), points at the function's line that
    called it, as for a builtin, rather than into the driver's internals.
    A traceback with no frame of the function's is left whole: that is a
    driver bug, and its frames are the clue."""
    ours = (__file__,) + tuple(getattr(sys.modules.get(name), "__file__", None)
                               for name in ("bento", "_bento_wire"))
    last = None
    t = tb
    while t is not None:
        if t.tb_frame.f_code.co_filename not in ours:
            last = t
        t = t.tb_next
    if last is not None:
        last.tb_next = None
    return tb


def _print_exception(exc, stream):
    import traceback
    try:
        exc.__traceback__ = _strip_api_frames(_strip_driver_frames(exc.__traceback__))
        # One write, so the traceback goes out in one piece.
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except BaseException:
        try:
            text = "%s: %s\n" % (type(exc).__name__, exc)
        except BaseException:
            text = "%s\n" % type(exc).__name__
    try:
        stream.write(text)
        stream.flush()
    except BaseException:
        # The framed stream is unusable (e.g. the controller went away):
        # fall back to the real stderr.
        try:
            os.write(2, text.encode("utf-8", "backslashreplace"))
        except BaseException:
            pass


def _exit_status(exc, stream):
    """The exit status for an exception that ended the function, printing
    whatever Python would print for it."""
    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code & 0xFF
        try:
            print(code, file=stream)
            stream.flush()
        except BaseException:
            pass
        return 1
    _print_exception(exc, stream)
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return 1


def _decode_arg(arg):
    try:
        return _json_loads(arg)
    except ValueError:
        return arg


class _SourceLoader:
    """The function module's __loader__: just enough for linecache."""

    def __init__(self, source):
        self._source = source

    def get_source(self, name):
        return self._source


def _check_source(code, filename):
    """Compile the code as _run_function would, without running it, and
    return what the controller's submit check reads: JSON text, either
    {"ok": true} or {"error": {"kind", "message", "line", "column"}}, line
    and column (1-based, in characters) null where unknown.  The compiler
    is the one the function would run under, so the verdict is exactly the
    runtime's, errors it finds after parsing (`return` outside a function,
    `nonlocal` at module level) included."""
    import json
    try:
        compile(code, filename, "exec", dont_inherit=True)
        return json.dumps({"ok": True})
    except SyntaxError as exc:
        error = {"kind": type(exc).__name__, "message": str(exc.msg),
                 "line": exc.lineno, "column": exc.offset}
    except ValueError as exc:
        # NUL characters: a ValueError in early 3.11 releases.
        error = {"kind": "SyntaxError", "message": str(exc),
                 "line": None, "column": None}
    except (RecursionError, MemoryError) as exc:
        # Too deeply nested for the compiler: it would fail to run too.
        # (The parser's MemoryError comes without a message.)
        error = {"kind": type(exc).__name__,
                 "message": str(exc) or "the code is nested too deeply to compile",
                 "line": None, "column": None}
    for key in ("line", "column"):
        if type(error[key]) is not int or error[key] < 1:
            error[key] = None
    nul = code.find("\0")
    if error["line"] is None and nul >= 0:
        # The compiler refuses NUL characters without saying where.
        error["line"] = code.count("\n", 0, nul) + 1
        error["column"] = nul - (code.rfind("\n", 0, nul) + 1) + 1
    return json.dumps({"error": error})


def _mentions(code, name):
    """Whether `name` is a global, attribute or imported name anywhere in
    the compiled code (nested functions and classes included)."""
    import types
    if name in code.co_names:
        return True
    return any(isinstance(c, types.CodeType) and _mentions(c, name)
               for c in code.co_consts)


def _warn_unused_args(compiled, args, stream):
    """Arguments for a function with no main() would go nowhere: say so on
    its stderr, unless the code reads them itself (it mentions argv:
    sys.argv holds them too)."""
    if not args or _mentions(compiled, "argv"):
        return
    n = len(args)
    stream.write("bento: %d argument%s given, but the function defines no "
                 "main(); they are ignored\n" % (n, "" if n == 1 else "s"))
    stream.flush()


def _run_function(code, args, filename, send, stderr):
    """Compile and run the function's code as __main__, then call main(*args)
    if it defines one, sending a non-None return value.  Without a main,
    warns on stderr about arguments nobody reads."""
    import builtins
    import types

    module = types.ModuleType("__main__")
    namespace = module.__dict__
    namespace["__file__"] = filename
    # Lets tracebacks show the function's source lines: traceback asks
    # linecache, which asks the frame's module for its __loader__'s source.
    # Not by filling linecache.cache ahead: importing linecache (and with it
    # tokenize and re) was 8-12 ms of every cold start.
    namespace["__loader__"] = _SourceLoader(code)
    namespace["__builtins__"] = builtins
    sys.modules["__main__"] = module
    sys.argv = [filename] + list(args)

    compiled = compile(code, filename, "exec", dont_inherit=True)
    exec(compiled, namespace)

    main = namespace.get("main")
    if not callable(main):
        _warn_unused_args(compiled, args, stderr)
        return
    result = main(*[_decode_arg(a) for a in args])
    if isinstance(result, types.CoroutineType):  # async def main(...)
        import asyncio
        result = asyncio.run(result)
    if result is None:
        return
    if not isinstance(result, (str, bytes, bytearray, memoryview)):
        import json
        try:
            result = json.dumps(result)
        except (TypeError, ValueError, RecursionError):
            result = repr(result)
    send(result)


def _wait_for_threads():
    """Like interpreter shutdown: wait for the function's non-daemon threads.
    A signal (SIGINT/SIGTERM) stops the wait; return its exit status, if any."""
    import threading
    current = threading.current_thread()
    try:
        for thread in threading.enumerate():
            if thread is not current and not thread.daemon:
                # Timed, so a signal's handler runs even if it arrived just
                # as the join started blocking.
                while thread.is_alive():
                    thread.join(0.25)
    except SystemExit as exc:
        return exc.code & 0xFF if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        return 130
    return None


def _run_atexit():
    import atexit
    run = getattr(atexit, "_run_exitfuncs", None)
    if run is not None:
        try:
            run()  # prints exceptions from handlers itself
        except BaseException:
            pass


class _ExitNow(BaseException):
    """Raised by a signal once the function has finished: stop waiting for
    the controller and exit."""


def _flush(streams):
    for stream in streams:
        try:
            if stream is not None:
                stream.flush()
        except _ExitNow:
            raise
        except BaseException:
            pass


# What the output pipe to the engine may hold (its default is 64 KiB).
PIPE_SIZE = 1 << 20


def _grow_pipe(fd):
    """Let the output pipe hold more, so the writer thread and the engine
    each move more per wake-up.  Best effort: the pipe may not be one, or
    its owner may be over the kernel's per-user pipe limits."""
    import fcntl
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError, ValueError):
        pass


def main():
    """Run one function: set up, read START, run it, and exit with its status
    once the controller has acknowledged all its output.  Never returns."""
    driver = _setup()
    status = 0
    try:
        # Inside the try from READY on: a signal while waiting for START
        # ends the run as one during the function does (130, 143).
        code, args, filename, check = _start_session(driver)
        if check:
            driver.bento.send(_check_source(code, filename))
        else:
            _run_function(code, args, filename, driver.bento.send, driver.stderr)
    except BaseException as exc:
        status = _exit_status(exc, driver.stderr)
    _finish(driver, status)


class _Driver:
    """What _setup() made, for the rest of main()."""

    def __init__(self, wire, bento, signal, writer, in_fd, stdout, stderr):
        self.wire = wire  # the _bento_wire module
        self.bento = bento  # the bento module: send, recv, poll
        self.signal = signal  # _signal where there is one: no enum import
        self.writer = writer  # wire.FrameWriter on the private copy of fd 1
        self.in_fd = in_fd  # the private copy of fd 0
        self.stdout = stdout  # the framed text streams, sys.stdout/stderr
        self.stderr = stderr


def _setup():
    """Everything up to READY, which need not wait for a session: the
    protocol descriptors, the modules, the frame writer, the framed stdout
    and stderr, the signal handlers."""
    out_fd, in_fd = _take_descriptors()

    # -I leaves the script's directory off sys.path; the function needs it
    # for `import bento`.
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import _bento_wire as wire
    import bento
    signal = wire.signal  # _signal where there is one: no enum import

    writer = wire.FrameWriter(out_fd)

    def close_in_fd_in_child():
        # A forked child must not read the controller's frames.
        try:
            os.close(in_fd)
        except OSError:
            pass

    os.register_at_fork(after_in_child=close_in_fd_in_child)

    stdout = _framed_stream(wire, writer, wire.KIND_STDOUT, 1, "<stdout>")
    stderr = _framed_stream(wire, writer, wire.KIND_STDERR, 2, "<stderr>")
    sys.stdout = sys.__stdout__ = stdout
    sys.stderr = sys.__stderr__ = stderr

    # SIGINT -> KeyboardInterrupt (exit 130), SIGTERM -> SystemExit(143), but
    # never in the middle of registering a frame or DATA message (see
    # _bento_wire._SignalGuard).  Installing a SIGTERM handler also matters
    # when the driver is PID 1: the kernel drops signals that PID 1 has no
    # handler for.
    def on_signal(signum, frame):
        if writer.deferring_signals(signum):
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    _handle_signals(signal, on_signal)

    # What every run needs is loaded before START is read, so that a warm
    # container (started ahead of its session, see docs/performance.md)
    # spends none of its session's time on it.  Only what every run needs:
    # a cold start waits for all of it (see _json_loads).
    _json_scanner()
    import types  # noqa: F401

    return _Driver(wire, bento, signal, writer, in_fd, stdout, stderr)


def _take_descriptors():
    """Private copies of the protocol descriptors (os.dup makes them
    non-inheritable), returned as (out_fd, in_fd); then fd 1 points at the
    real stderr, so anything writing to fd 1 directly (C code, subprocesses,
    os.write(1, ...)) can't corrupt the frame stream, and fd 0 at
    /dev/null, so nothing but the driver reads the controller's frames."""
    out_fd = os.dup(1)
    in_fd = os.dup(0)
    _grow_pipe(out_fd)
    os.dup2(2, 1)
    try:
        null_fd = os.open(os.devnull, os.O_RDONLY)
    except OSError:
        os.close(0)
    else:
        if null_fd != 0:
            os.dup2(null_fd, 0)
            os.close(null_fd)
    return out_fd, in_fd


def _framed_stream(wire, writer, kind, fileno, name):
    """A text stream for sys.stdout or sys.stderr whose writes become
    frames of `kind`: line-buffered UTF-8, backslashreplace."""
    import io
    raw = wire.OutputRaw(writer, kind, fileno, name)
    return io.TextIOWrapper(
        io.BufferedWriter(raw), encoding="utf-8", errors="backslashreplace",
        newline="\n", line_buffering=True)


def _handle_signals(signal, handler):
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _start_session(driver):
    """Say READY, read START, and make send/recv/poll work: the window and
    credit limits, the stdin reader thread, the channel, the builtins.
    Return (code, args, filename, check) from START.  A malformed START
    exits at once with status 2."""
    import builtins
    import threading
    wire = driver.wire
    writer = driver.writer
    reader = wire.FrameReader(driver.in_fd)
    # Up and waiting: a warm pool hands this container to a session only
    # now, so none of the start-up before is on the session's clock.
    writer.ready()
    try:
        code, args, filename, limits, check, env = _read_start(reader, wire)
    except wire.ProtocolError as exc:
        _fatal_protocol_error(str(exc))
    except OSError as exc:
        _fatal_protocol_error("reading stdin failed: %s" % exc)

    if not check:
        # Set before the function is even compiled, so that it, its imports
        # and anything it starts (os.environ is passed to subprocesses) see
        # them.
        os.environ.update(env)
    writer.set_window(limits["window"])
    inbox = wire.Inbox(writer, limits["max_inputs"], limits["max_input_bytes"])
    threading.Thread(target=_read_inputs, args=(reader, inbox, writer, wire),
                     name="bento-stdin", daemon=True).start()

    stdout = driver.stdout
    stderr = driver.stderr

    def flush_output():
        stdout.flush()
        stderr.flush()

    bento = driver.bento
    wire.install(wire.Channel(writer, inbox, flush_output))
    builtins.send = bento.send
    builtins.recv = bento.recv
    builtins.poll = bento.poll
    return code, args, filename, check


def _finish(driver, status):
    """The function is done: shut down like the interpreter would (its
    threads, atexit), flush, wait until the controller has acknowledged
    every output frame, and exit with `status` (or what a signal that
    stopped the wait for threads says).  Never returns."""
    stopped = _wait_for_threads()
    if stopped is not None:
        status = stopped
    _run_atexit()

    writer = driver.writer
    signal = driver.signal

    # From now on SIGINT/SIGTERM mean "exit now": stop flushing or waiting
    # for acknowledgements (still never inside a frame) and exit with the
    # function's status.
    def on_late_signal(signum, frame):
        if writer.deferring_signals(signum):
            return
        raise _ExitNow

    _handle_signals(signal, on_late_signal)
    try:
        # Flush whatever the function left in sys.stdout/sys.stderr (perhaps
        # its own wrappers around ours) first, then our streams.
        _flush([sys.stdout, sys.stderr, driver.stdout, driver.stderr])
        # Like interpreter exit, still-running daemon threads write nothing
        # more (they would keep the wait below from ending).
        writer.seal()
        # Then wait until the controller has acknowledged every output frame
        # (or stdin has closed: nobody left to acknowledge).  No timeout: the
        # controller kills containers that overstay.
        writer.wait_done()
    except _ExitNow:
        pass

    def on_last_signal(signum, frame):
        os._exit(status)

    _handle_signals(signal, on_last_signal)
    # Let the frame batch in flight finish, then exit without the
    # interpreter's own finalisation (the stdin thread is blocked in read).
    writer.stop()
    os._exit(status)


if __name__ == "__main__":
    main()
