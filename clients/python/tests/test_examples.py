"""The examples in examples/python/, run as a newcomer runs them (a
process each, BENTO_URL in the environment), with their output checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Dict

from .conftest import REPO

EXAMPLES = REPO / "examples" / "python"


def run(url: str, *args: str, stdin: str = "") -> "subprocess.CompletedProcess[str]":
    env = dict(os.environ, BENTO_URL=url)
    env.pop("BENTO_API_KEY", None)
    return subprocess.run([sys.executable, *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=300, cwd=REPO)


def test_interactive_echo(url: str) -> None:
    r = run(url, str(EXAMPLES / "echo.py"), stdin="one\ntwo\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "echoing; type stop to end\none\ntwo\nbye\n"


def test_detach_and_come_back(url: str) -> None:
    first = run(url, str(EXAMPLES / "detach.py"), "start")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    token = lines[-1]
    assert len(token) == 64 and lines[:-1] == [f"got {i}" for i in range(5)]
    rest = run(url, str(EXAMPLES / "detach.py"), "resume", token)
    assert rest.returncode == 0, rest.stderr
    assert rest.stdout.splitlines() == (
        [f"got {i}" for i in range(5, 200)] + ["got counted to 200", "exited with code 0"]
    )


def test_fan_out_of_20(url: str) -> None:
    r = run(url, str(EXAMPLES / "fanout.py"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 20
    for i, line in enumerate(lines):
        n, rest = line.split(" ", 1)
        words, counts = rest.split(": ", 1)
        assert (int(n), words) == (i, "exited with code 0")
        got: Dict[str, int] = json.loads(counts)
        assert got["lines"] == 2 and got["words"] == 3 + i
