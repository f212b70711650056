"""The attachment: one session's I/O over the attach WebSocket, kept alive
across connections. The same design as the Rust client
(src/client/attach/): a background task serves one connection after
another (``_conn.py``) and reconnects with backoff when one is lost; output
goes to a bounded queue the user reads from, input comes from a bounded
buffer of unacknowledged messages.

Runs in one asyncio event loop: the user's (``AsyncClient``) or the sync
client's private loop thread (``Client``)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Deque, List, Optional, Union

from websockets.asyncio.client import ClientConnection

from . import _conn
from ._acks import AckBatcher
from ._input import InputBuffer, Item
from ._ws import Endpoint, Hello, connect, worth_reconnecting
from .errors import BentoError, ConnectionLost, Detached, ProtocolError, SessionClosed, Unavailable
from .options import AttachOptions
from .types import Deadline, Exit, Message, Reconnected, Reconnecting

log = logging.getLogger("bento_client")


@dataclass(frozen=True)
class Ended:
    """The last item of the queue: why the attachment ended. ``error`` is
    ``None`` after the exit was delivered, or after a detach of our own."""

    error: Optional[BentoError]


Item_ = Union[Message, Exit, Reconnecting, Reconnected, Deadline, Ended]


class Lost(Exception):
    """A connection's transport failed; another connection may carry on."""

    def __init__(self, cause: str):
        super().__init__(cause)
        self.cause = cause


async def connect_when_ready(ep: Endpoint, after: int, opts: AttachOptions) -> "tuple[ClientConnection, Hello]":
    """Connects, waiting out a session that is resuming after a controller
    restart (503): that takes moments. Every other answer is final here."""
    loop = asyncio.get_running_loop()
    until = loop.time() + opts.resuming_wait
    delay = 0.05
    while True:
        try:
            return await connect(ep, after, opts.connect_timeout)
        except Unavailable:
            if loop.time() + delay >= until:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


