"""Input exactly once and output exactly once through a proxy that cuts
the connection at least 50 times during a run of at least 20 MiB of output
and 5,000 inputs."""

from __future__ import annotations

import threading
from typing import Dict, List

import bento_client
from bento_client import Client

from .conftest import Controller
from .proxy import CuttingProxy

INPUTS = 5000
FILLER = 4300  # bytes after each echo: 5,000 x 4,300 > 20 MiB


def expected_output() -> List[bytes]:
    out = []
    pad = b"#" * FILLER
    for i in range(INPUTS):
        m = b"in-%05d" % i
        out.append(m)
        out.append((b"fill:" + m + b":" + pad)[:FILLER])
    return out


def test_exactly_once_through_a_cutting_proxy(controller: Controller, fn: Dict[str, str]) -> None:
    port = int(controller.url.rsplit(":", 1)[1])
    proxy = CuttingProxy(port, cut_every=256 << 10)
    events: List[bento_client.Event] = []
    try:
        with Client(controller.url) as direct, Client(proxy.url) as cut:
            token = direct.run(fn["mixer"], FILLER, detach=True).token
            proxy.armed = False  # the first connection is made whole...
            s = cut.attach(token, on_event=events.append)
            proxy.armed = True  # ...and every later one may be cut anywhere

            def feed() -> None:
                for i in range(INPUTS):
                    s.send(b"in-%05d" % i)
                s.end_input()

            feeder = threading.Thread(target=feed)
            feeder.start()
            got = []
            seqs = []
            for m in s:
                assert m.stream == "data", m
                got.append(m.data)
                seqs.append(m.seq)
            feeder.join()
            ex = s.wait()
    finally:
        proxy.close()
    want = expected_output()
    assert sum(len(b) for b in got) >= 20 << 20
    # Every message once, in order: none lost, none repeated.
    assert len(got) == len(want)
    assert got == want
    assert seqs == list(range(1, len(seqs) + 1))
    assert (ex.code, ex.message) == (0, "exited with code 0")
    assert proxy.cuts >= 50, proxy.cuts
    reconnected = [e for e in events if isinstance(e, bento_client.Reconnected)]
    assert s.reconnects == len(reconnected) >= 25, (s.reconnects, proxy.cuts)
    assert any(isinstance(e, bento_client.Reconnecting) for e in events)


def test_a_silent_connection_is_noticed_by_heartbeats(controller: Controller, fn: Dict[str, str]) -> None:
    port = int(controller.url.rsplit(":", 1)[1])
    proxy = CuttingProxy(port, cut_every=1 << 40)
    proxy.armed = False
    events: List[bento_client.Event] = []

    def on_event(e: bento_client.Event) -> None:
        events.append(e)
        if isinstance(e, bento_client.Reconnecting):
            proxy.stall(False)

    # Heartbeats faster than the defaults (5 s, dead after 10 s), for time.
    fast = bento_client.AttachOptions(heartbeat_interval=0.25, heartbeat_timeout=1.0)
    try:
        with Client(proxy.url, attach_options=fast) as c:
            s = c.run(fn["counter"], 100, 0.01, on_event=on_event)
            got = []
            for m in s:
                got.append(m)
                if len(got) == 10:
                    proxy.stall(True)
            ex = s.wait()
    finally:
        proxy.close()
    assert [m.text for m in got if m.stream == "data"] == [str(i) for i in range(100)]
    assert [m.seq for m in got] == list(range(1, 102))
    assert ex.code == 0
    causes = [e.cause for e in events if isinstance(e, bento_client.Reconnecting)]
    assert causes and "no word from the server" in causes[0], causes
    assert s.reconnects >= 1
