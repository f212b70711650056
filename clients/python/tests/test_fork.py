"""``fork()`` against a real controller: a new session replayed to its
parent's state, through both clients."""

from __future__ import annotations

from typing import Dict, List

import pytest

from bento_client import AsyncClient, Client, ForkRefused, Session


def _answers(s: Session, values: List[int]) -> List[str]:
    """Sends each value and reads its answer."""
    out = []
    for v in values:
        s.send(str(v))
        m = s.recv(timeout=60)
        assert m is not None
        out.append(m.text)
    return out


def test_a_fork_answers_as_its_parent_then_goes_its_own_way(client: Client, fn: Dict[str, str]) -> None:
    with client.run(fn["accumulator"]) as parent:
        assert _answers(parent, list(range(1, 11)))[-1] == "55"
        with parent.fork() as child:
            assert _answers(child, [5]) == ["60"]
            assert _answers(parent, [5]) == ["60"]
            assert _answers(child, [100]) == ["160"]
            assert _answers(parent, [1]) == ["61"]
            info = child.info()
            assert info.fork is not None
            assert (info.fork.parent, info.fork.at_input, info.fork.state) == (parent.id, 10, "live")
            assert info.last_seq == 2, "only its own output"
        with client.fork(parent.token, at_input=3) as early:
            assert _answers(early, [7]) == ["13"]
        parent.kill()


def test_a_session_run_unforkable_is_refused(client: Client, fn: Dict[str, str]) -> None:
    with client.run(fn["accumulator"], forkable=False) as s:
        assert not s.info().forkable
        with pytest.raises(ForkRefused, match="keeps no input history"):
            s.fork()
        s.kill()
    with client.run(fn["accumulator"]) as fresh:
        with pytest.raises(ForkRefused, match="beyond the 0 inputs"):
            fresh.fork(at_input=5)
        fresh.kill()


async def test_the_async_client_forks_too(url: str, fn: Dict[str, str]) -> None:
    async with AsyncClient(url) as c:
        async with await c.run(fn["accumulator"]) as parent:
            for v in (1, 2, 3):
                await parent.send(str(v))
                m = await parent.recv(timeout=60)
                assert m is not None
            async with await parent.fork(at_input=2) as child:
                await child.send("10")
                m = await child.recv(timeout=60)
                assert m is not None and m.text == "13"
            await parent.kill()
