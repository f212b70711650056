"""The HTTP API (docs/api.md), async, on httpx: one call per route, errors
turned into the hierarchy of ``errors.py``."""

from __future__ import annotations

import math
import os
from collections import abc
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union
from urllib.parse import quote, urlsplit

import httpx

from ._ws import Endpoint
from .errors import BentoError, ProtocolError, Unreachable, from_answer
from .types import FunctionInfo, SessionInfo

#: Where the CLI looks for the controller unless told otherwise.
DEFAULT_URL = "http://127.0.0.1:7470"

# Connect within 10 s; the whole request within 300 s (creating a session
# may wait for a container to start; this only guards against a server
# that hangs), as the Rust client.
TIMEOUT = httpx.Timeout(300.0, connect=10.0)


def resolve(url: Optional[str], api_key: Optional[str]) -> "tuple[str, Optional[str]]":
    """The URL and key: given, else ``BENTO_URL`` / ``BENTO_API_KEY``, else
    the default URL. ``127.0.0.1:7470`` without a scheme means http."""
    url = url or os.environ.get("BENTO_URL") or DEFAULT_URL
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise BentoError(f"invalid server URL {url!r}: only http:// and https:// URLs are supported")
    if not parts.hostname:
        raise BentoError(f"invalid server URL {url!r}: it has no host")
    key = api_key if api_key is not None else os.environ.get("BENTO_API_KEY")
    return url.rstrip("/"), (key or None)


class Api:
    """One controller's HTTP API. Lives in one event loop."""

    def __init__(self, url: str, api_key: Optional[str]):
        self.url = url
        self.api_key = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(base_url=url, headers=headers, timeout=TIMEOUT)

    async def aclose(self) -> None:
        await self.http.aclose()

    def endpoint(self, token: str) -> Endpoint:
        scheme = "wss" if self.url.startswith("https:") else "ws"
        rest = self.url.split("://", 1)[1]
        return Endpoint(
            url=f"{scheme}://{rest}/v1/sessions/{quote(token, safe='')}/attach",
            display_url=self.url,
            api_key=self.api_key,
        )

    async def request(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> httpx.Response:
        try:
            resp = await self.http.request(method, path, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise Unreachable(f"cannot reach the Bento server at {self.url}: {e}") from None
        except httpx.TimeoutException as e:
            raise Unreachable(f"the Bento server at {self.url} did not answer in time: {e}") from None
        except httpx.HTTPError as e:
            raise BentoError(f"connection to the Bento server lost: {e}") from None
        if resp.status_code >= 400:
            raise from_answer(resp.status_code, resp.content, resp.reason_phrase)
        return resp

    async def json(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        resp = await self.request(method, path, body)
        try:
            return resp.json()
        except ValueError as e:
            raise ProtocolError(f"cannot decode the server's answer: {e}") from None

    # -- functions ----------------------------------------------------------

    async def submit(self, code: str, name: Optional[str], image: Optional[str],
                     filename: Optional[str]) -> FunctionInfo:
        body: Dict[str, Any] = {"code": code}
        for k, v in (("name", name), ("image", image), ("filename", filename)):
            if v is not None:
                body[k] = v
        return FunctionInfo.from_json(await self.json("POST", "/v1/functions", body))

    async def functions(self) -> List[FunctionInfo]:
        return [FunctionInfo.from_json(o) for o in await self.json("GET", "/v1/functions")]

    async def function(self, id_or_name: str) -> FunctionInfo:
        return FunctionInfo.from_json(await self.json("GET", f"/v1/functions/{quote(id_or_name, safe='')}"))

    async def delete_function(self, id_or_name: str) -> FunctionInfo:
        return FunctionInfo.from_json(await self.json("DELETE", f"/v1/functions/{quote(id_or_name, safe='')}"))

    # -- sessions -----------------------------------------------------------

    async def create(self, function: str, args: List[str], transient: bool,
                     limits: Dict[str, Any], forkable: bool = True,
                     env: Optional[Mapping[str, str]] = None,
                     secrets: Union[Sequence[str], Mapping[str, str], None] = None) -> Dict[str, Any]:
        body: Dict[str, Any] = {"function": function, "args": args, "transient": transient,
                                "limits": limits}
        if not forkable:
            body["forkable"] = False
        if env:
            body["env"] = dict(env)
        if secrets:
            body["secrets"] = secret_uses(secrets)
        created = await self.json("POST", "/v1/sessions", body)
        if not isinstance(created, dict) or "token" not in created:
            raise ProtocolError(f"unexpected answer to creating a session: {created!r}")
        return created

    async def fork(self, token: str, at_input: Optional[int],
                   on_divergence: Optional[str]) -> Dict[str, Any]:
        body: Dict[str, Any] = {}
        if at_input is not None:
            body["at_input"] = at_input
        if on_divergence is not None:
            body["on_divergence"] = on_divergence
        created = await self.json("POST", _s(token) + "/fork", body)
        if not isinstance(created, dict) or "token" not in created:
            raise ProtocolError(f"unexpected answer to forking a session: {created!r}")
        return created

    async def sessions(self) -> List[SessionInfo]:
        return [SessionInfo.from_json(o) for o in await self.json("GET", "/v1/sessions")]

    # -- secrets ------------------------------------------------------------

    async def set_secret(self, name: str, value: str) -> None:
        await self.request("PUT", f"/v1/secrets/{quote(name, safe='')}", {"value": value})

    async def secrets(self) -> List[str]:
        listed = await self.json("GET", "/v1/secrets")
        return [str(o["name"]) for o in listed if isinstance(o, dict) and "name" in o]

    async def delete_secret(self, name: str) -> None:
        await self.request("DELETE", f"/v1/secrets/{quote(name, safe='')}")

    async def session(self, token: str) -> SessionInfo:
        return SessionInfo.from_json(await self.json("GET", _s(token)))

    async def close(self, token: str) -> None:
        await self.request("POST", _s(token) + "/close")

    async def kill(self, token: str) -> None:
        await self.request("POST", _s(token) + "/kill")

    async def remove(self, token: str) -> None:
        await self.request("DELETE", _s(token))

    async def extend(self, token: str, by: Union[int, float, str]) -> int:
        """Moves the deadline ``by`` later (seconds, or ``"30m"``); the new
        deadline, in seconds since the epoch."""
        if isinstance(by, float):
            by = math.ceil(by)  # the server takes whole seconds
        answer = await self.json("POST", _s(token) + "/extend", {"by": by})
        if not isinstance(answer, dict) or "deadline" not in answer:
            raise ProtocolError(f"unexpected answer to extending a session: {answer!r}")
        return int(answer["deadline"])


def _s(token: str) -> str:
    return f"/v1/sessions/{quote(token, safe='')}"


def secret_uses(secrets: Union[Sequence[str], Mapping[str, str]]) -> List[Dict[str, str]]:
    """The API's ``secrets``: names (each set as the variable of its own
    name), or a mapping of variable to secret name."""
    if isinstance(secrets, str):
        raise TypeError("secrets must be a list of names or a mapping, not a str")
    if isinstance(secrets, abc.Mapping):
        return [{"name": name, "env": var} for var, name in secrets.items()]
    return [{"name": name} for name in secrets]
