"""Sessions carried in the context (the "abstract sessions" idea: the
handle lives in the context, not in every signature).

- ``with client.session(fn) as s:`` makes ``s`` the current session in a
  ``contextvars`` variable, which asyncio tasks inherit by themselves and
  threads inherit when started with ``bento_client.Thread`` (or through
  ``bind(fn)`` / ``contextvars.copy_context().run``);
- library code deep in a call stack gets it with ``current()``;
- blocks nest re-entrantly: an inner ``client.session(...)`` joins the
  enclosing session of the same client, like a re-entrant lock
  (``new=True`` starts a session of its own instead);
- ``leave()`` dissociates the context from the session;
- leaving the outermost block detaches, and kills only if the session is
  transient or ``kill=True`` was asked.

The sync and async handles have a variable each: ``current()`` gives a
``Session``, ``current_async()`` an ``AsyncSession``.
"""

from __future__ import annotations

import contextvars
import threading
from typing import TYPE_CHECKING, Any, Callable, Generic, Optional, TypeVar

if TYPE_CHECKING:
    from .aio import AsyncSession
    from .sync import Session

S = TypeVar("S")


class Scope(Generic[S]):
    """One session made current by a block, and how many blocks hold it."""

    def __init__(self, session: S, owner: object, kill: bool):
        self.session = session
        self.owner = owner
        self.kill = kill
        self.depth = 1
        self.lock = threading.Lock()

    def enter(self) -> None:
        with self.lock:
            self.depth += 1

    def exit(self) -> bool:
        """Whether this was the outermost block."""
        with self.lock:
            self.depth -= 1
            return self.depth == 0


SYNC: "contextvars.ContextVar[Optional[Scope[Session]]]" = contextvars.ContextVar(
    "bento_client.session", default=None)
ASYNC: "contextvars.ContextVar[Optional[Scope[AsyncSession]]]" = contextvars.ContextVar(
    "bento_client.async_session", default=None)


def current() -> "Optional[Session]":
    """The session of the innermost ``with client.session(...)`` around this
    code (in this thread or task, or inherited), or ``None``."""
    scope = SYNC.get()
    return scope.session if scope is not None else None


def current_async() -> "Optional[AsyncSession]":
    """``current()`` for ``async with client.session(...)`` blocks."""
    scope = ASYNC.get()
    return scope.session if scope is not None else None


class leave:
    """Dissociates the context from the current session (sync and async):
    ``current()`` answers ``None`` from here on, and a ``client.session()``
    block starts a session of its own. The session itself is untouched.

    Used as ``with leave(): ...``, the association comes back after the
    block; called plainly, it lasts for the rest of the context."""

    def __init__(self) -> None:
        self._tokens = (SYNC.set(None), ASYNC.set(None))

    def __enter__(self) -> "leave":
        return self

    def __exit__(self, *exc: object) -> None:
        SYNC.reset(self._tokens[0])
        ASYNC.reset(self._tokens[1])


T = TypeVar("T")


def bind(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn``, to run in a copy of the current context: for thread pools
    (``pool.submit(bind(work), x)``), so that ``current()`` there answers
    the session of the code that submitted it."""
    ctx = contextvars.copy_context()

    def run(*args: Any, **kwargs: Any) -> T:
        return ctx.copy().run(fn, *args, **kwargs)

    return run


class Thread(threading.Thread):
    """A ``threading.Thread`` that runs in a copy of the context of the
    code that created it, so it inherits the current session (plain
    threads start with an empty context)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._bento_context = contextvars.copy_context()

    def run(self) -> None:
        self._bento_context.run(super().run)
