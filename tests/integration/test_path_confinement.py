"""Path confinement and the names Azure would refuse, proven on the bytes the upstream received.

The proxy runs under uvicorn on 127.0.0.1 in front of a recording upstream that keeps each request
line exactly as it crossed the socket; requests are written over a raw socket so nothing on the
test side normalises them either.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from tests.raw_http import RawResponse, exchange

from aoai_proxy.config import Settings
from aoai_proxy.errors import BadRequest
from aoai_proxy.paths import confined, encode_path
from aoai_proxy.upstream import Upstream

CHAT_BODY = b'{"messages":[{"role":"user","content":"hi"}]}'
JSON = [(b"Content-Type", b"application/json")]

ESCAPES = [
    (b"POST", b"/openai/%2e%2e/%2e%2e/etc/passwd"),
    (b"GET", b"/openai/%2E%2E/healthz"),
    (b"GET", b"/openai/..%2f..%2fhealthz"),
    (b"GET", b"/openai/..%2F..%2Fhealthz?api-version=2024-10-21"),
    (b"GET", b"/openai/../healthz"),
    (b"GET", b"/openai/v1/../../healthz"),
    (b"POST", b"/openai/v1/responses/%2e%2e/%2e%2e/%2e%2e/healthz"),
    (b"POST", b"/openai/deployments/%2e%2e/chat/completions?api-version=2024-10-21"),
    (b"POST", b"/openai/deployments/../chat/completions?api-version=2024-10-21"),
    (b"GET", b"/openai/./models"),
    (b"GET", b"/openai/%2e/models"),
    (b"GET", b"/openai/%252e%252e/healthz"),
    (b"GET", b"/openai/%252E%252E%252Fhealthz"),
    (b"GET", b"/openai/..%5c..%5chealthz"),
    (b"GET", b"/openai/models%00"),
    (b"POST", b"/openai/deployments/a%0d%0aX-Evil:1/chat/completions?api-version=2024-10-21"),
    (b"GET", b"/openai/models%0a"),
    (b"GET", b"/openai//models"),
    (b"GET", b"/openai/models/"),
    (b"GET", b"/openai/"),
]


def _rejected(proxy: Any, upstream: Any, response: RawResponse | None, status: int) -> Any:
    assert response is not None
    assert response.status == status, response.body
    error = response.json()["error"]
    assert set(error) == {"code", "message"}
    assert upstream.requests == [], [r.request_line for r in upstream.requests]
    return error


@pytest.mark.parametrize(("method", "target"), ESCAPES, ids=[t.decode() for _, t in ESCAPES])
def test_a_path_that_could_leave_openai_is_a_400_and_never_goes_upstream(
    recorded_proxy: Any, recording_upstream: Any, method: bytes, target: bytes
) -> None:
    response = exchange(recorded_proxy.base_url, method, target, JSON, CHAT_BODY)
    error = _rejected(recorded_proxy, recording_upstream, response, 400)
    assert error["code"] == "invalid_request"
    (record,) = recorded_proxy.records(1)
    assert record["response"]["status"] == 400
    assert record["response"]["outcome"] == "proxy_error"
    assert "\r" not in record["request"]["path"]
    assert "\n" not in record["request"]["path"]
    health = exchange(recorded_proxy.base_url, b"GET", b"/healthz")
    assert health is not None
    assert health.json()["status"] == "ok"


FORWARDED = [
    b"/openai/deployments/gpt-4.1-mini/chat/completions?api-version=2024-10-21",
    b"/openai/deployments/My_Deployment.v2-x/embeddings?api-version=2025-04-01-preview",
    b"/openai/v1/chat/completions",
    b"/openai/v1/chat/completions?api-version=preview",
    b"/openai/files/file-abc%C3%A9/content?api-version=2024-10-21",
    b"/openai/files/50%25/content?api-version=2024-10-21&x=%0d%0a",
    b"/openai/deployments/gpt-4o/extensions/chat/completions?api-version=2024-10-21",
]


@pytest.mark.parametrize("target", FORWARDED, ids=[t.decode() for t in FORWARDED])
def test_a_confined_path_reaches_upstream_with_the_same_bytes(
    recorded_proxy: Any, recording_upstream: Any, target: bytes
) -> None:
    response = exchange(recorded_proxy.base_url, b"POST", target, JSON, CHAT_BODY)
    assert response is not None
    assert response.status == 200, response.body
    (received,) = recording_upstream.requests
    assert received.target == target
    assert received.body == CHAT_BODY
    assert len(recorded_proxy.records(1)) == 1


NOT_A_DEPLOYMENT = [
    b"a%20b",
    b"bad!name",
    b"caf%C3%A9",
    b"x" * 65,
    b"semi%3Bcolon",
]


@pytest.mark.parametrize("name", NOT_A_DEPLOYMENT, ids=[n.decode()[:20] for n in NOT_A_DEPLOYMENT])
@pytest.mark.parametrize("tail", [b"chat/completions", b"extensions/chat/completions"])
def test_a_deployment_name_azure_cannot_hold_is_answered_deployment_not_found(
    recorded_proxy: Any, recording_upstream: Any, name: bytes, tail: bytes
) -> None:
    target = b"/openai/deployments/" + name + b"/" + tail + b"?api-version=2024-10-21"
    response = exchange(recorded_proxy.base_url, b"POST", target, JSON, CHAT_BODY)
    error = _rejected(recorded_proxy, recording_upstream, response, 404)
    assert error["code"] == "DeploymentNotFound"
    assert error["message"].startswith("The API deployment for this resource does not exist.")
    (record,) = recorded_proxy.records(1)
    assert record["response"]["status"] == 404


def test_the_longest_deployment_name_azure_allows_is_forwarded(
    recorded_proxy: Any, recording_upstream: Any
) -> None:
    target = b"/openai/deployments/" + b"d" * 64 + b"/chat/completions?api-version=2024-10-21"
    response = exchange(recorded_proxy.base_url, b"POST", target, JSON, CHAT_BODY)
    assert response is not None
    assert response.status == 200
    assert [r.target for r in recording_upstream.requests] == [target]


BAD_API_VERSIONS = [
    b"api-version=2024-10-21%0d%0aX-Evil:%201",
    b"api-version=latest%00",
    b"api-version=foo",
    b"api-version=",
    b"api-version=2024-10-21&api-version=..%2f..%2f",
    b"api-version=" + b"2" * 5000,
]


@pytest.mark.parametrize("query", BAD_API_VERSIONS, ids=[q.decode()[:40] for q in BAD_API_VERSIONS])
def test_an_api_version_azure_would_refuse_is_answered_like_azure(
    recorded_proxy: Any, recording_upstream: Any, query: bytes
) -> None:
    target = b"/openai/deployments/gpt-4o/chat/completions?" + query
    response = exchange(recorded_proxy.base_url, b"POST", target, JSON, CHAT_BODY)
    error = _rejected(recorded_proxy, recording_upstream, response, 400)
    assert error["code"] == "BadRequest"
    assert error["message"].startswith("API version not supported")


def test_the_upstream_client_refuses_a_path_outside_openai_without_connecting(
    recording_upstream: Any,
) -> None:
    """The last check holds on its own: even a path the inbound checks missed never leaves."""
    settings = Settings(openai_endpoint=recording_upstream.base_url, upstream_auth="none")

    async def attempt(path: str) -> None:
        upstream = Upstream(settings, None)
        try:
            deadline = asyncio.get_running_loop().time() + 5
            await upstream.open("GET", path, "", [], b"", stream=False, deadline=deadline)
        finally:
            await upstream.aclose()

    for path in ("/openai/../healthz", "/openai/%2e%2e/healthz", "/healthz", "/openai//x"):
        with pytest.raises(BadRequest):
            asyncio.run(attempt(path))
    time.sleep(0.05)
    assert recording_upstream.requests == []


@pytest.mark.parametrize(
    "path",
    [
        "/openai/../x",
        "/openai/%2e%2E/x",
        "/openai/a/./b",
        "/openai//x",
        "/openai/x/",
        "/openaix/y",
        "/openai/a\r\nb",
        "/openai/a b",
        "/openai/a%2",
        "/openai/%2fx",
    ],
)
def test_confined_refuses_anything_a_client_could_resolve_elsewhere(path: str) -> None:
    with pytest.raises(BadRequest):
        confined(path)


def test_encode_path_escapes_each_checked_segment_on_its_own() -> None:
    assert encode_path("/openai/files/a b%/c") == "/openai/files/a%20b%25/c"
    assert confined(encode_path("/openai/files/é:@")) == "/openai/files/%C3%A9:@"
