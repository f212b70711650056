"""Opening one attach WebSocket and reading its ``hello``; the binary frames
and JSON control messages of docs/api.md."""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from websockets.asyncio.client import ClientConnection, connect as ws_connect
from websockets.exceptions import InvalidStatus, WebSocketException

from .errors import BentoError, ProtocolError, SessionClosed, SessionTakenOver, Unreachable, from_answer
from .types import STREAMS

#: Output chunks are at most 1 MiB (the driver's frame payload) plus a
#: header; anything much bigger is refused by the socket layer.
MAX_INCOMING = 4 << 20

_OUT_HEADER = struct.Struct(">BBQ")
_IN_HEADER = struct.Struct(">BQ")


class Transport(BentoError):
    """An established connection failed (another connection may do)."""


@dataclass(frozen=True)
class Endpoint:
    url: str  # ws:// or wss:// URL of the session's attach route
    display_url: str  # the controller's URL as the user gave it
    api_key: Optional[str]


@dataclass(frozen=True)
class Hello:
    session: str
    input_next: int
    last_seq: int
    input_closed: bool


def close_reason_text(reason: Dict[str, Any]) -> str:
    """A close reason in words (``CloseReason``'s Display in Rust)."""
    kind = reason.get("kind")
    words = {
        "taken_over": "another client attached to this session",
        "closed_by_user": "detached by `bento close`",
        "finished": "session finished",
        "slow_client": "client too slow to keep up with output",
        "heartbeat_timeout": "connection silent for too long",
        "session_gone": "session no longer exists",
        "server_shutdown": "server is shutting down",
        "key_revoked": "the API key of this connection was revoked",
    }
    if kind == "protocol":
        return f"protocol error: {reason.get('message')}"
    return words.get(str(kind), f"closed ({kind})")


def closed_error(reason: Dict[str, Any]) -> SessionClosed:
    cls = SessionTakenOver if reason.get("kind") == "taken_over" else SessionClosed
    return cls(close_reason_text(reason), reason)


def worth_reconnecting(reason: Dict[str, Any]) -> bool:
    """Close reasons about the connection, not the session."""
    return reason.get("kind") in ("server_shutdown", "heartbeat_timeout", "slow_client")


def decode_output(b: bytes) -> Tuple[int, str, bool, bytes]:
    """``[stream u8][flags u8][seq u64 BE][bytes]`` -> (seq, stream, end, bytes)."""
    if len(b) < _OUT_HEADER.size:
        raise ProtocolError("output frame shorter than its header")
    stream, flags, seq = _OUT_HEADER.unpack_from(b)
    name = STREAMS.get(stream)
    if name is None:
        raise ProtocolError("output frame has an unknown stream")
    return seq, name, bool(flags & 1), b[_OUT_HEADER.size:]


def encode_input(seq: int, data: bytes) -> bytes:
    """``[kind u8 = 1][seq u64 BE][bytes]``."""
    return _IN_HEADER.pack(1, seq) + data


def control(msg: Dict[str, Any]) -> str:
    return json.dumps(msg, separators=(",", ":"))


def parse_control(text: str) -> Dict[str, Any]:
    try:
        msg = json.loads(text)
    except ValueError as e:
        raise ProtocolError(f"cannot decode {text[:200]!r}: {e}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError(f"not a control message: {text[:200]!r}")
    return msg


async def connect(ep: Endpoint, after: int, timeout: float) -> Tuple[ClientConnection, Hello]:
    """Connects asking for output after ``after``, and reads ``hello``."""
    try:
        return await asyncio.wait_for(_connect(ep, after), timeout)
    except asyncio.TimeoutError:
        raise Unreachable(f"cannot reach the Bento server at {ep.display_url}: no answer within {timeout:g}s") from None


async def _connect(ep: Endpoint, after: int) -> Tuple[ClientConnection, Hello]:
    headers = {"Authorization": f"Bearer {ep.api_key}"} if ep.api_key else None
    try:
        ws = await ws_connect(
            f"{ep.url}?after={after}",
            additional_headers=headers,
            compression=None,  # the server does not compress; never spend CPU asking
            ping_interval=None,  # the protocol's own JSON heartbeats are used
            open_timeout=None,  # bounded by connect()'s timeout
            close_timeout=2,
            max_size=MAX_INCOMING,
            max_queue=16,
        )
    except InvalidStatus as e:
        resp = e.response
        raise from_answer(resp.status_code, bytes(resp.body or b""), resp.reason_phrase) from None
    except OSError as e:
        raise Unreachable(f"cannot reach the Bento server at {ep.display_url}: {e.strerror or e}") from None
    except WebSocketException as e:
        raise Transport(f"connection to the Bento server lost: {e}") from None
    try:
        hello = await _read_hello(ws)
    except BaseException:
        await ws.close()
        raise
    return ws, hello


async def _read_hello(ws: ClientConnection) -> Hello:
    try:
        first = await ws.recv()
    except WebSocketException as e:
        raise Transport(f"closed before saying hello: {e}") from None
    if isinstance(first, bytes):
        raise ProtocolError("expected hello first, got output")
    msg = parse_control(first)
    kind = msg["type"]
    if kind == "hello":
        try:
            return Hello(
                session=str(msg["session"]),
                input_next=int(msg["input_next"]),
                last_seq=int(msg["last_seq"]),
                input_closed=bool(msg.get("input_closed", False)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ProtocolError(f"bad hello: {e}") from None
    if kind == "closed":
        # The server may refuse right after the upgrade: that is its answer.
        raise closed_error(msg.get("reason") or {})
    raise ProtocolError(f"expected hello first, got {kind}")
