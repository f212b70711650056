"""Every call of the blocking ``Client`` against a real controller."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Dict, List

import pytest

import bento_client
from bento_client import Client, Message

from .conftest import FUNCTIONS


def test_submit_list_get_delete(client: Client) -> None:
    code = "def main(name):\n    return f'hello {name}'\n"
    info = client.submit(code, name="py-hello")
    assert info.id.startswith("fn-") and info.name == "py-hello" and info.image == "python"
    assert info.filename == "py-hello.py"
    assert any(f.id == info.id for f in client.functions())
    assert client.function("py-hello").id == info.id
    from_file = client.submit_file(FUNCTIONS / "counter.py", name="py-counter")
    assert from_file.filename == "counter.py" and from_file.size == len((FUNCTIONS / "counter.py").read_bytes())
    with client.run("py-hello", "world") as s:
        assert [m.text for m in s] == ["hello world"]
        assert s.exit is not None and s.exit.code == 0
    assert client.delete_function(info.id).id == info.id
    assert all(f.id != info.id for f in client.functions())


def test_echo_send_recv_wait(client: Client, fn: Dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bento_client")
    s = client.run(fn["echo"])
    assert len(s.token) == 64 and s.id.startswith("s-") and s.state == "running"
    assert s.send("one") == 1
    assert s.send(b"two\x00\xff") == 2
    first = s.recv(timeout=30)
    assert first is not None and first.stream == "data" and first.data == b"one" and first.end
    second = s.recv(timeout=30)
    assert second is not None and second.data == b"two\x00\xff"
    assert s.end_input() == 3
    with pytest.raises(bento_client.InputClosed):
        s.send("after the end")
    rest = list(s)
    assert [(m.stream, m.data) for m in rest] == [("stdout", b"echoed 2\n"), ("stderr", b"input ended\n")]
    ex = s.wait()
    assert (ex.code, ex.message, ex.reason, ex.ok) == (0, "exited with code 0", {"kind": "exited", "code": 0}, True)
    assert s.state == "ended" and s.recv() is None
    s.close()
    # The end is an end: no reconnect after the exit (whichever side's
    # close is seen first).
    assert not [r for r in caplog.records if "reconnect" in r.getMessage()]


def test_streams_and_exit_codes(client: Client, fn: Dict[str, str]) -> None:
    with client.run(fn["streams"], 3) as s:
        got = [(m.stream, m.data) for m in s]
        assert got == [("data", b"\x00data\xff"), ("stdout", b"to stdout\n"), ("stderr", b"to stderr\n")]
        assert (s.wait().code, str(s.wait())) == (3, "exited with code 3")


def test_recv_timeout_and_callback(client: Client, fn: Dict[str, str]) -> None:
    with client.run(fn["echo"]) as s:
        with pytest.raises(bento_client.RecvTimeout):
            s.recv(timeout=0.2)
        got: List[Message] = []
        s.on_message(got.append)
        for i in range(5):
            s.send(str(i))
        s.end_input()
        assert s.wait().code == 0
        assert [m.text for m in got if m.stream == "data"] == ["0", "1", "2", "3", "4"]


def test_kill_inspect_list_close(client: Client, fn: Dict[str, str]) -> None:
    s = client.run(fn["sleeper"], memory="64m", cpus=0.5, pids=32, timeout=60)
    info = client.inspect(s.token)
    assert info.state == "running" and info.attached and info.function_name == fn["sleeper"]
    assert info.limits["memory"] == 64 << 20 and info.limits["pids"] == 32 and info.limits["timeout"] == 60
    assert any(i.token == s.token for i in client.sessions())
    # close: whoever is attached is detached; the function keeps running.
    client.close_session(s.token)
    with pytest.raises(bento_client.SessionClosed) as e:
        s.recv(timeout=30)
    assert e.value.kind == "closed_by_user" and not isinstance(e.value, bento_client.SessionTakenOver)
    assert s.info().state == "running"
    again = client.attach(s.token)
    again.kill()
    ex = again.wait()
    assert (ex.code, ex.message, ex.kind) == (137, "killed by user", "killed")


def test_limits_timeout_exit_words(client: Client, fn: Dict[str, str]) -> None:
    with client.run(fn["sleeper"], timeout=1) as s:
        ex = s.wait()
        assert (ex.code, ex.message) == (124, "killed: timed out")
        assert bento_client.describe_reason(ex.reason) == ex.message


def test_detach_and_reattach_from_a_second_client(url: str, fn: Dict[str, str]) -> None:
    n = 300
    with Client(url) as first:
        s = first.run(fn["counter"], n, 0.002)
        token = s.token
        head = [s.recv(timeout=30) for _ in range(100)]
        s.close()
    with Client(url) as second:
        rest = second.attach(token)
        tail = list(rest)
        assert rest.wait().code == 0
    texts = [m.text for m in head if m is not None] + [m.text for m in tail if m.stream == "data"]
    assert texts == [str(i) for i in range(n)]
    assert [m.text for m in tail if m.stream == "stdout"] == [f"counted to {n}\n"]
    seqs = [m.seq for m in head if m is not None] + [m.seq for m in tail]
    assert seqs == list(range(1, len(seqs) + 1))


def test_detached_run_attaches_on_first_use(client: Client, fn: Dict[str, str]) -> None:
    s = client.run(fn["counter"], 3, detach=True)
    assert [m.text for m in s if m.stream == "data"] == ["0", "1", "2"]
    assert s.wait().code == 0


def test_sync_client_works_inside_a_running_event_loop(url: str, fn: Dict[str, str]) -> None:
    async def inside() -> int:
        with Client(url) as c, c.run(fn["echo"]) as s:
            s.send("x")
            s.end_input()
            assert [m.data for m in s if m.stream == "data"] == [b"x"]
            return s.wait().code

    assert asyncio.run(inside()) == 0


def test_one_session_from_several_threads(client: Client, fn: Dict[str, str]) -> None:
    with client.run(fn["echo"]) as s:
        def feed(k: int) -> None:
            for i in range(50):
                s.send(f"{k}-{i}")

        ts = [threading.Thread(target=feed, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        s.end_input()
        got = [m.text for m in s if m.stream == "data"]
        assert sorted(got) == sorted(f"{k}-{i}" for k in range(4) for i in range(50))
        for k in range(4):  # each sender's messages in its order
            mine = [g for g in got if g.startswith(f"{k}-")]
            assert mine == [f"{k}-{i}" for i in range(50)]


def test_deadline_warning_extend_and_timeout(client: Client) -> None:
    # The controller warns deadline_warning (30 s) before the end: a
    # timeout of 3 s is within it from the start, so the warning comes at
    # once; an extend moves the deadline, and the warned client hears of
    # the new one.
    f = client.submit("import time\ndef main():\n    time.sleep(600)\n").id
    events: List[object] = []
    with client.run(f, timeout=3, on_event=events.append) as s:
        first = s.info().deadline
        assert first is not None
        assert s.extend(2) == first + 2
        assert s.info().deadline == first + 2
        assert list(s) == []
        assert s.exit is not None and s.exit.reason["kind"] == "timeout"
        assert s.deadline is not None and s.deadline.at == first + 2
    deadlines = [e for e in events if isinstance(e, bento_client.Deadline)]
    assert deadlines and all(d.reason == "timeout" for d in deadlines), events
