"""The origin's contract, `POST /api/aoaifn`, served by the running proxy: its README's own request
bodies (hieumoscow/Function-SSE-Proxy, "Request Format"), byte-exact relay, one record per call."""

from __future__ import annotations

import json
from typing import Any

import httpx

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
USER = {"role": "user", "content": "Tell me about Singapore in 1 sentence"}
# The origin README's two request bodies, as its clients send them.
NON_STREAMING = json.dumps({"messages": [SYSTEM, USER]}, indent=4).encode()
STREAMING = json.dumps(
    {"messages": [SYSTEM, USER], "stream": True, "stream_options": {"include_usage": True}},
    indent=4,
).encode()
JSON = {"content-type": "application/json"}


def post(proxy: Any, body: bytes, path: str = "/api/aoaifn") -> httpx.Response:
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        return client.post(path, content=body, headers=JSON)


def test_the_origin_readme_non_streaming_request(proxy_factory: Any, upstream: Any) -> None:
    proxy = proxy_factory(aoaifn_deployment="chat")
    response = post(proxy, NON_STREAMING)

    assert response.status_code == 200
    received = upstream.recorder.last()
    assert received.path == "/openai/deployments/chat/chat/completions"
    assert received.query == "api-version=2024-10-21"
    assert received.body == NON_STREAMING  # the caller's bytes, unchanged
    assert received.header("authorization") is None  # upstream auth "none" in tests: no key either
    assert response.content == upstream.tap.last().body
    assert response.json()["usage"]["total_tokens"] > 0
    record = proxy.records(1)[0]
    assert record["request"]["route"] == "aoaifn"
    assert record["request"]["operation"] == "chat"
    assert record["request"]["deployment"] == "chat"
    assert record["request"]["api_version"] == "2024-10-21"
    assert record["usage"]["source"] == "provider"
    assert record["usage"]["total_tokens"] == response.json()["usage"]["total_tokens"]
    assert response.headers["x-usage-record-id"] == record["record_id"]


def test_the_origin_readme_streaming_request_with_include_usage(
    proxy_factory: Any, upstream: Any
) -> None:
    proxy = proxy_factory(aoaifn_deployment="chat", aoaifn_api_version="2025-04-01-preview")
    response = post(proxy, STREAMING)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    received = upstream.recorder.last()
    assert received.query == "api-version=2025-04-01-preview"
    assert received.body == STREAMING  # the client asked for usage itself: nothing injected
    assert response.content == b"".join(received.events)
    assert response.content.endswith(b"data: [DONE]\n\n")
    record = proxy.records(1)[0]
    assert record["request"]["route"] == "aoaifn"
    assert record["request"]["stream"] is True
    assert record["usage"]["source"] == "provider"
    assert record["usage"]["completion_tokens"] == 20


def test_a_stream_without_stream_options_gets_injected_usage(
    proxy_factory: Any, upstream: Any
) -> None:
    proxy = proxy_factory(aoaifn_deployment="chat")
    response = post(proxy, json.dumps({"messages": [USER], "stream": True}).encode())

    assert response.status_code == 200
    assert b'"usage"' not in response.content
    assert upstream.recorder.last().json()["stream_options"] == {"include_usage": True}
    assert proxy.records(1)[0]["usage"]["source"] == "injected"


def test_a_callers_api_version_wins(proxy_factory: Any, upstream: Any) -> None:
    proxy = proxy_factory(aoaifn_deployment="chat")
    post(proxy, NON_STREAMING, "/api/aoaifn?api-version=2025-04-01-preview")
    assert upstream.recorder.last().query == "api-version=2025-04-01-preview"


def test_without_a_deployment_setting_the_route_says_which_variable(
    proxy: Any, upstream: Any
) -> None:
    response = post(proxy, NON_STREAMING)

    assert response.status_code == 500
    assert response.json()["error"]["code"] == "service_misconfigured"
    assert "AZURE_OPENAI_DEPLOYMENT" in response.json()["error"]["message"]
    assert len(upstream.recorder) == 0
    record = proxy.records(1)[0]
    assert record["request"]["route"] == "aoaifn"
    assert record["response"]["outcome"] == "proxy_error"


def test_only_post_is_served(proxy_factory: Any, upstream: Any) -> None:
    proxy = proxy_factory(aoaifn_deployment="chat")
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        response = client.get("/api/aoaifn")
    assert response.status_code == 405
    assert len(upstream.recorder) == 0
    assert proxy.records(1)[0]["response"]["status"] == 405
