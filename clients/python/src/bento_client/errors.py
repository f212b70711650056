"""One exception hierarchy for everything the library raises.

Every error the controller answers carries its HTTP ``status`` and its own
words (``message``, the ``error`` of its JSON body, see ``docs/api.md``);
the class says which of the API's errors it is, so a caller catches
exactly what it can handle::

    try:
        session = client.run("hello")
    except bento_client.UnknownFunction:
        ...
    except bento_client.CapacityError as e:   # 429: try again later
        ...
    except bento_client.BentoError as e:      # anything else from Bento
        print(e.status, e.code, e.message)

The class comes from the answer's ``code`` (``"not_found"``, ``"conflict"``,
...), or from its status where it has none; the API has one code per
status, so the finer classes (``UnknownSession`` or ``UnknownFunction``
among the 404s) come from the controller's wording.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional


class BentoError(Exception):
    """Base of every error of this library."""

    def __init__(self, message: str, status: Optional[int] = None, body: Optional[Dict[str, Any]] = None,
                 code: Optional[str] = None):
        super().__init__(message)
        self.message = message
        #: The HTTP status the controller answered, for errors it answered.
        self.status = status
        #: The controller's JSON error body (``{"error": ..., "code": ...}``), if any.
        self.body: Dict[str, Any] = body or {}
        #: The API's error code (``"not_found"``, ``"conflict"``, ... one per
        #: status, see ``docs/api.md``) for errors the controller answered:
        #: the ``code`` of its body, or for a controller that sends none, the
        #: one its status maps to. ``None`` for the library's own errors.
        self.code = code

    def __str__(self) -> str:
        return self.message


class ApiError(BentoError):
    """The controller answered with an error status."""


class BadRequest(ApiError):
    """400: the request was malformed or refused as it is."""


class BadLimits(BadRequest):
    """400: limits outside what the image allows (or not understood here)."""


class UnknownImage(BadRequest):
    """400: the image is not described in the controller's config/images/."""


class CompileError(BadRequest):
    """400: the submitted code does not compile. ``syntax`` says where."""

    @property
    def syntax(self) -> Dict[str, Any]:
        """``{"kind", "message", "line", "column"}`` as the controller gave it."""
        s = self.body.get("syntax")
        return s if isinstance(s, dict) else {}


class AuthError(ApiError):
    """401: a missing, wrong or revoked API key."""


class Forbidden(AuthError):
    """403: the key is known, but its role may not do this (a viewer's key
    changing something, a user's key managing keys; docs/tenants.md)."""


class NotFound(ApiError):
    """404."""


class UnknownSession(NotFound):
    """404: the token is wrong, or the session was reaped (the same answer)."""


class UnknownFunction(NotFound):
    """404: no function with that id or name."""


class Conflict(ApiError):
    """409."""


class ImageNotBuilt(Conflict):
    """409: the function's image is not built (``bento images build NAME``)."""


class SessionStillRunning(Conflict):
    """409: removing a session whose function still runs."""


class ForkRefused(Conflict):
    """409: the session cannot be forked (now): it keeps no input history,
    is still replaying, or the fork point is past its history or its input."""


class TooLarge(ApiError):
    """413: the body or the code is too large."""


class CapacityError(ApiError):
    """429: the controller runs ``max_sessions`` sessions, or holds
    ``max_ended_sessions`` ended ones with unread output (the message says
    which)."""


class ServerError(ApiError):
    """5xx."""


class EngineError(ServerError):
    """502: the container engine failed."""


class Unavailable(ServerError):
    """503: the controller is at ``max_connections``, or the session is
    resuming after a controller restart (the library waits that out on
    attach by itself)."""


class Unreachable(BentoError):
    """No connection could be made to the controller (refused, DNS, no
    answer in time)."""


class ConnectionLost(BentoError):
    """An attachment lost its connection and could not make a new one
    (reconnecting off, or it gave up after ``give_up_after``)."""


class ProtocolError(BentoError):
    """The controller said something this library does not understand."""


