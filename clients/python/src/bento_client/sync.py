"""The blocking face: ``Client`` and ``Session``, the same shape as the
asyncio ones.

Why a private event-loop thread: the protocol (reconnects, heartbeats
both ways, batched acks, resending input) runs in the background while
the caller's thread is busy or blocked, so it needs a thread anyway; with
the asyncio core running on a loop that the ``Client`` owns, the sync and
async faces share one implementation of the protocol, and the sync calls
work anywhere, inside a running event loop too (they are never an
``asyncio.run`` per call). A blocking call submits a coroutine to that
loop and waits for its result; output is fetched in batches, so the
thread hop is paid per batch, not per message."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import threading
import time
import weakref
from collections import deque
from typing import (Any, Callable, Coroutine, Deque, Iterator, List, Mapping, Optional, Sequence,
                    TypeVar, Union)

from . import context
from ._attach import Attachment, Item_
from ._delivery import MORE, Delivery, OnEvent, RecvTimeout, write_out
from .aio import AsyncClient, AsyncSession, Data
from .options import AttachOptions
from .types import Deadline, Exit, FunctionInfo, Message, SessionInfo

T = TypeVar("T")

#: Output items fetched from the loop per hop.
BATCH = 64


class _LoopThread:
    """An event loop on a daemon thread, owned by one ``Client``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="bento-client-loop", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T], timeout: Optional[float] = None) -> T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("a blocking bento_client call from the client's own loop thread")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise
        except BaseException:
            fut.cancel()  # Ctrl-C while waiting: do not leave it running
            raise

    def soon(self, fn: Callable[..., Any], *args: Any) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout=5)


class Session:
    """A handle on one session (see ``AsyncSession``): ``token``, ``send``,
    ``end_input``, iteration, ``recv(timeout=)``, ``on_message``, ``wait``,
    ``close`` (detach), ``kill``. Safe to use from several threads."""

    def __init__(self, client: "Client", inner: AsyncSession):
        self.client = client
        self._a = inner
        self._loop = client._lt
        self._delivery = Delivery(inner._delivery.on_event)
        self._local: Deque[Item_] = deque()
        self._rlock = threading.RLock()
        self._consumer: Optional[threading.Thread] = None

    @property
    def token(self) -> str:
        return self._a.token

    @property
    def id(self) -> str:
        return self._a.id

    @property
    def transient(self) -> bool:
        return self._a.transient

    @property
    def state(self) -> str:
        """``running`` or ``ended``, as this handle last knew it; ``info()`` asks."""
        return "ended" if self._delivery.exit is not None else self._a.state

    @property
    def exit(self) -> Optional[Exit]:
        return self._delivery.exit

    @property
    def reconnects(self) -> int:
        return self._delivery.reconnects

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.state}>"

    def send(self, data: Data) -> int:
        return self._loop.call(self._a.send(data))

    def end_input(self) -> int:
        return self._loop.call(self._a.end_input())

    def recv(self, timeout: Optional[float] = None) -> Optional[Message]:
        """The next output message; ``None`` once the output has ended.
        ``RecvTimeout`` (a ``TimeoutError``) after ``timeout`` seconds."""
        with self._rlock:
            att: Optional[Attachment] = None
            deadline = None if timeout is None else _now() + timeout
            while True:
                if not self._local:
                    if self._delivery.over:
                        self._delivery.finished()
                        return None
                    if att is None:
                        att = self._loop.call(self._a._attachment())
                    left = None if deadline is None else max(0.0, deadline - _now())
                    items = self._loop.call(att.take(BATCH, left))
                    if not items:
                        raise RecvTimeout(f"no output within {timeout:g}s")
                    self._local.extend(items)
                item = self._local.popleft()
                a = self._a._att
                assert a is not None
                got = self._delivery.handle(item, lambda seq: self._loop.soon(a.written, seq))
                if got is MORE:
                    continue
                if got is None:
                    if self._delivery.exit is not None:
                        self._loop.call(a.done.wait())
                    return None
                assert isinstance(got, Message)
                return got

    def __iter__(self) -> Iterator[Message]:
        while True:
            m = self.recv()
            if m is None:
                return
            yield m

    def on_message(self, callback: Callable[[Message], Any]) -> None:
        """Hands every message to ``callback`` from a thread of its own (in
        this context), from now to the end; ``wait()`` waits for the last."""
        def pump() -> None:
            for m in self:
                callback(m)

        self._consumer = context.Thread(target=pump, name=f"bento-{self.id}", daemon=True)
        self._consumer.start()

    def wait(self) -> Exit:
        """Reads the session to its end and returns the ``Exit``; output no
        one takes is written to stdout and stderr as ``bento run`` does."""
        if self._consumer is not None:
            self._consumer.join()
        for m in self:
            write_out(m)
        return self._delivery.exit_or_raise()

    def close(self) -> None:
        """Detaches (the function keeps running)."""
        self._loop.call(self._a.close())

    def kill(self) -> None:
        self._loop.call(self._a.kill())

    def extend(self, by: Union[int, float, str]) -> int:
        """Moves the session's deadline: see ``Client.extend``."""
        return self.client.extend(self.token, by)

    @property
    def deadline(self) -> Optional[Deadline]:
        """The last ``deadline`` warning this handle received, if any."""
        return self._delivery.deadline

    def fork(self, *, at_input: Optional[int] = None, on_divergence: Optional[str] = None,
             detach: bool = False, on_event: Optional[OnEvent] = None) -> "Session":
        """A new session started from this one's state: see ``AsyncClient.fork``."""
        return self.client.fork(self.token, at_input=at_input, on_divergence=on_divergence,
                                detach=detach, on_event=on_event)

    def info(self) -> SessionInfo:
        return self._loop.call(self._a.info())

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _now() -> float:
    return time.monotonic()


