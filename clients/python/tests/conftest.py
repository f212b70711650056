"""A real controller for the suite: ``bento serve`` on a free port with a
config of its own in a temporary directory (as tests/kit/controller.rs
makes one), on the real Docker engine, with the repository's function
image built first (``bento images build python``).

``BENTO_BIN`` names the ``bento`` binary (tests/python_client.rs passes
the one cargo built); without it, ``target/debug/bento`` of this checkout.
Every container the controller made is removed at the end."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator

import httpx
import pytest

import bento_client

REPO = Path(__file__).resolve().parents[3]
FUNCTIONS = Path(__file__).resolve().parent / "functions"


@dataclass
class Controller:
    url: str
    bin: str
    dir: Path
    prefix: str
    proc: "subprocess.Popen[bytes]"
    functions: Dict[str, str]

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.dir / "serve.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bento_bin() -> str:
    b = os.environ.get("BENTO_BIN") or str(REPO / "target" / "debug" / "bento")
    if not os.access(b, os.X_OK):
        pytest.exit(f"no bento binary at {b}: run cargo build, or set BENTO_BIN", returncode=2)
    return b


def _remove_containers(prefix: str) -> None:
    for kind in ("session", "pool", "check"):
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={prefix}.{kind}"],
                             capture_output=True, text=True, timeout=60).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=120)


def start_controller(bin_: str, extra: str = "", images_dir: "Path | None" = None) -> Controller:
    d = Path(tempfile.mkdtemp(prefix="bento-py-"))
    port = _free_port()
    prefix = f"pytest{uuid.uuid4().hex[:8]}.bento"
    (d / "config").mkdir()
    (d / "config" / "bento.yaml").write_text(
        f"listen: 127.0.0.1:{port}\n"
        f"data_dir: {d / 'data'}\n"
        f"images_dir: {images_dir or REPO / 'config' / 'images'}\n"
        f"driver_dir: {REPO / 'driver'}\n"
        f"label_prefix: {prefix}\n"
        # A dead client is noticed within seconds, as in the Rust tests.
        "heartbeat_interval: 1s\n" + extra
    )
    c = Controller(f"http://127.0.0.1:{port}", bin_, d, prefix, None, {})  # type: ignore[arg-type]
    spawn(c)
    return c


def spawn(c: Controller) -> None:
    """Starts ``bento serve`` on ``c``'s config and waits until it answers."""
    with open(c.dir / "serve.log", "ab") as log:
        c.proc = subprocess.Popen([c.bin, "serve", "--config", str(c.dir / "config" / "bento.yaml")],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if c.proc.poll() is not None:
            raise RuntimeError(f"bento serve exited ({c.proc.returncode}):\n{c.log_tail()}")
        try:
            httpx.get(c.url + "/healthz", timeout=2)
            return  # any answer: it serves
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    stop_controller(c)
    raise RuntimeError(f"bento serve did not come up:\n{c.log_tail()}")


def crash_and_restart(c: Controller) -> None:
    """SIGKILLs the controller (its sessions' containers run on) and starts
    it again on the same port and data dir: it resumes them."""
    c.proc.kill()
    c.proc.wait()
    spawn(c)


def stop_controller(c: Controller) -> None:
    if c.proc.poll() is None:
        c.proc.send_signal(signal.SIGTERM)
        try:
            c.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            c.proc.kill()
            c.proc.wait()
    _remove_containers(c.prefix)
    shutil.rmtree(c.dir, ignore_errors=True)


OFFLINE_BASE = "bento/base:bookworm"


def _has_image(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True, timeout=60).returncode == 0


def build_image(bin_: str) -> None:
    """Builds the python function image, bootstrapping the offline base
    first where no base can be had (as tests/kit/docker.rs does)."""
    env = dict(os.environ)
    if "BENTO_BASE_IMAGE" not in env and not _has_image("python:3.12-slim"):
        if not _has_image(OFFLINE_BASE):
            subprocess.run([str(REPO / "images" / "base" / "bootstrap.sh")], check=True, timeout=1800)
        env["BENTO_BASE_IMAGE"] = OFFLINE_BASE
    r = subprocess.run([bin_, "images", "build", "python", "--config", str(REPO / "config" / "bento.yaml")],
                       capture_output=True, text=True, timeout=900, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"bento images build failed:\n{r.stdout}\n{r.stderr}")


@pytest.fixture(scope="session")
def controller() -> Iterator[Controller]:
    bin_ = _bento_bin()
    build_image(bin_)
    c = start_controller(bin_)
    try:
        with bento_client.Client(c.url) as client:
            for f in sorted(FUNCTIONS.glob("*.py")):
                info = client.submit_file(f, name=f"t-{f.stem}")
                c.functions[f.stem] = info.name or info.id
        yield c
    finally:
        stop_controller(c)


@pytest.fixture
def url(controller: Controller) -> str:
    return controller.url


@pytest.fixture
def fn(controller: Controller) -> Dict[str, str]:
    """Test function names by file stem: ``fn["echo"]`` is ``t-echo``."""
    return controller.functions


@pytest.fixture
def client(url: str) -> Iterator[bento_client.Client]:
    with bento_client.Client(url) as c:
        yield c
