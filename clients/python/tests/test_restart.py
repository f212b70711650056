"""A controller that crashes (SIGKILL) and comes back: an attached handle
reconnects on its own, waits out the session's resuming (503), and goes
on with everything exactly once, input included."""

from __future__ import annotations

from typing import List

import bento_client
from bento_client import Client

from .conftest import FUNCTIONS, Controller, crash_and_restart, start_controller, stop_controller


def test_a_controller_crash_is_survived(controller: Controller) -> None:
    c = start_controller(controller.bin)
    events: List[bento_client.Event] = []
    try:
        with Client(c.url) as client:
            client.submit_file(FUNCTIONS / "echo.py", name="echo")
            s = client.run("echo", on_event=events.append)
            for i in range(50):
                s.send(f"before {i}")
            got = [s.recv(timeout=30) for _ in range(20)]
            crash_and_restart(c)
            for i in range(50):
                s.send(f"after {i}")
            s.end_input()
            got += list(s)
            ex = s.wait()
    finally:
        stop_controller(c)
    data = [m.text for m in got if m is not None and m.stream == "data"]
    assert data == [f"before {i}" for i in range(50)] + [f"after {i}" for i in range(50)]
    assert [m.text for m in got if m is not None and m.stream == "stdout"] == ["echoed 100\n"]
    assert ex.code == 0
    assert s.reconnects >= 1 and any(isinstance(e, bento_client.Reconnecting) for e in events)
