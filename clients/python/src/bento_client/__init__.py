"""Bento's Python client: sessions as handles in Python code, with
reconnect and exactly-once delivery built in.

The package is ``bento_client`` (distribution ``bento-client``), so it
never shadows the ``bento`` module that functions import inside their
container. See docs/python.md.

    from bento_client import Client

    with Client() as client:                       # BENTO_URL, BENTO_API_KEY
        client.submit_file("examples/echo.py", name="echo")
        with client.run("echo") as s:
            s.send("hello")
            s.end_input()
            for message in s:
                print(message.stream, message.text)
            print(s.wait())                         # exited with code 0
"""

from .aio import AsyncClient, AsyncSession
from .context import Thread, bind, current, current_async, leave
from ._delivery import RecvTimeout
from ._http import DEFAULT_URL
from ._input import MAX_INPUT_MESSAGE
from .errors import (
    ApiError,
    AuthError,
    Forbidden,
    BadLimits,
    BadRequest,
    BentoError,
    CapacityError,
    CompileError,
    Conflict,
    ConnectionLost,
    Detached,
    EngineError,
    ForkRefused,
    ImageNotBuilt,
    InputClosed,
    InputError,
    InputTooLarge,
    NotFound,
    ProtocolError,
    ServerError,
    SessionClosed,
    SessionStillRunning,
    SessionTakenOver,
    TooLarge,
    Unavailable,
    UnknownFunction,
    UnknownImage,
    UnknownSession,
    Unreachable,
)
from .options import AttachOptions
from .sync import Client, Session
from .types import (
    Deadline,
    Event,
    Exit,
    ForkInfo,
    FunctionInfo,
    Message,
    Reconnected,
    Reconnecting,
    SessionInfo,
    Usage,
    describe_reason,
)

__version__ = "0.1.0"

__all__ = [
    "ApiError", "AsyncClient", "AsyncSession", "AttachOptions", "AuthError", "BadLimits", "Forbidden", "BadRequest",
    "BentoError", "CapacityError", "Client", "CompileError", "Conflict", "ConnectionLost", "DEFAULT_URL", "Deadline",
    "Detached", "EngineError", "Event", "Exit", "Usage", "ForkInfo", "ForkRefused", "FunctionInfo", "ImageNotBuilt", "InputClosed", "InputError",
    "InputTooLarge", "MAX_INPUT_MESSAGE", "Message", "NotFound", "ProtocolError", "Reconnected",
    "Reconnecting", "RecvTimeout", "ServerError", "Session", "SessionClosed", "SessionInfo",
    "SessionStillRunning", "SessionTakenOver", "Thread", "TooLarge", "Unavailable", "UnknownFunction",
    "UnknownImage", "UnknownSession", "Unreachable", "bind", "current", "current_async", "describe_reason",
    "leave",
]
