"""``env`` and ``secrets`` of ``run`` against a real controller, through
both clients: variables reach the function, secrets by name only."""

from __future__ import annotations

import uuid
from typing import Dict

import pytest

from bento_client import AsyncClient, BadRequest, Client, Session


def _env(s: Session, name: str) -> str:
    s.send(name)
    m = s.recv(timeout=60)
    assert m is not None
    return m.text[::-1] if m.text != "-" else "-"


def test_env_and_secrets_reach_the_function_and_values_never_come_back(
        client: Client, fn: Dict[str, str]) -> None:
    name = f"py-{uuid.uuid4().hex[:8]}"
    value = f"v-{uuid.uuid4().hex}"
    client.set_secret(name, value)
    try:
        assert name in client.secrets()
        with client.run(fn["environ"], env={"GREETING": "hi"},
                        secrets={"TOKEN": name}) as s:
            assert _env(s, "GREETING") == "hi"
            assert _env(s, "TOKEN") == value
            assert _env(s, "UNSET_HERE") == "-"
            info = s.info()
            assert info.env == ["GREETING"]
            assert info.secrets == [name]
            assert value not in repr(info.raw)
            s.kill()
    finally:
        client.delete_secret(name)
    assert name not in client.secrets()


def test_a_reserved_name_or_an_unknown_secret_is_refused(client: Client, fn: Dict[str, str]) -> None:
    with pytest.raises(BadRequest, match="reserved"):
        client.run(fn["environ"], env={"BENTO_X": "1"})
    with pytest.raises(BadRequest, match="no secret named"):
        client.run(fn["environ"], secrets=["never-set"])


async def test_the_async_client_passes_env_too(url: str, fn: Dict[str, str]) -> None:
    async with AsyncClient(url) as aclient:
        async with await aclient.run(fn["environ"], env={"A": "1"}) as s:
            await s.send("A")
            m = await s.recv(timeout=60)
            assert m is not None and m.text == "1"
            await s.kill()
