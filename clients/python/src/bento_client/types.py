"""What the library hands out: output ``Message``\\ s, the ``Exit``, the
attachment's ``Reconnecting`` and ``Reconnected`` events, and the API's
``FunctionInfo`` and ``SessionInfo``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

from .errors import BadLimits

#: Output stream numbers on the wire (docs/api.md) and their names.
STREAMS = {1: "data", 2: "stdout", 3: "stderr"}


@dataclass(frozen=True)
class Message:
    """One chunk of output, delivered once, in order, even across reconnects.

    ``stream`` is ``"data"`` (the function's ``send()``), ``"stdout"`` or
    ``"stderr"``. One ``send()`` of more than 256 KiB arrives as several
    chunks with consecutive ``seq``\\ s; ``end`` is true on its last chunk
    (and always on stdout and stderr, which have no message boundaries).
    """

    seq: int
    stream: str
    data: bytes
    end: bool = True

    @property
    def text(self) -> str:
        """The bytes as UTF-8 (invalid bytes replaced)."""
        return self.data.decode("utf-8", "replace")

    @property
    def is_data(self) -> bool:
        return self.stream == "data"


def _span(secs: int) -> str:
    """Seconds as the controller writes them: ``90s``, ``5m``, ``2h``, ``1d``."""
    for unit, scale in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= scale and secs % scale == 0:
            return f"{secs // scale}{unit}"
    return f"{secs}s"


def describe_reason(reason: Dict[str, Any]) -> str:
    """An exit reason in words, as the CLI shows it (``ExitReason``'s
    ``Display`` in src/wire/api/socket.rs)."""
    kind = reason.get("kind")
    if kind == "exited":
        return f"exited with code {reason.get('code')}"
    if kind == "signaled":
        return f"killed by signal {reason.get('signal')}"
    fixed = {
        "oom_killed": "killed: out of memory",
        "timeout": "killed: timed out",
        "killed": "killed by user",
        "abandoned": "killed: transient session had no client",
        "output_cap": "killed: output cap reached",
    }
    if kind in fixed:
        return fixed[str(kind)]
    if kind == "protocol_error":
        return f"killed: bad output from function ({reason.get('message')})"
    if kind == "start_failed":
        return f"failed to start: {reason.get('message')}"
    if kind == "lost":
        return f"lost: {reason.get('message')}"
    if kind == "node_lost":
        return f"lost: node {reason.get('node')}, which ran it, went down (its output up to then is kept)"
    if kind == "idle":
        return f"idle for {_span(int(reason.get('after') or 0))}: no client attached and no output"
    if kind == "diverged":
        return (f"killed: the fork's replay differed from its parent's output by input "
                f"{reason.get('input')} (the function is not deterministic)")
    return f"ended ({kind})"


@dataclass(frozen=True)
class Usage:
    """What a session used, as the container engine measured it (never
    from inside the container): CPU time in user and system mode, the peak
    memory and how it was obtained (``max_usage``, ``memory.peak`` or
    ``sampled``), the most processes, and the wall time from start to exit.
    See the controller's docs/usage.md for the accuracy."""

    cpu_user_ms: int
    cpu_system_ms: int
    peak_memory_bytes: int
    peak_pids: int
    wall_ms: int
    peak_memory_source: str = ""
    samples: int = 0

    @property
    def cpu_seconds(self) -> float:
        return (self.cpu_user_ms + self.cpu_system_ms) / 1000.0

    @staticmethod
    def from_json(o: Dict[str, Any]) -> "Usage":
        return Usage(
            cpu_user_ms=int(o.get("cpu_user_ms", 0)),
            cpu_system_ms=int(o.get("cpu_system_ms", 0)),
            peak_memory_bytes=int(o.get("peak_memory_bytes", 0)),
            peak_pids=int(o.get("peak_pids", 0)),
            wall_ms=int(o.get("wall_ms", 0)),
            peak_memory_source=str(o.get("peak_memory_source", "")),
            samples=int(o.get("samples", 0)),
        )


@dataclass(frozen=True)
class Exit:
    """How the function ended.

    ``code`` is what the CLI exits with (the function's own code, 128+N for
    signal N, 137 for a kill or OOM, 124 for a timeout); ``message`` is the
    reason in words as the CLI shows it (``"exited with code 1"``,
    ``"killed by user"``); ``reason`` the API's object
    (``{"kind": "exited", "code": 1}``).
    """

    code: int
    message: str
    reason: Dict[str, Any]
    seq: int = 0
    #: What the session used (``None`` from a controller that does not
    #: measure, or when no sample was taken).
    usage: Optional["Usage"] = None

    @property
    def kind(self) -> str:
        return str(self.reason.get("kind", ""))

    @property
    def ok(self) -> bool:
        return self.kind == "exited" and self.reason.get("code") == 0

    def __str__(self) -> str:
        return self.message

    @staticmethod
    def from_json(obj: Dict[str, Any], seq: int = 0) -> "Exit":
        reason = obj.get("reason") or {}
        message = obj.get("message") or describe_reason(reason)
        usage = obj.get("usage")
        return Exit(code=int(obj.get("code", 1)), message=str(message), reason=dict(reason), seq=seq,
                    usage=Usage.from_json(usage) if isinstance(usage, dict) else None)


@dataclass(frozen=True)
class Reconnecting:
    """The connection failed; attempt ``attempt`` (from 1 within one outage)
    starts after ``delay`` seconds. Nothing is lost or repeated."""

    attempt: int
    delay: float
    cause: str


@dataclass(frozen=True)
class Reconnected:
    """Connected again; delivery resumes after ``last_seq``."""

    last_seq: int


@dataclass(frozen=True)
class Deadline:
    """The session ends soon: at ``at`` (seconds since the epoch), in
    ``in_secs`` seconds, for ``reason`` (``"timeout"``; ``"idle"`` is
    reserved), unless its deadline is extended (``Client.extend``). Sent
    ``deadline_warning`` before the end, and again when an extend moves a
    deadline already warned of (docs/leases.md)."""

    at: int
    reason: str
    in_secs: int

    @staticmethod
    def from_json(obj: Dict[str, Any]) -> "Deadline":
        return Deadline(at=int(obj.get("at", 0)), reason=str(obj.get("reason", "timeout")),
                        in_secs=int(obj.get("in_secs", 0)))


#: What an ``on_event`` callback is given.
Event = Union[Reconnecting, Reconnected, Deadline]


@dataclass(frozen=True)
class FunctionInfo:
    id: str
    name: Optional[str]
    image: str
    size: int
    created_at: int
    filename: str = "function.py"

    @staticmethod
    def from_json(o: Dict[str, Any]) -> "FunctionInfo":
        return FunctionInfo(
            id=o["id"],
            name=o.get("name"),
            image=o.get("image", ""),
            size=int(o.get("size", 0)),
            created_at=int(o.get("created_at", 0)),
            filename=o.get("filename") or "function.py",
        )


@dataclass(frozen=True)
class ForkInfo:
    """Where a fork comes from: its parent's short id, the inputs replayed,
    and its replay's state (``replaying``, ``live`` or ``diverged``)."""

    parent: str
    at_input: int
    state: str

    @staticmethod
    def from_json(o: Dict[str, Any]) -> "ForkInfo":
        return ForkInfo(parent=str(o.get("parent", "")), at_input=int(o.get("at_input", 0)),
                        state=str(o.get("state", "")))


@dataclass(frozen=True)
class SessionInfo:
    """``GET /v1/sessions/{token}``: see docs/api.md for every field.
    ``raw`` holds the whole answer, fields this version does not name too."""

    token: str
    id: str
    function: str
    function_name: Optional[str]
    image: str
    state: str
    transient: bool
    attached: bool
    exit: Optional[Exit]
    pending_messages: int
    pending_bytes: int
    created_at: int
    ended_at: Optional[int]
    last_seq: int
    limits: Dict[str, Any] = field(default_factory=dict)
    forkable: bool = False
    fork: Optional[ForkInfo] = None
    # Names only: the variables the run set, and the secrets it asked for.
    env: List[str] = field(default_factory=list)
    secrets: List[str] = field(default_factory=list)
    # When its timeout ends it (``extend`` moves it), and when its idle
    # timeout would if nothing happens till then (seconds since the epoch).
    deadline: Optional[int] = None
    idle_deadline: Optional[int] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @staticmethod
    def from_json(o: Dict[str, Any]) -> "SessionInfo":
        exit_ = o.get("exit")
        return SessionInfo(
            token=o["token"],
            id=o["id"],
            function=o.get("function", ""),
            function_name=o.get("function_name"),
            image=o.get("image", ""),
            state=o.get("state", ""),
            transient=bool(o.get("transient")),
            attached=bool(o.get("attached")),
            exit=Exit.from_json(exit_) if isinstance(exit_, dict) else None,
            pending_messages=int(o.get("pending_messages", 0)),
            pending_bytes=int(o.get("pending_bytes", 0)),
            created_at=int(o.get("created_at", 0)),
            ended_at=o.get("ended_at"),
            last_seq=int(o.get("last_seq", 0)),
            limits=dict(o.get("limits") or {}),
            forkable=bool(o.get("forkable")),
            fork=ForkInfo.from_json(fork) if isinstance(fork := o.get("fork"), dict) else None,
            env=[str(n) for n in o.get("env") or []],
            secrets=[str(s.get("name")) for s in o.get("secrets") or [] if isinstance(s, dict)],
            deadline=o.get("deadline"),
            idle_deadline=o.get("idle_deadline"),
            raw=o,
        )


_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}