_live: "weakref.WeakSet[Client]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # Detach what is still attached, so the controller keeps what was not
    # handed out rather than waiting for a heartbeat to time out.
    for c in list(_live):
        with contextlib.suppress(Exception):
            c.close()


class Client:
    """A handle on one controller (blocking calls). ``url`` and ``api_key``
    default to ``BENTO_URL`` and ``BENTO_API_KEY`` (then
    ``http://127.0.0.1:7470``). ``close()`` (or ``with``) detaches every
    open session and stops its loop thread."""

    def __init__(self, url: Optional[str] = None, api_key: Optional[str] = None, *,
                 attach_options: Optional[AttachOptions] = None):
        self._lt = _LoopThread()

        async def make() -> AsyncClient:
            return AsyncClient(url, api_key, attach_options=attach_options)

        try:
            self._a = self._lt.call(make())
        except BaseException:
            self._lt.stop()
            raise
        self.url = self._a.url
        self._closed = False
        _live.add(self)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._lt.call(self._a.aclose(), timeout=30)
        finally:
            self._lt.stop()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._lt.call(coro)

    def submit(self, code: str, *, name: Optional[str] = None, image: Optional[str] = None,
               filename: Optional[str] = None) -> FunctionInfo:
        return self._call(self._a.submit(code, name=name, image=image, filename=filename))

    def submit_file(self, path: "Union[str, os.PathLike[str]]", *, name: Optional[str] = None,
                    image: Optional[str] = None) -> FunctionInfo:
        return self._call(self._a.submit_file(path, name=name, image=image))

    def functions(self) -> List[FunctionInfo]:
        return self._call(self._a.functions())

    def function(self, id_or_name: str) -> FunctionInfo:
        return self._call(self._a.function(id_or_name))

    def delete_function(self, id_or_name: str) -> FunctionInfo:
        return self._call(self._a.delete_function(id_or_name))

    def run(self, function: str, *args: Any, memory: Union[int, str, None] = None,
            cpus: Optional[float] = None, pids: Optional[int] = None,
            timeout: Union[int, float, str, None] = None, transient: bool = False,
            detach: bool = False, on_event: Optional[OnEvent] = None,
            forkable: bool = True, env: Optional[Mapping[str, str]] = None,
            secrets: Union[Sequence[str], Mapping[str, str], None] = None,
            idle_timeout: Union[int, float, str, None] = None) -> Session:
        """See ``AsyncClient.run``."""
        inner = self._call(self._a.run(function, *args, memory=memory, cpus=cpus, pids=pids,
                                       timeout=timeout, transient=transient, detach=detach,
                                       on_event=on_event, forkable=forkable, env=env,
                                       secrets=secrets, idle_timeout=idle_timeout))
        return Session(self, inner)

    def fork(self, token: str, *, at_input: Optional[int] = None,
             on_divergence: Optional[str] = None, detach: bool = False,
             on_event: Optional[OnEvent] = None) -> Session:
        """See ``AsyncClient.fork``."""
        inner = self._call(self._a.fork(token, at_input=at_input, on_divergence=on_divergence,
                                        detach=detach, on_event=on_event))
        return Session(self, inner)

    def attach(self, token: str, *, on_event: Optional[OnEvent] = None) -> Session:
        return Session(self, self._call(self._a.attach(token, on_event=on_event)))

    def sessions(self) -> List[SessionInfo]:
        return self._call(self._a.sessions())

    def set_secret(self, name: str, value: str) -> None:
        """See ``AsyncClient.set_secret``."""
        self._call(self._a.set_secret(name, value))

    def secrets(self) -> List[str]:
        return self._call(self._a.secrets())

    def delete_secret(self, name: str) -> None:
        self._call(self._a.delete_secret(name))

    def inspect(self, token: str) -> SessionInfo:
        return self._call(self._a.inspect(token))

    def close_session(self, token: str) -> None:
        self._call(self._a.close_session(token))

    def kill(self, token: str) -> None:
        self._call(self._a.kill(token))

    def extend(self, token: str, by: Union[int, float, str]) -> int:
        """Moves the session's deadline ``by`` later (seconds, or ``"30m"``),
        within its image's maximum timeout; returns the new deadline."""
        return self._call(self._a.extend(token, by))

    def remove(self, token: str) -> None:
        self._call(self._a.remove(token))

    @contextlib.contextmanager
    def session(self, function: str, *args: Any, new: bool = False, kill: bool = False,
                **run_options: Any) -> Iterator[Session]:
        """The current session of this client, or a new one of ``function``
        made current for the block (see ``bento_client.context``)."""
        scope = context.SYNC.get()
        if scope is not None and scope.owner is self and not new:
            scope.enter()
            try:
                yield scope.session
            finally:
                if scope.exit():
                    _end_scope(scope)
            return
        s = self.run(function, *args, **run_options)
        scope = context.Scope(s, self, kill or s.transient)
        token = context.SYNC.set(scope)
        try:
            yield s
        finally:
            with contextlib.suppress(ValueError):  # left in another context
                context.SYNC.reset(token)
            if scope.exit():
                _end_scope(scope)


def _end_scope(scope: "context.Scope[Session]") -> None:
    s = scope.session
    if scope.kill and s.exit is None:
        s.kill()
    s.close()