class Attachment:
    """Create with ``await Attachment.open(...)``; see the module doc."""

    def __init__(self, ep: Endpoint, opts: AttachOptions, hello: Hello):
        self.ep = ep
        self.opts = opts
        self.session_id = hello.session
        self.hello = hello
        self.input = InputBuffer(opts.input_max_messages, opts.input_max_bytes, hello.input_next)
        if hello.input_closed:
            self.input.close_by_server()
        self.acks = AckBatcher(opts.ack_interval, opts.ack_every)
        #: Highest output seq received; output at or below it is a duplicate.
        self.last_received = opts.after
        #: Highest seq put in the queue: what the user is to take before a
        #: takeover's final ack.
        self.delivered = 0
        #: Highest seq handed to the user.
        self.written_seq = 0
        self.exit_received = False
        self.reconnects = 0
        self.queue: Deque[Item_] = deque()
        self.room = asyncio.Event()
        self.ready = asyncio.Event()
        self.wake = asyncio.Event()  # the connection's control task
        self.written_changed = asyncio.Event()
        self.detach_requested = False
        self.pong_due = False
        self.reading = False
        self.waiting_since = 0.0
        self.ended: Optional[Ended] = None
        self.done = asyncio.Event()
        self.input.notify = self.wake.set
        self._task: Optional["asyncio.Task[None]"] = None

    @staticmethod
    async def open(ep: Endpoint, opts: AttachOptions) -> "Attachment":
        """Makes the first connection (so an unknown token or an unreachable
        controller is this call's error), then serves it in the background."""
        ws, hello = await connect_when_ready(ep, opts.after, opts)
        att = Attachment(ep, opts, hello)
        att._task = asyncio.get_running_loop().create_task(att._run(ws))
        return att

    # -- the user's side ----------------------------------------------------

    async def take(self, at_most: int, timeout: Optional[float]) -> List[Item_]:
        """Up to ``at_most`` queued items, waiting (``timeout``) for one;
        ``[]`` on timeout. The ``Ended`` item stays, so it is seen again."""
        if not self.queue:
            self.ready.clear()
            if timeout is None:
                await self.ready.wait()
            else:
                try:
                    await asyncio.wait_for(self.ready.wait(), timeout)
                except asyncio.TimeoutError:
                    return []
        out: List[Item_] = []
        while self.queue and len(out) < at_most:
            item = self.queue[0]
            if isinstance(item, Ended):
                if not out:
                    out.append(item)
                break
            out.append(self.queue.popleft())
        if len(self.queue) < self.opts.queue:
            self.room.set()
        return out

    def written(self, seq: int) -> None:
        """Everything up to ``seq`` has been handed to the user."""
        seq = min(seq, self.last_received)
        if seq <= self.written_seq:
            return
        self.written_seq = seq
        had_deadline = self.acks.pending_since is not None
        self.acks.mark_written(seq, asyncio.get_running_loop().time())
        self.written_changed.set()
        # Wake the connection only when it has something new to do: an ack
        # due now, or a deadline to start counting.
        if not had_deadline or self.acks.due(asyncio.get_running_loop().time()) is not None:
            self.wake.set()

    async def send(self, item: Item) -> int:
        return await self.input.push(item)

    async def detach(self) -> None:
        """Leaves: acks what was handed out, tells the server, waits until
        the attachment is over. The function keeps running."""
        if self.ended is None:
            self.detach_requested = True
            self.wake.set()
        await self.done.wait()

    # -- the background task -----------------------------------------------

    def deliver(self, item: Item_) -> None:
        self.queue.append(item)
        self.ready.set()
        if len(self.queue) >= self.opts.queue:
            self.room.clear()

    async def _run(self, ws: ClientConnection) -> None:
        end: Optional[BentoError] = None
        try:
            while True:
                try:
                    await _conn.serve(self, ws)
                    break  # over: finished or detached
                except Lost as lost:
                    log.debug("attach connection lost: %s", lost.cause)
                    if not self.opts.reconnect:
                        raise ConnectionLost(f"connection to the Bento server lost: {lost.cause}") from None
                    ws = await self._reconnect(lost.cause)
        except _Detached:
            pass
        except BentoError as e:
            end = e
        except Exception as e:  # a bug here must still end the attachment
            log.exception("attachment failed")
            end = ProtocolError(f"the attachment failed: {e!r}")
        finally:
            self._finish(end)

    def _finish(self, end: Optional[BentoError]) -> None:
        # Input sent from now on fails as output does: with the error that
        # ended the attachment (SessionTakenOver, ConnectionLost, ...).
        self.input.end(end if end is not None else Detached("the attachment has ended"))
        self.ended = Ended(end)
        self.deliver(self.ended)
        self.done.set()

    async def _reconnect(self, cause: str) -> ClientConnection:
        loop = asyncio.get_running_loop()
        started = loop.time()
        delay = self.opts.backoff_initial
        attempt = 0
        while True:
            if self.opts.give_up_after is not None and loop.time() - started >= self.opts.give_up_after:
                raise ConnectionLost(f"gave up reconnecting after {self.opts.give_up_after:g}s: {cause}")
            attempt += 1
            if attempt == 1:
                log.warning("bento session %s: connection lost (%s), reconnecting…", self.session_id, cause)
            self.deliver(Reconnecting(attempt=attempt, delay=delay, cause=cause))
            if await self._sleep_or_detach(delay):
                raise _Detached()
            delay = min(delay * 2, self.opts.backoff_max)
            try:
                ws, hello = await connect(self.ep, self.last_received, self.opts.connect_timeout)
            except SessionClosed as e:
                if not worth_reconnecting(e.reason):
                    raise
                cause = str(e)
                continue
            except BentoError as e:
                if _is_final(e):
                    raise
                cause = str(e)
                continue
            if hello.last_seq < self.last_received:
                log.info("the server has not yet recovered all output we received (%d < %d)",
                         hello.last_seq, self.last_received)
            self.input.resume(hello.input_next)
            if hello.input_closed:
                self.input.close_by_server()
            self.reconnects += 1
            log.info("bento session %s: reconnected, resuming after seq %d", self.session_id, self.last_received)
            self.deliver(Reconnected(last_seq=self.last_received))
            return ws

    async def _sleep_or_detach(self, delay: float) -> bool:
        """Sleeps ``delay``; true if a detach was asked for meanwhile."""
        loop = asyncio.get_running_loop()
        until = loop.time() + delay
        while not self.detach_requested:
            left = until - loop.time()
            if left <= 0:
                return False
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), left)
            except asyncio.TimeoutError:
                return False
        return True


class _Detached(Exception):
    """A detach asked for while no connection was up: nobody to tell."""


def _is_final(e: BentoError) -> bool:
    """Errors on reconnect that another attempt cannot fix."""
    if e.status is not None:
        return e.status < 500
    return isinstance(e, ProtocolError)

