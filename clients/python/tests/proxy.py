"""A fault-injecting TCP proxy (asyncio, on its own thread): it forwards
connections to the controller and cuts every open one, both ways at once,
each time ``cut_every`` more bytes have passed through it (either way), so
cuts land anywhere: in a handshake, mid-frame, between input and its ack.
It can also stall: hold every byte and close nothing, as a dead peer."""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Optional, Set


class CuttingProxy:
    def __init__(self, upstream_port: int, cut_every: int, seed: int = 7):
        self.upstream_port = upstream_port
        self.cut_every = cut_every
        self.rand = random.Random(seed)
        self.cuts = 0
        self.connections = 0
        self.port = 0
        self.armed = True
        self._budget = self._next_budget()
        self._writers: Set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._flow: Optional[asyncio.Event] = None
        self._server: Optional[asyncio.base_events.Server] = None
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        started.wait(10)

    def _next_budget(self) -> int:
        # Between half and one and a half of cut_every: cuts do not fall
        # into step with the frames.
        return self.rand.randint(self.cut_every // 2, self.cut_every * 3 // 2)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)

        async def up() -> None:
            self._flow = asyncio.Event()
            self._flow.set()
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            started.set()

        self._loop.run_until_complete(up())
        self._loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            cw.close()
            return
        self._writers.update((cw, uw))
        await asyncio.gather(self._pipe(cr, uw), self._pipe(ur, cw), return_exceptions=True)
        for w in (cw, uw):
            self._writers.discard(w)
            w.close()

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await r.read(65536)
                if not data:
                    break
                assert self._flow is not None
                await self._flow.wait()  # stalled: hold everything, close nothing
                if self.armed:
                    self._budget -= len(data)
                    if self._budget <= 0:
                        # Forward part of it, then cut everything open.
                        w.write(data[: self.rand.randint(0, len(data))])
                        self._cut_all()
                        return
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._abort(w)

    def _abort(self, w: asyncio.StreamWriter) -> None:
        t = w.transport
        if t is not None and not t.is_closing():
            t.abort()

    def _cut_all(self) -> None:
        self.cuts += 1
        self._budget = self._next_budget()
        for w in list(self._writers):
            self._abort(w)

    def cut_now(self) -> None:
        """Cuts every open connection at once."""
        self._loop.call_soon_threadsafe(self._cut_all)

    def stall(self, stalled: bool) -> None:
        """Stops (or starts again) forwarding, leaving every connection open:
        a peer that went silent, which only heartbeats notice."""
        def flip() -> None:
            assert self._flow is not None
            if stalled:
                self._flow.clear()
            else:
                self._flow.set()

        self._loop.call_soon_threadsafe(flip)

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                self._abort(w)
            # The aborted connections end their tasks; cancel only stragglers.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=2)
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
