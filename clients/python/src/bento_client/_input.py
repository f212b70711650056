"""The client's side of the input stream (src/client/attach/input.rs):
messages numbered but not yet acknowledged by the server.

Every message stays here until an ``input_ack`` covers it; after a
reconnect everything from the server's ``hello.input_next`` on is sent
again, and the server applies each seq once. The buffer is bounded
(``max_messages``, ``max_bytes``): a producer faster than the server waits
in ``push`` instead of growing memory."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable, Deque, Optional, Tuple, Union

from .errors import BentoError, Detached, InputClosed, InputTooLarge

#: The largest input message the server accepts (docs/api.md).
MAX_INPUT_MESSAGE = 1 << 20


class _Eof:
    def __repr__(self) -> str:
        return "EOF"


EOF = _Eof()
Item = Union[bytes, _Eof]


def _size(item: Item) -> int:
    return len(item) if isinstance(item, bytes) else 0


class InputBuffer:
    """Lives in the attachment's event loop; not thread-safe."""

    def __init__(self, max_messages: int, max_bytes: int, next_seq: int):
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.items: Deque[Tuple[int, Item]] = deque()
        self.bytes = 0
        self.next_seq = max(1, next_seq)
        #: Items at index < sent went out on the current connection.
        self.sent = 0
        self.eof_queued = False
        self.ended: Optional[BentoError] = None
        self.space = asyncio.Event()
        #: Called when there is something to send (wakes the connection).
        self.notify: Callable[[], None] = lambda: None

    def _try_push(self, item: Item) -> Optional[int]:
        if _size(item) > MAX_INPUT_MESSAGE:
            raise InputTooLarge(f"an input message of {_size(item)} bytes is over the limit of {MAX_INPUT_MESSAGE}")
        if self.ended is not None:
            raise self.ended
        if self.eof_queued:
            raise InputClosed("input already ended (end_input() was called)")
        # A message larger than the whole byte budget still goes, alone.
        fits = not self.items or (
            len(self.items) < self.max_messages and self.bytes + _size(item) <= self.max_bytes
        )
        if not fits:
            return None
        seq = self.next_seq
        self.next_seq += 1
        self.eof_queued = item is EOF
        self.bytes += _size(item)
        self.items.append((seq, item))
        self.notify()
        return seq

    async def push(self, item: Item) -> int:
        """Queues ``item``, waiting while the buffer is full; its seq."""
        while True:
            self.space.clear()
            seq = self._try_push(item)
            if seq is not None:
                return seq
            await self.space.wait()

    def next_unsent(self) -> Optional[Tuple[int, Item]]:
        if self.sent >= len(self.items):
            return None
        item = self.items[self.sent]
        self.sent += 1
        return item

    def ack(self, seq: int) -> None:
        """The server applied everything up to ``seq``."""
        freed = False
        while self.items and self.items[0][0] <= seq:
            _, item = self.items.popleft()
            self.bytes -= _size(item)
            self.sent = max(0, self.sent - 1)
            freed = True
        if freed:
            self.space.set()

    def resume(self, input_next: int) -> None:
        """A new connection: the server expects ``input_next``; resend the rest."""
        self.ack(input_next - 1)
        self.sent = 0
        # Another client may have sent input meanwhile: never number below it.
        self.next_seq = max(self.next_seq, input_next)
        if self.items:
            self.notify()

    def close_by_server(self) -> None:
        """``hello.input_closed``: another client already ended the input."""
        if self.ended is None:
            self.ended = InputClosed("input was already ended (by this or another client)")
        self.space.set()

    def end(self, why: Optional[BentoError] = None) -> None:
        """The attachment is over: nothing more can be sent."""
        if self.ended is None:
            self.ended = why or Detached("the attachment has ended")
        self.space.set()

    @property
    def unacked(self) -> int:
        return len(self.items)
