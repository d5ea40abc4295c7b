"""The upstream client, byte by byte: what reaches Azure OpenAI and what comes back, against a raw
TCP upstream on 127.0.0.1 (tests/recording_upstream.py) that records the exact request bytes and
answers with scripted bytes.

Raw sockets on both sides, because HTTP libraries normalise exactly what these tests look at
(header bytes, order, additions)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from tests.conftest import ProxyServer
from tests.raw_http import RawResponse, exchange
from tests.recording_upstream import ReceivedRequest, Respond

API_VERSION = "2025-04-01-preview"
CHAT = f"/openai/deployments/gpt-4o-mini/chat/completions?api-version={API_VERSION}"
WAIT_S = 10.0


def http_response(status: bytes, headers: list[bytes], body: bytes) -> bytes:
    lines = [b"HTTP/1.1 " + status, *headers, b"content-length: " + str(len(body)).encode()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def answer(status: bytes, headers: list[bytes], body: bytes) -> Respond:
    async def respond(received: ReceivedRequest, writer: asyncio.StreamWriter) -> None:
        writer.write(http_response(status, headers, body))

    return respond


COMPLETION = b'{"id":"c1","object":"chat.completion","model":"m","choices":[],"usage":null}'
OK_JSON = answer(b"200 OK", [b"content-type: application/json"], COMPLETION)


# -- what reaches the upstream ---------------------------------------------------------------------


def test_the_request_reaches_upstream_as_the_callers_exact_bytes_and_nothing_added(
    raw_proxy: Any,
) -> None:
    upstream, proxy = raw_proxy(OK_JSON)
    body = b'{"messages": [{"role": "user", "content": "Zo\xc3\xab"}]}'
    target = (
        b"/openai/deployments/my.dep_1/chat/completions"
        b"?api-version=2025-04-01-preview&x=a%2Fb+c%7E&code=function-key"
    )
    headers = [
        (b"X-Caller-Name", b"Zo\xc3\xab \xe2\x9c\x93"),  # UTF-8, non-ASCII
        (b"x-ms-client-request-id", b"Abc-1"),
        (b"Content-Type", b"application/json"),
        (b"api-key", b"caller-key"),
    ]
    assert _post(proxy, body, headers, target).status == 200
    (received,) = upstream.requests
    assert received.request_line == (
        b"POST /openai/deployments/my.dep_1/chat/completions"
        b"?api-version=2025-04-01-preview&x=a%2Fb+c%7E HTTP/1.1"
    )
    # The caller's forwardable headers and only what HTTP needs.
    assert sorted(name for name, _ in received.headers) == sorted(
        [
            b"host",
            b"x-caller-name",
            b"x-ms-client-request-id",
            b"content-type",
            b"content-length",
            b"accept-encoding",
        ]
    ), received.head
    assert received.header(b"x-caller-name") == b"Zo\xc3\xab \xe2\x9c\x93"
    assert received.header(b"x-ms-client-request-id") == b"Abc-1"
    assert received.header(b"accept-encoding") == b"identity"
    assert received.body == body
    assert proxy.records(1)[0]["response"]["status"] == 200


def test_a_header_value_that_is_not_utf8_reaches_upstream_as_its_exact_bytes(
    raw_proxy: Any,
) -> None:
    upstream, proxy = raw_proxy(OK_JSON)
    # Latin-1 and stray bytes: HTTP allows any octet but CR, LF and NUL in a field value.
    value = b"Zo\xeb \x80\xff"
    response = _post(proxy, b'{"messages": []}', [(b"x-caller-name", value)])
    assert response.status == 200
    (received,) = upstream.requests
    assert received.header(b"x-caller-name") == value
    assert proxy.records(1)[0]["response"]["status"] == 200


# -- what comes back ---------------------------------------------------------------------------------


def test_response_header_bytes_come_back_exactly_non_ascii_included(raw_proxy: Any) -> None:
    _, proxy = raw_proxy(
        answer(
            b"200 OK",
            [
                b"content-type: application/json",
                b"x-ms-region: Zo\xc3\xab",  # UTF-8
                b"apim-request-id: caf\xe9",  # latin-1
                b"X-RateLimit-Remaining-Tokens: 9999",
                b"set-cookie: upstream=secret",  # not relayed
            ],
            COMPLETION,
        )
    )
    response = _post(proxy, b'{"messages": []}')
    # The raw reader decodes header bytes as Latin-1: encoding them back gives the wire bytes.
    assert response.header("x-ms-region").encode("latin-1") == b"Zo\xc3\xab"  # type: ignore[union-attr]
    assert response.header("apim-request-id").encode("latin-1") == b"caf\xe9"  # type: ignore[union-attr]
    assert response.header("x-ratelimit-remaining-tokens") == "9999"
    assert response.header("set-cookie") is None
    assert response.body == COMPLETION
    record = proxy.records(1)[0]
    assert record["response"]["region"] == "Zoë"


def _post(
    proxy: ProxyServer,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    target: bytes = CHAT.encode(),
) -> RawResponse:
    response = exchange(proxy.base_url, b"POST", target, headers, body)
    assert response is not None, "no answer"
    return response


def _sse(*events: bytes) -> bytes:
    return b"".join(b"data: " + event + b"\n\n" for event in events)


def streaming(events: list[bytes], gap_s: float, *, end: bool = True) -> Respond:
    """A chunked SSE response, one event per chunk, `gap_s` apart; `end=False` stalls instead."""

    async def respond(received: ReceivedRequest, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        for event in events:
            data = _sse(event)
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()
            await asyncio.sleep(gap_s)
        if end:
            writer.write(b"0\r\n\r\n")
        else:
            await asyncio.sleep(30)

    return respond


CHUNKS = [
    b'{"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"%d"}}]}' % i
    for i in range(12)
]
STREAM_BODY = {"messages": [], "stream": True, "stream_options": {"include_usage": True}}


def test_a_stream_longer_than_the_response_deadline_is_relayed_whole(raw_proxy: Any) -> None:
    _, proxy = raw_proxy(streaming([*CHUNKS, b"[DONE]"], 0.1), response_timeout=0.5)
    with httpx.Client(base_url=proxy.base_url, timeout=WAIT_S) as client:
        response = client.post(CHAT, json=STREAM_BODY)
    assert response.content == _sse(*CHUNKS, b"[DONE]")
    assert proxy.records(1)[0]["response"]["outcome"] == "completed"


def test_an_upstream_silent_past_the_stream_idle_timeout_ends_in_band(raw_proxy: Any) -> None:
    upstream, proxy = raw_proxy(streaming(CHUNKS[:2], 0.0, end=False), stream_idle_timeout=0.4)
    started = time.monotonic()
    with httpx.Client(base_url=proxy.base_url, timeout=WAIT_S) as client:
        response = client.post(CHAT, json=STREAM_BODY)
    assert time.monotonic() - started < 3
    assert response.content.startswith(_sse(*CHUNKS[:2]))
    assert b'"code": "upstream_timeout"' in response.content
    assert b"[DONE]" not in response.content
    record = proxy.records(1)[0]
    assert (record["response"]["outcome"], record["response"]["error_code"]) == (
        "stream_failed",
        "upstream_timeout",
    )
    assert upstream.wait_closed(upstream.requests[0], 2.0)  # the stalled connection is closed


def test_a_client_that_leaves_mid_stream_closes_the_upstream_connection(raw_proxy: Any) -> None:
    upstream, proxy = raw_proxy(streaming(CHUNKS, 0.2))
    with (
        httpx.Client(base_url=proxy.base_url, timeout=WAIT_S) as client,
        client.stream("POST", CHAT, json=STREAM_BODY) as response,
    ):
        next(response.iter_raw())
    assert upstream.wait_closed(
        upstream.requests[0], 2.0
    )  # not kept for reuse, not read to the end
    record = proxy.records(1)[0]
    assert record["response"]["outcome"] == "client_disconnected"


def test_a_non_streamed_body_cut_short_is_a_502_with_one_record(raw_proxy: Any) -> None:
    async def truncated(received: ReceivedRequest, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n"
        )
        writer.write(b"\r\n" + COMPLETION[:20])
        await writer.drain()
        writer.close()

    _, proxy = raw_proxy(truncated)
    with httpx.Client(base_url=proxy.base_url, timeout=WAIT_S) as client:
        response = client.post(CHAT, json={"messages": []})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unreachable"
    assert proxy.records(1)[0]["response"]["status"] == 502


def test_more_than_a_hundred_streams_are_open_upstream_at_once(raw_proxy: Any) -> None:
    """aiohttp's default connector allows 100 connections: the 101st stream would wait for one."""
    count = 120
    all_in = asyncio.Event()
    arrived = 0

    async def barrier(received: ReceivedRequest, writer: asyncio.StreamWriter) -> None:
        nonlocal arrived
        arrived += 1
        if arrived == count:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), WAIT_S)
        await streaming([*CHUNKS[:1], b"[DONE]"], 0.0)(received, writer)

    _, proxy = raw_proxy(barrier)

    async def run() -> list[bytes]:
        limits = httpx.Limits(max_connections=count)
        async with httpx.AsyncClient(base_url=proxy.base_url, timeout=20, limits=limits) as client:

            async def one() -> bytes:
                return (await client.post(CHAT, json=STREAM_BODY)).content

            return await asyncio.gather(*(one() for _ in range(count)))

    bodies = asyncio.run(run())
    assert bodies == [_sse(CHUNKS[0], b"[DONE]")] * count
    assert len(proxy.records(count)) == count
