"""The Python client library against the CLI, on a running controller:

- throughput (and the client's CPU per GiB): a 1 GiB stream (data messages of 256 KiB, ``bigout.py``),
  read by the library (sync ``Client``, and ``AsyncClient``) and by
  ``bento run --raw`` to /dev/null; from the call that starts the session
  to its exit, so the start is included in both;
- warm first byte: from starting a session of a function that sends one
  byte at once to that byte in hand: ``client.run()`` then ``recv()``
  with a client already made, and a ``bento run`` process (its start
  included: that is what a user of the CLI waits for). "Warm": after a
  first run, so the image and the connection are warm, and, where the
  image keeps a warm pool (``warm: N`` in its YAML), each sample waits
  until a warm container is idle (``warm_pool`` says whether every one
  could).

Prints one JSON line. Usage:

    python clients/python/bench/bench.py URL BENTO_BIN [--bytes N] [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import httpx

from bento_client import AsyncClient, Client

HERE = Path(__file__).resolve().parent
FIRST = "def main():\n    send(b'x')\n"


def cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def lib_stream(client: Client, total: int) -> float:
    t = time.perf_counter()
    got = 0
    with client.run("bench-bigout", total) as s:
        for m in s:
            got += len(m.data)
        code = s.wait().code
    dt = time.perf_counter() - t
    if got != total or code != 0:
        raise RuntimeError(f"library: {got} bytes of {total}, exit {code}")
    return dt


async def alib_stream(url: str, total: int) -> float:
    async with AsyncClient(url) as client:
        t = time.perf_counter()
        got = 0
        async with await client.run("bench-bigout", total) as s:
            async for m in s:
                got += len(m.data)
            code = (await s.wait()).code
        dt = time.perf_counter() - t
    if got != total or code != 0:
        raise RuntimeError(f"async library: {got} bytes of {total}, exit {code}")
    return dt


def cli_stream(bento: str, env: Dict[str, str], total: int) -> float:
    t = time.perf_counter()
    with open(os.devnull, "wb") as null:
        r = subprocess.run([bento, "run", "--raw", "bench-bigout", str(total)], stdout=null,
                           stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, timeout=1800)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"bento run: exit {r.returncode}: {r.stderr.decode(errors='replace')[-500:]}")
    return dt


def pool_ready(url: str) -> Optional[float]:
    """Idle warm containers of the python image (``None``: no pool)."""
    key = os.environ.get("BENTO_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    text = httpx.get(url + "/metrics", headers=headers, timeout=10).text
    for line in text.splitlines():
        if line.startswith('bento_pool_ready{image="python"} '):
            return float(line.split()[-1])
    return None


def wait_warm(url: str) -> bool:
    """Waits (30 s at most) until a warm container is idle, so that every
    sample starts warm, not just after another took the last one."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready = pool_ready(url)
        if ready is None:
            return False
        if ready >= 1:
            return True
        time.sleep(0.02)
    return False


def lib_first_byte(client: Client) -> float:
    t = time.perf_counter()
    with client.run("bench-first") as s:
        m = s.recv(timeout=60)
        dt = time.perf_counter() - t
        if m is None or m.data != b"x":
            raise RuntimeError(f"library first byte: {m!r}")
        s.wait()
    return dt


def cli_first_byte(bento: str, env: Dict[str, str]) -> float:
    t = time.perf_counter()
    p = subprocess.Popen([bento, "run", "--raw", "bench-first"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env)
    assert p.stdout is not None
    b = p.stdout.read(1)
    dt = time.perf_counter() - t
    p.stdout.read()
    p.wait(timeout=60)
    if b != b"x" or p.returncode != 0:
        raise RuntimeError(f"bento run first byte: {b!r}, exit {p.returncode}")
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("bento")
    ap.add_argument("--bytes", type=int, default=1 << 30)
    ap.add_argument("--runs", type=int, default=10, help="first-byte samples of each")
    args = ap.parse_args()
    env = dict(os.environ, BENTO_URL=args.url)
    mib = args.bytes / (1 << 20)
    with Client(args.url) as client:
        client.submit_file(HERE / "bigout.py", name="bench-bigout")
        client.submit(FIRST, name="bench-first")
        lib_first_byte(client)  # warm-up: image, connection, pool refill
        cli_first_byte(args.bento, env)
        lib_fb: List[float] = []
        cli_fb: List[float] = []
        warm = True
        for _ in range(args.runs):  # interleaved, so both see the same machine
            warm = wait_warm(args.url) and warm
            lib_fb.append(lib_first_byte(client))
            warm = wait_warm(args.url) and warm
            cli_fb.append(cli_first_byte(args.bento, env))
        c0 = cpu(resource.RUSAGE_SELF)
        lib_t = lib_stream(client, args.bytes)
        lib_cpu = cpu(resource.RUSAGE_SELF) - c0
    c0 = cpu(resource.RUSAGE_CHILDREN)
    cli_t = cli_stream(args.bento, env, args.bytes)
    cli_cpu = cpu(resource.RUSAGE_CHILDREN) - c0
    c0 = cpu(resource.RUSAGE_SELF)
    alib_t = asyncio.run(alib_stream(args.url, args.bytes))
    alib_cpu = cpu(resource.RUSAGE_SELF) - c0
    gib = args.bytes / (1 << 30)
    print(json.dumps({
        "bytes": args.bytes,
        "lib_mib_s": round(mib / lib_t, 1),
        "async_lib_mib_s": round(mib / alib_t, 1),
        "cli_mib_s": round(mib / cli_t, 1),
        # The client's own CPU (user + system) per GiB: steadier than MiB/s
        # on a loaded machine.
        "lib_cpu_s_per_gib": round(lib_cpu / gib, 2),
        "async_lib_cpu_s_per_gib": round(alib_cpu / gib, 2),
        "cli_cpu_s_per_gib": round(cli_cpu / gib, 2),
        "lib_first_byte_ms": round(statistics.median(lib_fb) * 1000, 1),
        "cli_first_byte_ms": round(statistics.median(cli_fb) * 1000, 1),
        "first_byte_runs": args.runs,
        "warm_pool": warm,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
