"""The controller's ``/openapi.json``, as a third-party tool reads it:
``openapi-spec-validator`` accepts it, every operation has an id, links
lead from creations to the routes that take what they return, health is
open, and the name pattern agrees with what the server enforces."""

from __future__ import annotations

import re
from typing import Any, Dict

import httpx
import pytest
from openapi_spec_validator import validate

from bento_client import BadRequest, Client


@pytest.fixture
def spec(url: str) -> Dict[str, Any]:
    doc = httpx.get(f"{url}/openapi.json", timeout=30).json()
    assert isinstance(doc, dict)
    return doc


def test_the_validator_accepts_the_document(spec: Dict[str, Any]) -> None:
    validate(spec)


def test_operations_links_and_security(spec: Dict[str, Any]) -> None:
    ids = {op["operationId"] for item in spec["paths"].values() for op in item.values()}
    created = spec["paths"]["/v1/sessions"]["post"]["responses"]["201"]["links"]
    assert "get_v1_sessions_token" in created and "post_v1_sessions_token_kill" in created
    for link in created.values():
        assert link["operationId"] in ids
        assert link["parameters"] == {"token": "$response.body#/token"}
    submitted = spec["paths"]["/v1/functions"]["post"]["responses"]["201"]["links"]
    assert submitted["post_v1_sessions"]["requestBody"] == {"function": "$response.body#/id"}
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    assert "security" not in spec["paths"]["/v1/sessions"]["get"], "the document's default: the key"


def test_the_name_pattern_is_what_the_server_enforces(spec: Dict[str, Any], client: Client) -> None:
    schema = spec["components"]["schemas"]["SubmitFunction"]["properties"]["name"]
    pattern = re.compile(schema["pattern"])
    code = "def main():\n    return 1\n"
    for name, ok in [("oapi-echo", True), ("f", True), ("fn", True), ("fnord", True), ("f-n", True),
                     ("fn-1", False), ("Echo", False), ("-x", False), ("", False)]:
        matches = bool(pattern.search(name)) and 1 <= len(name) <= schema["maxLength"]
        assert matches == ok, name
        if ok:
            client.submit(code, name=f"{name}")
        else:
            with pytest.raises(BadRequest):
                client.submit(code, name=name)
