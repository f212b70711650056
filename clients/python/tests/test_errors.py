"""Each error class, raised by the real controller's answers (and by the
library's own checks), with the API's status and message."""

from __future__ import annotations

import shutil
import threading
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

import bento_client
from bento_client import AsyncClient, Client

from .conftest import REPO, Controller, start_controller, stop_controller

KEY = "a-test-key-that-is-long-enough"


@pytest.fixture(scope="module")
def guarded(controller: Controller) -> Iterator[Controller]:
    """A second controller: an API key, room for one session, and an
    image that is described but never built."""
    images = Path(tempfile.mkdtemp(prefix="bento-py-images-"))
    yaml = (REPO / "config/images/python.yaml").read_text()
    (images / "python.yaml").write_text(yaml.replace("context: images/python", f"context: {REPO}/images/python"))
    (images / "ghost.yaml").write_text(f"name: ghost\ncontext: {REPO}/images/python\nbase: python:3.12-slim\n")
    c = start_controller(controller.bin, extra=f"api_key: {KEY}\nmax_sessions: 1\n", images_dir=images)
    try:
        yield c
    finally:
        stop_controller(c)
        shutil.rmtree(images, ignore_errors=True)


def test_unknown_session(client: Client) -> None:
    bogus = "0" * 64
    for call in (client.inspect, client.kill, client.close_session, client.attach):
        with pytest.raises(bento_client.UnknownSession) as e:
            call(bogus)
        assert (e.value.status, e.value.code, e.value.message) == (404, "not_found", "unknown session token")
        assert isinstance(e.value, bento_client.NotFound) and isinstance(e.value, bento_client.BentoError)


def test_unknown_function(client: Client) -> None:
    with pytest.raises(bento_client.UnknownFunction) as e:
        client.run("no-such-function")
    assert e.value.status == 404 and e.value.message == 'unknown function "no-such-function"'
    assert e.value.body == {"error": 'unknown function "no-such-function"', "code": "not_found"}
    with pytest.raises(bento_client.UnknownFunction):
        client.function("no-such-function")


def test_unknown_image_and_compile_error(client: Client) -> None:
    with pytest.raises(bento_client.UnknownImage) as e:
        client.submit("x = 1\n", image="no-such-image")
    assert e.value.status == 400 and e.value.message.startswith('unknown image "no-such-image"')
    with pytest.raises(bento_client.CompileError) as c:
        client.submit("def main(:\n    pass\n", name="broken")
    assert c.value.status == 400 and c.value.syntax["kind"] == "SyntaxError" and c.value.syntax["line"] == 1


def test_bad_limits(client: Client, fn: Dict[str, str]) -> None:
    with pytest.raises(bento_client.BadLimits) as e:
        client.run(fn["echo"], cpus=64)
    assert e.value.status == 400 and e.value.message.startswith("limits: ") and e.value.code == "bad_request"
    with pytest.raises(bento_client.BadLimits) as local:
        client.run(fn["echo"], memory="lots")
    assert local.value.status is None and local.value.code is None  # the library's own check


def test_too_large_and_input_too_large(client: Client, fn: Dict[str, str]) -> None:
    with pytest.raises(bento_client.TooLarge) as e:
        client.submit("#" * (1 << 20) + "\n")
    assert e.value.status == 413
    with client.run(fn["echo"]) as s:
        with pytest.raises(bento_client.InputTooLarge):
            s.send(b"x" * (bento_client.MAX_INPUT_MESSAGE + 1))
        s.send(b"y" * bento_client.MAX_INPUT_MESSAGE)
        # Echoed as one send(): chunks of 256 KiB, the last with `end`.
        chunks = []
        while not chunks or not chunks[-1].end:
            m = s.recv(timeout=60)
            assert m is not None and m.stream == "data"
            chunks.append(m)
        assert [len(c.data) for c in chunks] == [256 << 10] * 4
        s.kill()


def test_session_still_running(client: Client, fn: Dict[str, str]) -> None:
    s = client.run(fn["sleeper"])
    with pytest.raises(bento_client.SessionStillRunning) as e:
        client.remove(s.token)
    assert e.value.status == 409 and "still running" in e.value.message
    s.kill()
    s.close()  # the exit stays unread on the controller
    deadline = time.monotonic() + 30
    while client.inspect(s.token).state != "ended" and time.monotonic() < deadline:
        time.sleep(0.05)
    client.remove(s.token)
    with pytest.raises(bento_client.UnknownSession):
        client.inspect(s.token)


