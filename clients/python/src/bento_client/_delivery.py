"""What both session handles (sync and async) do with the attachment's
queue: hand out messages (and mark them written, which is what gets them
acknowledged), keep the exit, pass reconnect events on, and turn the end
of the attachment into a return or an exception."""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional, Union

from ._attach import Ended, Item_
from .errors import BentoError, Detached, SessionClosed
from .types import Deadline, Event, Exit, Message, Reconnected, Reconnecting


class RecvTimeout(BentoError, TimeoutError):
    """``recv(timeout=...)`` had nothing in time (a ``TimeoutError`` too)."""


#: A callback for reconnect and deadline events.
OnEvent = Callable[[Event], Any]


class _More:
    pass


MORE = _More()


class Delivery:
    """The handle's view of the stream. Not thread-safe by itself: the sync
    handle holds a lock around it."""

    def __init__(self, on_event: Optional[OnEvent]):
        self.on_event = on_event
        self.exit: Optional[Exit] = None
        self.end: Optional[Ended] = None
        self.reconnects = 0
        #: The last ``deadline`` warning received, if any.
        self.deadline: Optional[Deadline] = None

    @property
    def over(self) -> bool:
        return self.exit is not None or self.end is not None

    def handle(self, item: Item_, written: Callable[[int], None]) -> Union[Message, None, _More]:
        """A message to hand out, ``None`` at the end of output, ``MORE``
        for an item that is not one (an event); raises the attachment's
        error if it ended with one."""
        if isinstance(item, Message):
            written(item.seq)
            return item
        if isinstance(item, Exit):
            self.exit = item
            written(item.seq)
            return None
        if isinstance(item, (Reconnecting, Reconnected, Deadline)):
            if isinstance(item, Reconnected):
                self.reconnects += 1
            if isinstance(item, Deadline):
                self.deadline = item
            if self.on_event is not None:
                self.on_event(item)
            return MORE
        assert isinstance(item, Ended)
        self.end = item
        self.finished()
        return None

    def finished(self) -> None:
        """At the end: ``None`` if the output ended (the exit was handed out,
        or we detached ourselves), else the attachment's error."""
        if self.exit is not None or self.end is None or self.end.error is None:
            return None
        raise self.end.error

    def exit_or_raise(self) -> Exit:
        if self.exit is not None:
            return self.exit
        if self.end is not None and self.end.error is not None:
            raise self.end.error
        if self.end is not None:
            raise Detached("detached before the function ended")
        raise SessionClosed("the session ended without an exit")


def write_out(msg: Message) -> None:
    """Output nobody took, written as ``bento run`` does: data messages one
    a line, stdout and stderr as they came."""
    out = sys.stderr if msg.stream == "stderr" else sys.stdout
    out.flush()
    out.buffer.write(msg.data)
    if msg.stream == "data" and msg.end:
        out.buffer.write(b"\n")
    out.buffer.flush()