class SessionClosed(BentoError):
    """The controller closed this attachment; ``reason`` is its close reason
    (``{"kind": "closed_by_user"}``, ...). The session itself may run on."""

    def __init__(self, message: str, reason: Optional[Dict[str, Any]] = None):
        super().__init__(message)
        self.reason: Dict[str, Any] = reason or {}

    @property
    def kind(self) -> str:
        return str(self.reason.get("kind", ""))


class SessionTakenOver(SessionClosed):
    """Another client attached to this session: this handle delivers nothing
    more. Everything it handed out was acknowledged, so the other client
    starts right after it."""


class InputError(BentoError):
    """Input could not be queued."""


class InputClosed(InputError):
    """Input was already ended (``end_input()``), here or by another client."""


class InputTooLarge(InputError):
    """One input message is over the controller's limit (1 MiB)."""


class Detached(BentoError):
    """The handle was detached (``close()``): it sends and receives nothing more."""


#: The API's error codes (``ErrorCode`` in src/wire/api/http.rs), each to
#: the class it is.
_CLASS_OF_CODE: Dict[str, type[ApiError]] = {
    "bad_request": BadRequest,
    "unauthorized": AuthError,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "method_not_allowed": BadRequest,
    "conflict": Conflict,
    "payload_too_large": TooLarge,
    "unsupported_media_type": BadRequest,
    "too_many_requests": CapacityError,
    "internal": ServerError,
    "bad_gateway": EngineError,
    "unavailable": Unavailable,
}


def _code_of_status(status: int) -> Optional[str]:
    """The code a controller that sends none would have sent for ``status``
    (``ErrorCode::of``)."""
    exact = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
             409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
             429: "too_many_requests", 502: "bad_gateway", 503: "unavailable"}
    if status in exact:
        return exact[status]
    if 400 <= status <= 499:
        return "bad_request"
    if 500 <= status <= 599:
        return "internal"
    return None


def _refine(kind: type[ApiError], message: str, body: Dict[str, Any]) -> type[ApiError]:
    """The subclass of ``kind`` an answer is. The API has one code per
    status, so which 404 or which 409 it is comes from the body's other
    fields and the controller's wording (src/controller/api/error.rs and
    the handlers)."""
    if kind is BadRequest:
        if "syntax" in body or message.startswith("the code does not compile"):
            return CompileError
        if message.startswith("limits: "):
            return BadLimits
        if message.startswith("unknown image"):
            return UnknownImage
    elif kind is NotFound:
        if message.startswith("unknown function"):
            return UnknownFunction
        if message.startswith("unknown session"):
            return UnknownSession
    elif kind is Conflict:
        if "is not built" in message:
            return ImageNotBuilt
        if "still running" in message:
            return SessionStillRunning
        if ("input history" in message or "fork_history_exceeded" in message
                or "replaying" in message or "inputs this session has applied" in message):
            return ForkRefused
    return kind


def _kind_of(status: int, message: str, body: Dict[str, Any]) -> type[ApiError]:
    """The class for an error answer: from the body's ``code`` when it has
    one this library knows, else from the status (a controller from before
    the code, or a proxy's answer); then refined by the wording."""
    code = body.get("code")
    kind = _CLASS_OF_CODE.get(code) if isinstance(code, str) else None
    if kind is None:
        fallback = _code_of_status(status)
        kind = _CLASS_OF_CODE[fallback] if fallback is not None else ApiError
    return _refine(kind, message, body)


def from_answer(status: int, raw: bytes, reason_phrase: str = "") -> ApiError:
    """The error for an error answer: the controller's ``{"error": ...}`` if
    it sent one, else its text (short, not an HTML page), else the phrase."""
    body: Dict[str, Any] = {}
    message = ""
    try:
        parsed = json.loads(raw.decode("utf-8"))
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            body = parsed
            message = parsed["error"]
    except (ValueError, UnicodeDecodeError):
        pass
    if not body:
        text = raw.decode("utf-8", "replace").strip()
        message = text if text and len(text) <= 200 and not text.startswith("<") else reason_phrase
    if not message:
        message = f"request failed (HTTP {status})"
    elif status >= 500:
        message = f"server error (HTTP {status}): {message}"
    code = body.get("code")
    if not isinstance(code, str):
        code = _code_of_status(status)
    return _kind_of(status, message, body)(message, status, body, code)