def memory_bytes(value: Union[int, str]) -> int:
    """``268435456``, ``"256m"``, ``"1g"``, ``"512MiB"`` -> bytes."""
    if isinstance(value, bool):
        raise BadLimits(f"memory {value!r} is not a size")
    if isinstance(value, int):
        return value
    m = _SIZE.match(value)
    if not m:
        raise BadLimits(f"memory {value!r} is not a size (like 64m or 1g)")
    return int(m.group(1)) << _SHIFT[m.group(2).lower()]


def limits_request(
    memory: Union[int, str, None],
    cpus: Optional[float],
    pids: Optional[int],
    timeout: Union[int, float, str, None],
    idle_timeout: Union[int, float, str, None] = None,
) -> Dict[str, Any]:
    """The ``limits`` of ``POST /v1/sessions``: only what was asked for."""
    out: Dict[str, Any] = {}
    if memory is not None:
        out["memory"] = memory_bytes(memory)
    if cpus is not None:
        out["cpus"] = float(cpus)
    if pids is not None:
        out["pids"] = int(pids)
    if timeout is not None:
        # Seconds, or a string the controller reads ("30s", "5m").
        out["timeout"] = timeout if isinstance(timeout, str) else max(0, int(-(-timeout // 1)))
    if idle_timeout is not None:
        out["idle_timeout"] = (idle_timeout if isinstance(idle_timeout, str)
                               else max(0, int(-(-idle_timeout // 1))))
    return out


def encode_args(args: List[Any]) -> List[str]:
    """Each argument as JSON, which the driver decodes back: ``main`` gets
    ``42`` as an int and ``"42"`` as a str, as they were given here."""
    return [json.dumps(a) for a in args]
