"""Every call of ``AsyncClient`` against a real controller."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Dict, List

import pytest

import bento_client
from bento_client import AsyncClient, Message

from .conftest import FUNCTIONS


@pytest.fixture
async def aclient(url: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(url) as c:
        yield c


async def test_submit_list_get_delete(aclient: AsyncClient) -> None:
    info = await aclient.submit("def main():\n    return {'a': [1, 2]}\n", name="apy-json")
    assert info.name == "apy-json"
    assert any(f.id == info.id for f in await aclient.functions())
    assert (await aclient.function("apy-json")).id == info.id
    f2 = await aclient.submit_file(FUNCTIONS / "echo.py", name="apy-echo")
    assert f2.filename == "echo.py"
    async with await aclient.run("apy-json") as s:
        assert [m.data async for m in s] == [b'{"a": [1, 2]}']
        assert (await s.wait()).code == 0
    assert (await aclient.delete_function("apy-json")).id == info.id


async def test_echo_iter_recv_wait(aclient: AsyncClient, fn: Dict[str, str]) -> None:
    s = await aclient.run(fn["echo"])
    assert await s.send("a") == 1
    m = await s.recv(timeout=30)
    assert m is not None and (m.stream, m.data, m.seq) == ("data", b"a", 1)
    with pytest.raises(bento_client.RecvTimeout):
        await s.recv(timeout=0.2)
    await s.send(bytearray(b"b"))
    await s.end_input()
    rest = [(m.stream, m.data) async for m in s]
    assert rest == [("data", b"b"), ("stdout", b"echoed 2\n"), ("stderr", b"input ended\n")]
    ex = await s.wait()
    assert (ex.code, ex.message) == (0, "exited with code 0") and s.state == "ended"
    await s.close()


async def test_on_message_with_a_coroutine(aclient: AsyncClient, fn: Dict[str, str]) -> None:
    got: List[Message] = []

    async def keep(m: Message) -> None:
        await asyncio.sleep(0)
        got.append(m)

    s = await aclient.run(fn["streams"], 2)
    s.on_message(keep)
    ex = await s.wait()
    assert ex.code == 2
    assert [m.stream for m in got] == ["data", "stdout", "stderr"]


async def test_kill_inspect_list_close(aclient: AsyncClient, fn: Dict[str, str]) -> None:
    s = await aclient.run(fn["sleeper"], transient=True)
    info = await aclient.inspect(s.token)
    assert info.transient and info.state == "running" and info.attached
    assert s.token in [i.token for i in await aclient.sessions()]
    await aclient.close_session(s.token)
    with pytest.raises(bento_client.SessionClosed):
        await s.recv(timeout=30)
    s2 = await aclient.attach(s.token)
    await s2.kill()
    ex = await s2.wait()
    assert (ex.code, ex.message) == (137, "killed by user")


async def test_reattach_from_a_second_client(url: str, fn: Dict[str, str]) -> None:
    async with AsyncClient(url) as a:
        s = await a.run(fn["counter"], 200, 0.002)
        token = s.token
        head = [await s.recv(timeout=30) for _ in range(50)]
        await s.close()
    async with AsyncClient(url) as b:
        s2 = await b.attach(token)
        tail = [m async for m in s2]
        assert (await s2.wait()).code == 0
    texts = [m.text for m in head if m] + [m.text for m in tail if m.stream == "data"]
    assert texts == [str(i) for i in range(200)]


async def test_fan_out(aclient: AsyncClient, fn: Dict[str, str]) -> None:
    async def one(i: int) -> List[str]:
        async with await aclient.run(fn["counter"], i) as s:
            out = [m.text async for m in s if m.stream == "data"]
            assert (await s.wait()).code == 0
            return out

    results = await asyncio.gather(*(one(i) for i in range(8)))
    assert results == [[str(k) for k in range(i)] for i in range(8)]
