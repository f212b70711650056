"""The pure parts, without a controller: ack batching, the input buffer,
error classes from answers, exit words, limits and arguments."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Dict

import pytest

import bento_client
from bento_client._acks import AckBatcher
from bento_client._input import EOF, InputBuffer
from bento_client._ws import decode_output, encode_input
from bento_client.errors import from_answer
from bento_client.types import describe_reason, encode_args, limits_request, memory_bytes


def test_acks_by_count_time_and_exit() -> None:
    a = AckBatcher(0.05, 16)
    a.mark_written(15, 0.0)
    assert a.due(0.0) is None and a.deadline() == 0.05
    a.mark_written(16, 0.01)
    assert a.due(0.01) == 16
    a.sent(16)
    assert a.due(1.0) is None and a.deadline() is None
    a.mark_written(17, 1.0)
    assert a.due(1.049) is None and a.due(1.05) == 17
    a.sent(17)
    a.set_exit(18)
    a.mark_written(18, 2.0)
    assert a.exit_written() and a.due(2.0) == 18
    a.mark_written(3, 3.0)  # stale: ignored
    assert a.written == 18


async def test_input_buffer_numbers_bounds_and_resends() -> None:
    b = InputBuffer(max_messages=2, max_bytes=100, next_seq=5)
    assert await b.push(b"a") == 5 and await b.push(b"b") == 6
    third = asyncio.ensure_future(b.push(b"c"))
    await asyncio.sleep(0.01)
    assert not third.done()  # full: waits for an ack
    assert b.next_unsent() == (5, b"a") and b.next_unsent() == (6, b"b") and b.next_unsent() is None
    b.ack(5)
    assert await third == 7
    b.resume(6)  # a new connection: the server has applied up to 5
    assert [b.next_unsent(), b.next_unsent(), b.next_unsent()] == [(6, b"b"), (7, b"c"), None]
    b.resume(9)  # another client sent 7 and 8: never number below the server
    assert b.unacked == 0 and await b.push(EOF) == 9
    with pytest.raises(bento_client.InputClosed):
        await b.push(b"late")
    with pytest.raises(bento_client.InputTooLarge):
        await b.push(b"x" * (bento_client.MAX_INPUT_MESSAGE + 1))


def test_frames() -> None:
    raw = bytes([3, 1]) + (7).to_bytes(8, "big") + b"oops"
    assert decode_output(raw) == (7, "stderr", True, b"oops")
    with pytest.raises(bento_client.ProtocolError):
        decode_output(b"\x01\x00")
    with pytest.raises(bento_client.ProtocolError):
        decode_output(bytes([9, 0]) + bytes(8))
    assert encode_input(258, b"hi") == b"\x01" + (258).to_bytes(8, "big") + b"hi"


@pytest.mark.parametrize("status,error,cls", [
    (404, "unknown session token", bento_client.UnknownSession),
    (404, 'unknown function "x"', bento_client.UnknownFunction),
    (400, 'unknown image "x"; known images: python', bento_client.UnknownImage),
    (400, "limits: cpus 9 is outside 0.01..=2", bento_client.BadLimits),
    (400, "invalid name", bento_client.BadRequest),
    (401, "wrong API key", bento_client.AuthError),
    (403, "this key is a viewer's", bento_client.Forbidden),
    (409, "image bento/x:latest is not built: run `bento images build x`", bento_client.ImageNotBuilt),
    (409, "session s-1 is still running: kill it first", bento_client.SessionStillRunning),
    (413, "code is 2 bytes; the limit is 1", bento_client.TooLarge),
    (429, "the server is at capacity (1 running sessions); try again later", bento_client.CapacityError),
    (502, "the container engine failed; see the controller's log", bento_client.EngineError),
    (503, "session s-1 is resuming after a controller restart; try again in a moment", bento_client.Unavailable),
])
def test_error_classes(status: int, error: str, cls: type) -> None:
    # As a controller from before the code answers: the class from the status.
    e = from_answer(status, json.dumps({"error": error}).encode())
    assert type(e) is cls and e.status == status and error in e.message
    assert isinstance(e, bento_client.BentoError)
    # As this one answers: the code, which `.code` carries either way.
    code = CODES[status]
    assert e.code == code
    c = from_answer(status, json.dumps({"error": error, "code": code}).encode())
    assert type(c) is cls and (c.status, c.code) == (status, code) and c.body["code"] == code


#: What the controller sends for each status (ErrorCode::of).
CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict", 413: "payload_too_large",
         429: "too_many_requests", 502: "bad_gateway", 503: "unavailable"}


@pytest.mark.parametrize("status,body,cls", [
    # The code chooses, not the status nor the start of the text.
    (400, {"error": "unknown session token", "code": "conflict"}, bento_client.Conflict),
    (500, {"error": "try again", "code": "unavailable"}, bento_client.Unavailable),
    (404, {"error": "limits: cpus 9", "code": "not_found"}, bento_client.NotFound),
    (418, {"error": "anything", "code": "too_many_requests"}, bento_client.CapacityError),
    (400, {"error": "bad method", "code": "method_not_allowed"}, bento_client.BadRequest),
    (500, {"error": "boom", "code": "internal"}, bento_client.ServerError),
    # Within the code's class, the wording picks the finer one.
    (404, {"error": 'unknown function "x"', "code": "not_found"}, bento_client.UnknownFunction),
    (409, {"error": "session s-1 is still running", "code": "conflict"}, bento_client.SessionStillRunning),
    # A code this library does not know: the status decides.
    (409, {"error": "image x is not built", "code": "some_new_code"}, bento_client.ImageNotBuilt),
    (404, {"error": "gone", "code": 7}, bento_client.NotFound),
])
def test_the_code_comes_first(status: int, body: Dict[str, Any], cls: type) -> None:
    e = from_answer(status, json.dumps(body).encode())
    assert type(e) is cls and e.status == status and e.message.endswith(str(body["error"]))
    if isinstance(body["code"], str):
        assert e.code == body["code"]
    else:
        assert e.code == CODES[status]


def test_code_and_status_are_on_every_error() -> None:
    for e in (bento_client.Unreachable("no"), bento_client.Detached("closed"), bento_client.BentoError("x")):
        assert e.code is None and e.status is None
    plain = from_answer(503, b"too many connections", "Service Unavailable")
    assert (plain.status, plain.code) == (503, "unavailable")
    odd = from_answer(302, b"", "Found")
    assert type(odd) is bento_client.ApiError and (odd.status, odd.code) == (302, None)


def test_error_bodies_that_are_not_json() -> None:
    e = from_answer(503, b"too many connections", "Service Unavailable")
    assert isinstance(e, bento_client.Unavailable) and e.message == "server error (HTTP 503): too many connections"
    page = from_answer(502, b"<html>bad gateway</html>", "Bad Gateway")
    assert page.message == "server error (HTTP 502): Bad Gateway"
    syntax = {"error": "the code does not compile: ...", "syntax": {"kind": "SyntaxError", "line": 3}}
    c = from_answer(400, json.dumps(syntax).encode())
    assert isinstance(c, bento_client.CompileError) and c.syntax["line"] == 3


def test_exit_words_are_the_clis() -> None:
    assert describe_reason({"kind": "exited", "code": 2}) == "exited with code 2"
    assert describe_reason({"kind": "signaled", "signal": 9}) == "killed by signal 9"
    assert describe_reason({"kind": "oom_killed"}) == "killed: out of memory"
    assert describe_reason({"kind": "timeout"}) == "killed: timed out"
    assert describe_reason({"kind": "killed"}) == "killed by user"
    assert describe_reason({"kind": "output_cap"}) == "killed: output cap reached"
    assert describe_reason({"kind": "idle", "after": 300}) == "idle for 5m: no client attached and no output"
    assert describe_reason({"kind": "idle", "after": 90}) == "idle for 90s: no client attached and no output"
    assert describe_reason({"kind": "start_failed", "message": "m"}) == "failed to start: m"
    assert describe_reason({"kind": "node_lost", "node": "n2"}).startswith("lost: node n2, which ran it")
    ex = bento_client.Exit.from_json({"reason": {"kind": "timeout"}, "code": 124})
    assert (ex.code, ex.message, ex.ok, str(ex)) == (124, "killed: timed out", False, "killed: timed out")


def test_limits_and_args() -> None:
    assert memory_bytes("64m") == 64 << 20 and memory_bytes("1GiB") == 1 << 30 and memory_bytes(5) == 5
    with pytest.raises(bento_client.BadLimits):
        memory_bytes("lots")
    assert limits_request("1g", 0.5, 32, 1.5) == {"memory": 1 << 30, "cpus": 0.5, "pids": 32, "timeout": 2}
    assert limits_request(None, None, None, "30s") == {"timeout": "30s"}
    assert encode_args([42, "42", "x", [1], None]) == ["42", '"42"', '"x"', "[1]", "null"]


def test_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    from bento_client._http import resolve

    monkeypatch.delenv("BENTO_URL", raising=False)
    monkeypatch.delenv("BENTO_API_KEY", raising=False)
    assert resolve(None, None) == ("http://127.0.0.1:7470", None)
    assert resolve("10.0.0.5:7470/", "") == ("http://10.0.0.5:7470", None)
    monkeypatch.setenv("BENTO_URL", "https://bento.example/api")
    assert resolve(None, None)[0] == "https://bento.example/api"
    with pytest.raises(bento_client.BentoError):
        resolve("ftp://x", None)


def test_exit_carries_the_usage_when_the_controller_sends_it() -> None:
    from bento_client import Exit, Usage
    e = Exit.from_json({"reason": {"kind": "exited", "code": 0}, "code": 0, "message": "exited with code 0",
                        "usage": {"cpu_user_ms": 700, "cpu_system_ms": 300, "peak_memory_bytes": 104857600,
                                  "peak_pids": 3, "wall_ms": 2500, "peak_memory_source": "max_usage",
                                  "samples": 5}})
    assert isinstance(e.usage, Usage)
    assert e.usage.cpu_seconds == 1.0
    assert e.usage.peak_memory_bytes == 100 << 20
    assert Exit.from_json({"reason": {"kind": "killed"}, "code": 137}).usage is None
