"""The JSON body parser is bounded: a malformed or too deeply nested body is a 400, never a 500,
and it never reaches upstream; bodies within the limits reach it byte for byte."""

from __future__ import annotations

from typing import Any

import pytest
from tests.raw_http import exchange

from aoai_proxy.inbound import MAX_JSON_DEPTH

CHAT = b"/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
JSON = [(b"Content-Type", b"application/json")]


def _nested(levels: int) -> bytes:
    """A chat body whose deepest value sits `levels` arrays and objects deep (the body included)."""
    return b'{"messages":[],"a":' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"


REFUSED = {
    "5000 levels": _nested(5000),
    "one level too deep": _nested(MAX_JSON_DEPTH + 1),
    "objects nested": b'{"a":' + b'{"a":' * 3000 + b"1" + b"}" * 3001,
    "unclosed": b'{"messages":[' + b"[" * 3000,
    "truncated": b'{"messages":[{"role":"user","content":"hi"',
    "not UTF-8": b'{"messages":"\xff\xfe"}',
    "UTF-16 without BOM garbage": b"\x00{\x00",
    "huge integer": b'{"max_tokens":' + b"9" * 10_000 + b"}",
    "array": b"[1,2,3]",
    "string": b'"hello"',
    "empty": b"",
    "NaN garbage": b'{"a":NaNx}',
}


@pytest.mark.parametrize("body", REFUSED.values(), ids=REFUSED.keys())
def test_a_malformed_or_too_deep_body_is_a_400_and_never_goes_upstream(
    recorded_proxy: Any, recording_upstream: Any, body: bytes
) -> None:
    response = exchange(recorded_proxy.base_url, b"POST", CHAT, JSON, body)
    assert response is not None
    assert response.status == 400, response.body
    assert response.json()["error"]["code"] == "invalid_request"
    assert recording_upstream.requests == []
    (record,) = recorded_proxy.records(1)
    assert record["response"]["status"] == 400


ACCEPTED = {
    "at the depth limit": _nested(MAX_JSON_DEPTH),
    "brackets inside strings": b'{"messages":[{"role":"user","content":"' + b"[{" * 5000 + b'"}]}',
    "escaped quotes before brackets": (
        b'{"messages":[{"role":"user","content":"\\"\\\\' + b"[" * 500 + b'"}]}'
    ),
    "many shallow messages": (
        b'{"messages":['
        + b",".join([b'{"role":"user","content":"x"}'] * 2000)
        + b'],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}]}'
    ),
}


@pytest.mark.parametrize("body", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_a_body_within_the_limits_reaches_upstream_unchanged(
    recorded_proxy: Any, recording_upstream: Any, body: bytes
) -> None:
    response = exchange(recorded_proxy.base_url, b"POST", CHAT, JSON, body)
    assert response is not None
    assert response.status == 200, response.body
    (received,) = recording_upstream.requests
    assert received.body == body