def test_unreachable() -> None:
    with Client("http://127.0.0.1:1") as c:
        with pytest.raises(bento_client.Unreachable):
            c.functions()
        with pytest.raises(bento_client.Unreachable):
            c.attach("0" * 64)


def test_taken_over(url: str, fn: Dict[str, str]) -> None:
    with Client(url) as a, Client(url) as b:
        s = a.run(fn["counter"], 1000, 0.005)
        taken: List[bento_client.Message] = []
        three = threading.Event()
        ended: List[BaseException] = []

        def consume() -> None:
            try:
                for m in s:
                    taken.append(m)
                    if len(taken) == 3:
                        three.set()
            except BaseException as e:  # the end this test is about
                ended.append(e)

        t = threading.Thread(target=consume)
        t.start()
        assert three.wait(30)
        other = b.attach(s.token)
        t.join(30)
        assert len(ended) == 1 and isinstance(ended[0], bento_client.SessionTakenOver)
        assert ended[0].kind == "taken_over" and "another client attached" in str(ended[0])
        with pytest.raises(bento_client.SessionTakenOver):
            s.recv()  # stays ended
        # The new client starts right after the last message handed out here.
        nxt = other.recv(timeout=30)
        assert nxt is not None and nxt.seq == taken[-1].seq + 1 and nxt.text == str(len(taken))
        other.kill()


def test_auth(guarded: Controller, monkeypatch: pytest.MonkeyPatch) -> None:
    with Client(guarded.url, api_key="") as none:
        with pytest.raises(bento_client.AuthError) as e:
            none.functions()
        assert e.value.status == 401 and e.value.message.startswith("missing API key")
        assert e.value.code == "unauthorized" and e.value.body["code"] == "unauthorized"
    with Client(guarded.url, api_key="wrong-wrong-wrong-wrong") as wrong:
        with pytest.raises(bento_client.AuthError) as e:
            wrong.sessions()
        assert e.value.message == "wrong API key"
        with pytest.raises(bento_client.AuthError):
            wrong.attach("0" * 64)
    monkeypatch.setenv("BENTO_API_KEY", KEY)
    monkeypatch.setenv("BENTO_URL", guarded.url)
    with Client() as ok:
        assert ok.url == guarded.url and isinstance(ok.functions(), list)


async def test_capacity_and_image_not_built(guarded: Controller) -> None:
    async with AsyncClient(guarded.url, api_key=KEY) as c:
        with pytest.raises(bento_client.ImageNotBuilt) as e:
            await c.submit("x = 1\n", image="ghost")
        assert e.value.status == 409 and "bento images build ghost" in e.value.message
        assert e.value.code == "conflict"
        await c.submit((REPO / "clients/python/tests/functions/sleeper.py").read_text(), name="sleeper")
        first = await c.run("sleeper")
        with pytest.raises(bento_client.CapacityError) as cap:
            await c.run("sleeper")
        assert cap.value.status == 429 and "capacity" in cap.value.message
        assert cap.value.code == "too_many_requests"
        await first.kill()
        assert (await first.wait()).code == 137


def test_connection_lost_and_detached(controller: Controller, fn: Dict[str, str]) -> None:
    from .proxy import CuttingProxy

    port = int(controller.url.rsplit(":", 1)[1])
    # Reconnecting off: the first cut ends the handle.
    proxy = CuttingProxy(port, cut_every=1 << 40)
    try:
        once = bento_client.AttachOptions(reconnect=False)
        with Client(proxy.url, attach_options=once) as c:
            s = c.run(fn["counter"], 1000, 0.01)
            assert s.recv(timeout=30) is not None
            proxy.cut_now()
            with pytest.raises(bento_client.ConnectionLost):
                for _ in range(1000):
                    assert s.recv(timeout=30) is not None
            token = s.token
    finally:
        proxy.close()
    # Reconnecting, but the controller is gone for longer than give_up_after.
    proxy = CuttingProxy(port, cut_every=1 << 40)
    brief = bento_client.AttachOptions(give_up_after=1.0)
    with Client(proxy.url, attach_options=brief) as c:
        s = c.attach(token)
        assert s.recv(timeout=30) is not None
        proxy.close()  # cuts what is open and refuses what comes
        with pytest.raises(bento_client.ConnectionLost) as e:
            for _ in range(1000):
                assert s.recv(timeout=30) is not None
        assert "gave up reconnecting after 1s" in str(e.value)
    # A handle closed on purpose sends and receives nothing more.
    with Client(controller.url) as c:
        s = c.attach(token)
        s.close()
        with pytest.raises(bento_client.Detached):
            s.send("x")
        with pytest.raises(bento_client.Detached):
            s.recv()
        c.kill(token)
