"""``AttachOptions``: how an attachment behaves. The defaults are the Rust
client's (src/client/attach/options.rs), so the library keeps the same
promises with the same timing as the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class AttachOptions:
    #: Ask for output after this seq on the first connection (0: all held).
    after: int = 0
    #: Reconnect after transport failures.
    reconnect: bool = True
    #: First reconnect delay (seconds); it doubles up to ``backoff_max``.
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    #: Stop reconnecting after an outage this long (``None``: never).
    give_up_after: Optional[float] = 600.0
    #: Ack output handed out at most this long after it was handed out...
    ack_interval: float = 0.05
    #: ...or as soon as this many messages are handed out.
    ack_every: int = 16
    #: Bounds of the unacknowledged input; ``send`` waits when they are reached.
    input_max_messages: int = 1024
    input_max_bytes: int = 16 << 20
    #: How often the client pings the server (seconds).
    heartbeat_interval: float = 5.0
    #: Silence from the server after which the connection counts as dead.
    heartbeat_timeout: float = 10.0
    #: Output chunks held between the socket and the user; the socket is
    #: read only while there is room (so a slow reader slows the server).
    queue: int = 64
    #: The opening handshake plus ``hello`` (seconds).
    connect_timeout: float = 15.0
    #: How long the first attach waits out a session resuming after a
    #: controller restart (503) before it gives up.
    resuming_wait: float = 30.0
    #: Bound on saying goodbye (final ack, detach) to a server that may be gone.
    goodbye_timeout: float = 2.0
