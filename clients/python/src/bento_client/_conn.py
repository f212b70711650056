"""Serving one attach connection (src/client/attach/conn.rs): output to the
queue, input and acks to the server, heartbeats both ways, and how the
connection ends (a detach, a takeover, the exit handed out, or a lost
transport, raised as ``Lost``).

Two tasks share the connection: the reader (the hot path: frames to the
queue, read only while the queue has room, so a slow reader slows the
server instead of growing a buffer) and the control task, the only one
that writes (acks, input, pings and pongs)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Dict

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, WebSocketException

from ._input import EOF
from ._ws import closed_error, control, decode_output, encode_input, parse_control, worth_reconnecting
from .errors import ProtocolError, SessionTakenOver
from .types import Deadline, Exit, Message

if TYPE_CHECKING:
    from ._attach import Attachment


class _Leave(Exception):
    """The control task's way of saying: the user detaches."""


class _Over(Exception):
    """The exit was handed out and acknowledged: the attachment is done."""


async def serve(att: "Attachment", ws: ClientConnection) -> None:
    """Serves ``ws`` until the connection ends: returns when the attachment
    is over (finished, detached), raises ``Lost`` when another connection
    may carry on, or the ``BentoError`` that ends the attachment."""
    from ._attach import Lost

    loop = asyncio.get_running_loop()
    reader = loop.create_task(_reader(att, ws))
    ctl = loop.create_task(_control(att, ws))
    try:
        done, _ = await asyncio.wait({reader, ctl}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        reader.cancel()
        ctl.cancel()
        raise
    for t in (reader, ctl):
        if t not in done:
            t.cancel()
    await asyncio.gather(reader, ctl, return_exceptions=True)
    first = reader if reader in done else ctl
    exc = first.exception()
    if isinstance(exc, _Leave):
        await _leave(att, ws)
        return
    if isinstance(exc, _Over):
        return
    if isinstance(exc, SessionTakenOver):
        await _hand_over(att, ws)
        raise exc
    if isinstance(exc, Lost):
        await _abandon(ws)
        raise exc
    if isinstance(exc, (ConnectionClosed, WebSocketException, OSError)):
        await _abandon(ws)
        raise Lost(f"the connection failed: {exc}")
    await _abandon(ws)
    if exc is None:
        raise ProtocolError("a connection task ended without a reason")
    raise exc


async def _abandon(ws: ClientConnection) -> None:
    """Drops a connection that failed, without waiting on the peer."""
    try:
        ws.transport.abort()
    except Exception:
        pass


async def _reader(att: "Attachment", ws: ClientConnection) -> None:
    from ._attach import Lost

    loop = asyncio.get_running_loop()
    while True:
        while len(att.queue) >= att.opts.queue:
            att.reading = False
            att.room.clear()
            await att.room.wait()
        att.reading = True
        att.waiting_since = loop.time()
        try:
            msg = await ws.recv()
        except ConnectionClosed:
            if att.acks.exit_written():
                # We close once the exit is handed out and acked; the
                # server's answer to that may reach this task first.
                raise _Over() from None
            raise Lost("the server closed the connection") from None
        if isinstance(msg, bytes):
            seq, stream, end, data = decode_output(msg)
            if seq > att.last_received:
                att.last_received = seq
                att.delivered = seq
                att.deliver(Message(seq=seq, stream=stream, data=data, end=end))
            continue
        m = parse_control(msg)
        kind = m["type"]
        if kind == "exit":
            _on_exit(att, m)
        elif kind == "input_ack":
            att.input.ack(int(m.get("seq", 0)))
        elif kind == "ping":
            att.pong_due = True
            att.wake.set()
        elif kind == "deadline":
            try:
                att.deliver(Deadline.from_json(m))
            except (TypeError, ValueError) as e:
                raise ProtocolError(f"bad deadline message: {e}") from None
        elif kind == "closed":
            reason = m.get("reason") or {}
            if reason.get("kind") == "finished" and att.exit_received:
                raise _Over()
            if worth_reconnecting(reason) and att.opts.reconnect:
                raise Lost(str(closed_error(reason)))
            raise closed_error(reason)
        # pong, and a second hello, need nothing.


def _on_exit(att: "Attachment", m: Dict[str, Any]) -> None:
    seq = int(m.get("seq", 0))
    new = seq > att.last_received
    if att.exit_received and not new:
        return
    # An exit under a seq we already have: we attached with `after` at or
    # past it, or a controller restart could not recover the output we were
    # sent last. Either way this is how the function ended.
    att.last_received = max(att.last_received, seq)
    att.exit_received = True
    att.acks.set_exit(seq)
    att.delivered = max(att.delivered, seq)
    att.deliver(Exit.from_json(m.get("exit") or {}, seq=seq))
    if not new:
        att.wake.set()


async def _control(att: "Attachment", ws: ClientConnection) -> None:
    from ._attach import Lost

    loop = asyncio.get_running_loop()
    hb = att.opts.heartbeat_interval
    next_ping = loop.time() + hb
    while True:
        att.wake.clear()
        if att.detach_requested:
            raise _Leave()
        now = loop.time()
        due = att.acks.due(now)
        if due is not None:
            await ws.send(control({"type": "ack", "seq": due}))
            att.acks.sent(due)
        if att.acks.exit_written():
            # Everything is delivered: close, and the server reaps the session.
            try:
                await asyncio.wait_for(ws.close(), att.opts.goodbye_timeout)
            except (asyncio.TimeoutError, WebSocketException, OSError):
                pass
            raise _Over()
        await _send_input(att, ws)
        if att.pong_due:
            att.pong_due = False
            await ws.send(control({"type": "pong"}))
        now = loop.time()
        if now >= next_ping:
            silent = now - att.waiting_since
            if att.reading and silent >= att.opts.heartbeat_timeout:
                raise Lost(f"no word from the server for {int(silent)}s")
            await ws.send(control({"type": "ping"}))
            next_ping = now + hb
        deadline = next_ping
        ack_at = att.acks.deadline()
        if ack_at is not None:
            deadline = min(deadline, ack_at)
        left = deadline - loop.time()
        if left > 0 and not att.wake.is_set():
            try:
                await asyncio.wait_for(att.wake.wait(), left)
            except asyncio.TimeoutError:
                pass


async def _send_input(att: "Attachment", ws: ClientConnection) -> None:
    while True:
        nxt = att.input.next_unsent()
        if nxt is None:
            return
        seq, item = nxt
        if item is EOF:
            await ws.send(control({"type": "eof", "seq": seq}))
        else:
            assert isinstance(item, bytes)
            await ws.send(encode_input(seq, item))


async def _hand_over(att: "Attachment", ws: ClientConnection) -> None:
    """Another client takes the session over, and the server waits a moment
    for our final ack. Nothing more is delivered; the user takes what was
    already queued; we ack exactly what was handed out, and detach: the new
    client then starts right after our last message."""
    loop = asyncio.get_running_loop()
    delivered = att.delivered
    if att.written_seq > att.acks.acked:
        # Ack what was handed out already, at once: should the user not
        # catch up within the server's grace, this much is not repeated.
        try:
            await ws.send(control({"type": "ack", "seq": att.written_seq}))
            att.acks.sent(att.written_seq)
        except (WebSocketException, OSError):
            pass

    async def caught_up() -> bool:
        while att.written_seq < delivered:
            att.written_changed.clear()
            await att.written_changed.wait()
        return True

    async def server_gone() -> bool:
        try:
            while True:
                await ws.recv()  # nothing after the notice is ours to deliver
        except (ConnectionClosed, WebSocketException, OSError):
            return False

    a = loop.create_task(caught_up())
    b = loop.create_task(server_gone())
    done, pending = await asyncio.wait({a, b}, timeout=att.opts.goodbye_timeout,
                                       return_when=asyncio.FIRST_COMPLETED)
    for t in pending:
        t.cancel()
    await asyncio.gather(a, b, return_exceptions=True)
    server_waits = b not in done
    if server_waits:
        await _leave(att, ws)
    else:
        await _abandon(ws)


async def _leave(att: "Attachment", ws: ClientConnection) -> None:
    """Detaches on purpose: acks what was handed out (or the next attach
    gets it again), says so, and waits for the server to end the connection
    (it takes our ack and detach to the session first, so an attach made
    after this starts after the ack)."""
    seq = min(att.written_seq, att.last_received)

    async def goodbye() -> None:
        if seq > 0:
            await ws.send(control({"type": "ack", "seq": seq}))
            att.acks.sent(seq)
        await ws.send(control({"type": "detach"}))
        try:
            while True:
                await ws.recv()  # not ours to deliver any more: it stays unacked
        except ConnectionClosed:
            pass
        await ws.close()

    try:
        await asyncio.wait_for(goodbye(), att.opts.goodbye_timeout)
    except (asyncio.TimeoutError, WebSocketException, OSError):
        pass
    await _abandon(ws)

