"""The asyncio face: ``AsyncClient`` and ``AsyncSession``. The sync
``Client`` (``sync.py``) runs these on a private event-loop thread, so both
keep the same promises with one implementation of the protocol."""

from __future__ import annotations

import asyncio
import inspect
import os
from contextlib import asynccontextmanager
from typing import (Any, AsyncIterator, Awaitable, Callable, List, Mapping, Optional, Sequence,
                    Union)

from . import context
from ._attach import Attachment
from ._delivery import MORE, Delivery, OnEvent, RecvTimeout, write_out
from ._http import Api, resolve
from ._input import EOF
from .errors import Detached
from .options import AttachOptions
from .types import Deadline, Exit, FunctionInfo, Message, SessionInfo, encode_args, limits_request

Data = Union[bytes, bytearray, memoryview, str]
OnMessage = Callable[[Message], Union[None, Awaitable[None]]]


def as_bytes(data: Data) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"send() takes str or bytes, not {type(data).__name__}")


class AsyncSession:
    """A handle on one session: its ``token``, its I/O, its end.

    Receive by ``async for message in session``, ``await recv(timeout=)``
    or ``on_message(callback)``; send with ``await send(...)`` and
    ``await end_input()``; ``await wait()`` gives the ``Exit``. ``close()``
    detaches (the function keeps running); ``kill()`` stops it."""

    def __init__(self, client: "AsyncClient", token: str, id: str, transient: bool = False,
                 attachment: Optional[Attachment] = None, on_event: Optional[OnEvent] = None):
        self.client = client
        self.token = token
        self.id = id
        self.transient = transient
        #: The session's state as this handle last knew it: ``running``
        #: (the function runs when the token is handed out) or ``ended``.
        #: ``await info()`` asks the controller.
        self.state = "running"
        self._att = attachment
        self._delivery = Delivery(on_event)
        self._closed = False
        self._consumer: Optional["asyncio.Task[None]"] = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<AsyncSession {self.id} {self.state}>"

    @property
    def exit(self) -> Optional[Exit]:
        return self._delivery.exit

    @property
    def reconnects(self) -> int:
        """How many times the connection was made again."""
        return self._delivery.reconnects

    async def _attachment(self) -> Attachment:
        if self._closed:
            raise Detached("this handle was closed (detached)")
        if self._att is None:
            async with self._lock:
                if self._att is None:
                    self._att = await self.client._attach(self.token, self.client.attach_options)
        return self._att

    async def send(self, data: Data) -> int:
        """Queues one input message (str as UTF-8); its seq. Waits while
        1024 messages or 16 MiB are unacknowledged."""
        payload = as_bytes(data)
        return await (await self._attachment()).send(payload)

    async def end_input(self) -> int:
        """Ends the input: the function's ``recv()`` answers ``None``."""
        return await (await self._attachment()).send(EOF)

    async def recv(self, timeout: Optional[float] = None) -> Optional[Message]:
        """The next output message; ``None`` once the output has ended (the
        exit is then ``self.exit``). Raises ``RecvTimeout`` after ``timeout``
        seconds without one, ``SessionTakenOver`` and the like when the
        attachment ends otherwise."""
        if self._delivery.over:
            self._delivery.finished()
            return None
        att = await self._attachment()
        loop = asyncio.get_running_loop()
        until = None if timeout is None else loop.time() + timeout
        while True:
            left = None if until is None else max(0.0, until - loop.time())
            items = await att.take(1, left)
            if not items:
                raise RecvTimeout(f"no output within {timeout:g}s")
            got = self._delivery.handle(items[0], att.written)
            if got is MORE:
                continue
            if got is None:
                await self._after_end(att)
                return None
            assert isinstance(got, Message)
            return got

    async def _after_end(self, att: Attachment) -> None:
        if self._delivery.exit is not None:
            self.state = "ended"
            # The exit's ack goes out and the connection closes: quickly.
            await att.done.wait()

    def __aiter__(self) -> "AsyncSession":
        return self

    async def __anext__(self) -> Message:
        m = await self.recv()
        if m is None:
            raise StopAsyncIteration
        return m

    def on_message(self, callback: OnMessage) -> None:
        """Hands every message to ``callback`` (a function or a coroutine
        function) from a task, from now to the end; ``await wait()`` waits
        for the last one."""
        async def pump() -> None:
            async for m in self:
                r = callback(m)
                if inspect.isawaitable(r):
                    await r

        self._consumer = asyncio.get_running_loop().create_task(pump())

    async def wait(self) -> Exit:
        """Reads the session to its end and returns the ``Exit``. Output
        that no one takes (no iteration, no ``on_message``) is written to
        this process's stdout and stderr, as ``bento run`` shows it."""
        if self._consumer is not None:
            await self._consumer
        while True:
            m = await self.recv()
            if m is None:
                break
            write_out(m)
        return self._delivery.exit_or_raise()

    async def close(self) -> None:
        """Detaches this handle: what it handed out is acknowledged, the
        rest stays on the controller for the next attach. The function
        keeps running."""
        if self._closed:
            return
        self._closed = True
        self.client._open.discard(self)
        if self._att is not None:
            await self._att.detach()

    async def kill(self) -> None:
        """Stops the function; its exit (``killed by user``) is delivered."""
        await self.client.kill(self.token)

    async def extend(self, by: Union[int, float, str]) -> int:
        """Moves the session's deadline: see ``AsyncClient.extend``."""
        return await self.client.extend(self.token, by)

    @property
    def deadline(self) -> Optional[Deadline]:
        """The last ``deadline`` warning this handle received, if any."""
        return self._delivery.deadline

    async def fork(self, *, at_input: Optional[int] = None, on_divergence: Optional[str] = None,
                   detach: bool = False, on_event: Optional[OnEvent] = None) -> "AsyncSession":
        """A new session started from this one's state: see ``AsyncClient.fork``."""
        return await self.client.fork(self.token, at_input=at_input, on_divergence=on_divergence,
                                      detach=detach, on_event=on_event)

    async def info(self) -> SessionInfo:
        info = await self.client.inspect(self.token)
        self.state = info.state
        return info

    async def __aenter__(self) -> "AsyncSession":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncClient:
    """A handle on one controller, for asyncio code. ``url`` and ``api_key``
    default to ``BENTO_URL`` and ``BENTO_API_KEY`` (then
    ``http://127.0.0.1:7470``). Use it in one event loop."""

    def __init__(self, url: Optional[str] = None, api_key: Optional[str] = None, *,
                 attach_options: Optional[AttachOptions] = None):
        self.url, key = resolve(url, api_key)
        self.api = Api(self.url, key)
        self.attach_options = attach_options or AttachOptions()
        self._open: "set[AsyncSession]" = set()

    async def aclose(self) -> None:
        """Detaches every session handle still open, then closes the HTTP pool."""
        for s in list(self._open):
            await s.close()
        await self.api.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _attach(self, token: str, options: AttachOptions) -> Attachment:
        return await Attachment.open(self.api.endpoint(token), options)

    # -- functions ----------------------------------------------------------

    async def submit(self, code: str, *, name: Optional[str] = None, image: Optional[str] = None,
                     filename: Optional[str] = None) -> FunctionInfo:
        """Stores a function's source (compiled by the controller first:
        ``CompileError`` if it does not)."""
        return await self.api.submit(code, name, image, filename)

    async def submit_file(self, path: "Union[str, os.PathLike[str]]", *, name: Optional[str] = None,
                          image: Optional[str] = None) -> FunctionInfo:
        """``submit`` of a file's source; tracebacks name the file."""
        with open(path, encoding="utf-8") as f:
            code = f.read()
        return await self.submit(code, name=name, image=image, filename=os.path.basename(path))

    async def functions(self) -> List[FunctionInfo]:
        return await self.api.functions()

    async def function(self, id_or_name: str) -> FunctionInfo:
        return await self.api.function(id_or_name)

    async def delete_function(self, id_or_name: str) -> FunctionInfo:
        return await self.api.delete_function(id_or_name)

    # -- sessions -----------------------------------------------------------

    async def run(self, function: str, *args: Any, memory: Union[int, str, None] = None,
                  cpus: Optional[float] = None, pids: Optional[int] = None,
                  timeout: Union[int, float, str, None] = None, transient: bool = False,
                  detach: bool = False, on_event: Optional[OnEvent] = None,
                  forkable: bool = True, env: Optional[Mapping[str, str]] = None,
                  secrets: Union[Sequence[str], Mapping[str, str], None] = None,
                  idle_timeout: Union[int, float, str, None] = None) -> AsyncSession:
        """Starts ``function`` (id or name) as ``main(*args)``: each argument
        goes as JSON, so ``main`` gets it as given. Attached at once unless
        ``detach=True`` (then it attaches at its first I/O call).
        ``forkable=False`` keeps no input history (it cannot be forked).
        ``env`` sets environment variables over the image's; ``secrets``
        gives stored secrets (``set_secret``) as variables: a list of names,
        or a mapping of variable to secret name. ``idle_timeout`` ends the
        session after that long with no client attached and no output
        (docs/leases.md)."""
        limits = limits_request(memory, cpus, pids, timeout, idle_timeout)
        created = await self.api.create(function, encode_args(list(args)), transient, limits,
                                        forkable, env, secrets)
        s = AsyncSession(self, created["token"], str(created.get("id", "")), transient, on_event=on_event)
        return await self._opened(s, detach)

    async def fork(self, token: str, *, at_input: Optional[int] = None,
                   on_divergence: Optional[str] = None, detach: bool = False,
                   on_event: Optional[OnEvent] = None) -> AsyncSession:
        """Forks a session: a new session of the same function and
        arguments, fed the parent's input again (all it applied, or the
        first ``at_input``), whose own output and input start where the
        parent stood (docs/fork.md). ``on_divergence``: ``"kill"`` (the
        default) or ``"continue"``, for a replay that does not reproduce
        the parent's output. ``ForkRefused`` when it cannot be forked."""
        created = await self.api.fork(token, at_input, on_divergence)
        s = AsyncSession(self, created["token"], str(created.get("id", "")), on_event=on_event)
        return await self._opened(s, detach)

    async def _opened(self, s: AsyncSession, detach: bool) -> AsyncSession:
        if not detach:
            try:
                await s._attachment()
            except BaseException:
                self._open.discard(s)
                raise
        self._open.add(s)
        return s

    async def attach(self, token: str, *, on_event: Optional[OnEvent] = None) -> AsyncSession:
        """Attaches to a session by its token: everything it holds that no
        client acknowledged comes first, then live output."""
        att = await self._attach(token, self.attach_options)
        s = AsyncSession(self, token, att.session_id, attachment=att, on_event=on_event)
        self._open.add(s)
        return s

    async def sessions(self) -> List[SessionInfo]:
        return await self.api.sessions()

    async def set_secret(self, name: str, value: str) -> None:
        """Stores a secret (or replaces it); runs ask for it by name."""
        await self.api.set_secret(name, value)

    async def secrets(self) -> List[str]:
        """The names of the stored secrets; values never come back."""
        return await self.api.secrets()

    async def delete_secret(self, name: str) -> None:
        await self.api.delete_secret(name)

    async def inspect(self, token: str) -> SessionInfo:
        return await self.api.session(token)

    async def close_session(self, token: str) -> None:
        """Detaches whoever is attached to the session; it keeps running."""
        await self.api.close(token)

    async def kill(self, token: str) -> None:
        await self.api.kill(token)

    async def extend(self, token: str, by: Union[int, float, str]) -> int:
        """Moves the session's deadline ``by`` later (seconds, or a string
        such as ``"30m"``), within its image's maximum timeout counted from
        its start (``BadRequest`` beyond it; ``Conflict`` once it has
        ended). Returns the new deadline, in seconds since the epoch."""
        return await self.api.extend(token, by)

    async def remove(self, token: str) -> None:
        """Removes an ended session, discarding its unread output."""
        await self.api.remove(token)

    @asynccontextmanager
    async def session(self, function: str, *args: Any, new: bool = False, kill: bool = False,
                      **run_options: Any) -> AsyncIterator[AsyncSession]:
        """The current session of this client, or a new one of ``function``
        made current for the block (see ``bento_client.context``)."""
        scope = context.ASYNC.get()
        if scope is not None and scope.owner is self and not new:
            scope.enter()
            try:
                yield scope.session
            finally:
                if scope.exit():
                    await _end_scope(scope)
            return
        s = await self.run(function, *args, **run_options)
        scope = context.Scope(s, self, kill or s.transient)
        token = context.ASYNC.set(scope)
        try:
            yield s
        finally:
            try:
                context.ASYNC.reset(token)
            except ValueError:  # left in another context
                pass
            if scope.exit():
                await _end_scope(scope)


async def _end_scope(scope: "context.Scope[AsyncSession]") -> None:
    s = scope.session
    if scope.kill and s.exit is None:
        await s.kill()
    await s.close()
