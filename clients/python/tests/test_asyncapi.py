"""The controller's ``/asyncapi.json``, the attach WebSocket's AsyncAPI 3.0.0
document, as someone writing a client in another language reads it.

- ``pydantic-asyncapi``'s AsyncAPI 3 model (a third-party model of the
  specification) accepts it, and no object in it has a field the
  specification does not define (only ``x-`` extensions);
- every payload is a valid JSON Schema (draft 7, which AsyncAPI's schema
  format extends);
- a live attach, driven with nothing but the document (a raw WebSocket, the
  binary layouts from its ``x-layout``), sends only messages that are valid
  against it, and is answered with messages valid against it: so the
  document matches the running server, not only the Rust types.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Tuple

import httpx
import jsonschema
import pytest
from pydantic import BaseModel
from pydantic_asyncapi.base import Schema
from pydantic_asyncapi.v3 import AsyncAPI
from websockets.sync.client import connect

Doc = Dict[str, Any]


@pytest.fixture
def doc(url: str) -> Doc:
    got = httpx.get(f"{url}/asyncapi.json", timeout=30)
    got.raise_for_status()
    d = got.json()
    assert isinstance(d, dict)
    return d


# Where the model, not the document, is wrong: pydantic-asyncapi 0.3.2
# spells the Components Object's field `securitySchemas`, where the AsyncAPI
# 3.0.0 specification has `securitySchemes` (so the model leaves our
# schemes unchecked, and takes them as an extra). It also types a Server
# Object's `security` as a map where the specification has a list, which is
# why the document declares security on its operations (as valid there).
MODEL_ERRATA = {"$.components.securitySchemes"}


def _unknown_fields(x: Any, path: str, out: List[str]) -> None:
    """Fields the model took as extras: the specification allows only
    ``x-`` extensions there (its JSON Schema says so with
    ``additionalProperties: false``), so anything else is a misspelling or
    a field of another version. Schemas are JSON Schema and take any
    keyword."""
    if isinstance(x, BaseModel):
        if not isinstance(x, Schema):
            out.extend(p for k in (x.model_extra or {})
                       if not k.startswith("x-") and (p := f"{path}.{k}") not in MODEL_ERRATA)
        for name in type(x).model_fields:
            _unknown_fields(getattr(x, name), f"{path}.{name}", out)
    elif isinstance(x, dict):
        for k, v in x.items():
            _unknown_fields(v, f"{path}/{k}", out)
    elif isinstance(x, list):
        for i, v in enumerate(x):
            _unknown_fields(v, f"{path}[{i}]", out)


def test_an_asyncapi_3_model_accepts_the_document(doc: Doc) -> None:
    assert doc["asyncapi"] == "3.0.0"
    model = AsyncAPI.model_validate(doc)
    unknown: List[str] = []
    _unknown_fields(model, "$", unknown)
    assert unknown == []
    assert model.channels is not None
    attach = model.channels["attach"]
    ws = getattr(getattr(attach, "bindings", None), "ws", None)
    assert ws is not None and ws.method == "GET", "the ws binding is read as one"


def test_the_model_check_can_fail(doc: Doc) -> None:
    bad = json.loads(json.dumps(doc))
    bad["operations"]["sendToSession"]["action"] = "publish"  # AsyncAPI 2's word
    with pytest.raises(Exception):
        AsyncAPI.model_validate(bad)
    bad = json.loads(json.dumps(doc))
    bad["channels"]["attach"]["adress"] = "/typo"
    unknown: List[str] = []
    _unknown_fields(AsyncAPI.model_validate(bad), "$", unknown)
    assert unknown == ["$.channels/attach.adress"]


def test_every_payload_is_a_json_schema(doc: Doc) -> None:
    for name, message in doc["components"]["messages"].items():
        jsonschema.Draft7Validator.check_schema(message["payload"])
    for name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft7Validator.check_schema(schema)


def _validator(doc: Doc, message: str) -> jsonschema.Draft7Validator:
    """Validates against ``message``'s payload; its ``#/components/...``
    references resolve against the document's components."""
    payload = dict(doc["components"]["messages"][message]["payload"])
    payload["components"] = doc["components"]
    return jsonschema.Draft7Validator(payload)


def _offsets(doc: Doc, message: str) -> Dict[str, int]:
    return {f["field"]: f["offset"] for f in doc["components"]["messages"][message]["x-layout"]}


def _text(doc: Doc, ws: Any, msg: Dict[str, Any]) -> None:
    """Sends a client message after checking it against the document."""
    _validator(doc, f"client_{msg['type']}").validate(msg)
    ws.send(json.dumps(msg))


def _input(doc: Doc, seq: int, data: bytes) -> bytes:
    at = _offsets(doc, "client_input")
    frame = bytearray(at["bytes"])
    frame[at["kind"]] = 1
    frame[at["seq"]:at["seq"] + 8] = seq.to_bytes(8, "big")
    return bytes(frame) + data


def test_a_live_attach_speaks_the_document(doc: Doc, url: str, fn: Dict[str, str]) -> None:
    created = httpx.post(f"{url}/v1/sessions", json={"function": fn["echo"]}, timeout=60)
    created.raise_for_status()
    token = created.json()["token"]
    address = doc["channels"]["attach"]["address"].replace("{token}", token)
    ws_url = url.replace("http://", "ws://", 1) + address + "?after=0"
    out = _offsets(doc, "server_output")
    streams = {int(k): v for k, v in
               next(f for f in doc["components"]["messages"]["server_output"]["x-layout"]
                    if f["field"] == "stream")["values"].items()}
    received: List[Dict[str, Any]] = []
    output: List[Tuple[int, str, bytes]] = []
    with connect(ws_url, open_timeout=30, close_timeout=5) as ws:
        def next_text() -> Dict[str, Any]:
            """The next text message, validated; binary ones on the way are
            decoded by the document's layout."""
            while True:
                m = ws.recv(timeout=60)
                if isinstance(m, bytes):
                    seq = int.from_bytes(m[out["seq"]:out["seq"] + 8], "big")
                    output.append((seq, streams[m[out["stream"]]], m[out["bytes"]:]))
                    continue
                msg = json.loads(m)
                assert isinstance(msg, dict)
                _validator(doc, f"server_{msg['type']}").validate(msg)
                received.append(msg)
                return msg

        hello = next_text()
        assert hello["type"] == "hello" and hello["input_next"] == 1
        _text(doc, ws, {"type": "ping"})
        ws.send(_input(doc, 1, b"hi"))
        _text(doc, ws, {"type": "eof", "seq": 2})
        while (m := next_text())["type"] != "exit":
            pass
        assert m["exit"]["reason"] == {"kind": "exited", "code": 0}
        _text(doc, ws, {"type": "ack", "seq": m["seq"]})
        while (m := next_text())["type"] != "closed":
            pass
        assert m["reason"] == {"kind": "finished"}
    kinds = {m["type"] for m in received}
    assert {"hello", "pong", "input_ack", "exit", "closed"} <= kinds, kinds
    assert (1, "data", b"hi") in output, output
    assert [s for s, _, _ in output] == sorted(s for s, _, _ in output)
    assert any(stream == "stdout" and b"echoed 1" in data for _, stream, data in output), output
