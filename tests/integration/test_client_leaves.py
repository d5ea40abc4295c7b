"""A caller that leaves while the proxy waits on Azure OpenAI: the wait is cut at once, the upstream
connection is closed (so Azure stops generating), exactly one record says so, and the server goes on
serving. With both HTTP parsers the worker's uvicorn may use (h11 as in Azure, httptools locally)."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from tests.conftest import ProxyServer
from tests.recording_upstream import ReceivedRequest, RecordingUpstream

CHAT = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2025-04-01-preview"
WAIT_S = 10.0
ANSWER = b'{"id":"c1","object":"chat.completion","model":"m","choices":[],"usage":null}'


async def _headers_never_come(received: ReceivedRequest, writer: asyncio.StreamWriter) -> None:
    if b"leave" in received.body:
        await asyncio.sleep(WAIT_S)  # a model thinking for minutes
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(ANSWER)).encode()
        + b"\r\n\r\n"
        + ANSWER
    )


async def _stream_stalls(received: ReceivedRequest, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
    writer.write(b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n')
    await writer.drain()
    await asyncio.sleep(WAIT_S)


@pytest.fixture(params=["h11", "httptools"])
def serve(request: pytest.FixtureRequest, raw_proxy: Any) -> Any:
    """`serve(respond) -> (upstream, proxy)`, the proxy under each of uvicorn's HTTP parsers."""
    return lambda respond: raw_proxy(respond, http=request.param)


def _leave_after_sending(
    proxy: ProxyServer, upstream: RecordingUpstream, body: bytes, read: int = 0
) -> bytes:
    """Sends a call on a raw socket, reads `read` bytes of the answer (0: none), then closes once
    the call has reached the upstream."""
    url = urlsplit(proxy.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=WAIT_S) as sock:
        sock.sendall(
            f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while len(received) < read:
            received += sock.recv(65536)
        deadline = time.monotonic() + WAIT_S
        while not upstream.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        return received


def test_leaving_while_the_upstream_has_not_answered_closes_it_and_records_one_disconnect(
    serve: Any,
) -> None:
    upstream, proxy = serve(_headers_never_come)
    _leave_after_sending(proxy, upstream, b'{"messages": [], "leave": true}')

    assert upstream.wait_closed(upstream.requests[0], 2.0)  # long before the answer would come
    (record,) = proxy.records(1)
    assert record["response"]["outcome"] == "client_disconnected"
    assert record["response"]["client_disconnected"] is True
    assert record["response"]["status"] is None
    assert record["usage"]["source_reason"] == "client_disconnected_before_usage"

    # The server goes on: the next call is answered and recorded as usual.
    with httpx.Client(base_url=proxy.base_url, timeout=WAIT_S) as client:
        response = client.post(CHAT, json={"messages": []})
    assert (response.status_code, response.content) == (200, ANSWER)
    assert proxy.records(2)[1]["response"]["outcome"] == "completed"


def test_leaving_a_stream_that_stalls_closes_it_and_records_one_disconnect(serve: Any) -> None:
    upstream, proxy = serve(_stream_stalls)
    answer = _leave_after_sending(proxy, upstream, b'{"messages": [], "stream": true}', read=1)
    assert answer.startswith(b"HTTP/1.1 200")

    assert upstream.wait_closed(upstream.requests[0], 2.0)
    (record,) = proxy.records(1)
    assert record["response"]["outcome"] == "client_disconnected"
    assert record["response"]["status"] == 200
