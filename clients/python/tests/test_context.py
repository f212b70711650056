"""Sessions carried in the context: current(), re-entrance, leave(), the
outermost block's end, and inheritance into threads and asyncio tasks."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Dict, List, Optional

import bento_client
from bento_client import AsyncClient, Client, Session, current, current_async, leave


def echo_through_current(text: str) -> str:
    """Library code deep in a call stack: no handle passed in."""
    s = current()
    assert s is not None
    s.send(text)
    m = s.recv(timeout=30)
    assert m is not None
    return m.text


def wait_detached(client: Client, token: str) -> bento_client.SessionInfo:
    deadline = time.monotonic() + 30
    while True:
        info = client.inspect(token)
        if not info.attached or time.monotonic() > deadline:
            return info
        time.sleep(0.05)


def test_current_reentrance_and_outermost_detach(client: Client, fn: Dict[str, str]) -> None:
    assert current() is None
    with client.session(fn["echo"]) as outer:
        assert current() is outer
        assert echo_through_current("deep") == "deep"
        with client.session(fn["counter"], 5) as inner:  # joins: no new session
            assert inner is outer and current() is outer
        # The inner block's end did not detach.
        assert echo_through_current("still here") == "still here"
        with client.session(fn["echo"], new=True) as fresh:
            assert fresh is not outer and current() is fresh
        assert current() is outer
        token = outer.token
    assert current() is None
    info = wait_detached(client, token)
    # Leaving the outermost block detached, and did not kill.
    assert (info.state, info.attached, info.exit) == ("running", False, None)
    client.kill(token)


def test_leave_dissociates(client: Client, fn: Dict[str, str]) -> None:
    with client.session(fn["echo"]) as s:
        with leave():
            assert current() is None
            with client.session(fn["echo"]) as other:
                assert other is not s and current() is other
            assert current() is None
        assert current() is s
        leave()
        assert current() is None
    assert current() is None


def test_transient_or_kill_asked_is_killed_at_the_end(client: Client, fn: Dict[str, str]) -> None:
    with client.session(fn["sleeper"], transient=True) as t:
        pass
    with client.session(fn["sleeper"], kill=True) as k:
        pass
    for s in (t, k):
        again = client.attach(s.token)
        ex = again.wait()
        assert (ex.code, ex.message) == (137, "killed by user")


def test_threads_inherit_with_bento_thread_and_bind(client: Client, fn: Dict[str, str]) -> None:
    seen: List[Optional[Session]] = []
    with client.session(fn["echo"]) as s:
        t = bento_client.Thread(target=lambda: seen.append(current()))
        t.start()
        t.join()
        plain = threading.Thread(target=lambda: seen.append(current()))
        plain.start()
        plain.join()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            texts = list(pool.map(bento_client.bind(echo_through_current), ["x"]))
        assert texts == ["x"]
    # A plain thread starts with an empty context (Python's rule).
    assert seen == [s, None]


async def test_asyncio_tasks_inherit(url: str, fn: Dict[str, str]) -> None:
    async with AsyncClient(url) as c:
        assert current_async() is None
        async with c.session(fn["echo"]) as s:
            async def deep(text: str) -> str:
                cur = current_async()
                assert cur is s
                async with c.session(fn["counter"]) as joined:  # re-entrant in the task too
                    assert joined is s
                return text

            assert await asyncio.gather(asyncio.create_task(deep("a")), deep("b")) == ["a", "b"]
            with leave():
                assert current_async() is None
                assert await asyncio.create_task(asyncio.sleep(0, current_async())) is None
            await s.send("ping")
            m = await s.recv(timeout=30)
            assert m is not None and m.text == "ping"
            token = s.token
        assert current_async() is None
        info = await c.inspect(token)
        assert info.exit is None and info.state == "running"
        await c.kill(token)
