"""The upstream client, byte by byte: what reaches Azure OpenAI and what comes back, against a raw
TCP upstream on 127.0.0.1 that records the exact request bytes and answers with scripted bytes.

Raw sockets on both sides, because HTTP libraries normalise exactly what these tests look at
(header bytes, order, additions)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import ProxyServer

from aoai_proxy.asgi import create_app as create_proxy_app
from aoai_proxy.config import Settings

API_VERSION = "2025-04-01-preview"
CHAT = f"/openai/deployments/gpt-4o-mini/chat/completions?api-version={API_VERSION}"
WAIT_S = 10.0


@dataclass
class Received:
    head: bytes  # request line and headers, as sent
    body: bytes
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # the client closed its side

    @property
    def request_line(self) -> bytes:
        return self.head.split(b"\r\n", 1)[0]

    @property
    def header_lines(self) -> list[bytes]:
        return self.head.split(b"\r\n")[1:]


Respond = Callable[[Received, asyncio.StreamWriter], Awaitable[None]]


class RawUpstream:
    """An HTTP/1.1 origin on a raw asyncio socket in its own thread: records each request's bytes,
    answers through `respond` (one request per connection, then it waits for the client to close)."""

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.requests: list[Received] = []
        self.loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> str:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self._start(), self.loop)
        port: int = started.result(WAIT_S)
        return f"http://127.0.0.1:{port}"

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        watcher: asyncio.Task[None] | None = None
        try:
            head = (await reader.readuntil(b"\r\n\r\n"))[:-4]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            received = Received(head, await reader.readexactly(length))
            self.requests.append(received)
            watcher = asyncio.ensure_future(self._watch_close(reader, received))
            await self.respond(received, writer)
            await writer.drain()
            await watcher
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if watcher is not None:
                watcher.cancel()
            writer.close()

    @staticmethod
    async def _watch_close(reader: asyncio.StreamReader, received: Received) -> None:
        """One request per connection: the next thing from the client is its close."""
        with contextlib.suppress(ConnectionError):
            await reader.read()
        received.closed.set()

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(WAIT_S)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(WAIT_S)
        self.loop.close()

    def wait_closed(self, received: Received, timeout: float) -> bool:
        async def wait() -> bool:
            try:
                await asyncio.wait_for(received.closed.wait(), timeout)
            except TimeoutError:
                return False
            return True

        return asyncio.run_coroutine_threadsafe(wait(), self.loop).result(timeout + WAIT_S)


@pytest.fixture
def raw_proxy(
    serve_asgi: Callable[..., str], tmp_path: Path
) -> Iterator[Callable[..., tuple[RawUpstream, ProxyServer]]]:
    """Factory: `raw_proxy(respond, **settings) -> (upstream, proxy)`."""
    upstreams: list[RawUpstream] = []

    def make(respond: Respond, **overrides: Any) -> tuple[RawUpstream, ProxyServer]:
        upstream = RawUpstream(respond)
        upstreams.append(upstream)
        settings = Settings(
            openai_endpoint=upstream.start(),
            upstream_auth="none",
            sink="jsonl",
            usage_log_path=str(tmp_path / f"usage-{len(upstreams)}.jsonl"),
            **overrides,
        )
        return upstream, ProxyServer(serve_asgi(create_proxy_app(lambda: settings)), settings)

    yield make
    for upstream in upstreams:
        upstream.stop()


def raw_post(
    base_url: str, body: bytes, headers: Sequence[bytes] = (), target: bytes = CHAT.encode()
) -> tuple[bytes, bytes]:
    """POSTs with exact header lines (plus Host, Content-Length and `Connection: close`); returns
    (head, body) as read."""
    lines = [b"POST " + target + b" HTTP/1.1", b"Host: proxy.example", *headers]
    lines += [b"Content-Length: " + str(len(body)).encode(), b"Connection: close"]
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=WAIT_S) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, response_body = data.partition(b"\r\n\r\n")
    return head, response_body


def http_response(status: bytes, headers: list[bytes], body: bytes) -> bytes:
    lines = [b"HTTP/1.1 " + status, *headers, b"content-length: " + str(len(body)).encode()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def answer(status: bytes, headers: list[bytes], body: bytes) -> Respond:
    async def respond(received: Received, writer: asyncio.StreamWriter) -> None:
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
        b"X-Caller-Name: Zo\xc3\xab \xe2\x9c\x93",  # UTF-8, non-ASCII
        b"x-ms-client-request-id: Abc-1",
        b"Content-Type: application/json",
        b"api-key: caller-key",
    ]
    head, _ = raw_post(proxy.base_url, body, headers, target)
    assert head.startswith(b"HTTP/1.1 200"), head
    (received,) = upstream.requests
    assert received.request_line == (
        b"POST /openai/deployments/my%20dep/chat/completions"
        b"?api-version=2025-04-01-preview&x=a%2Fb+c%7E HTTP/1.1"
    )
    names = [line.split(b":", 1)[0].lower() for line in received.header_lines]
    # The caller's forwardable headers (their bytes, in their order) and only what HTTP needs.
    assert sorted(names) == sorted(
        [
            b"host",
            b"x-caller-name",
            b"x-ms-client-request-id",
            b"content-type",
            b"content-length",
            b"accept-encoding",
        ]
    ), received.head
    lines = {line.split(b":", 1)[0].lower(): line for line in received.header_lines}
    assert lines[b"x-caller-name"].split(b": ", 1)[1] == b"Zo\xc3\xab \xe2\x9c\x93"
    assert lines[b"x-ms-client-request-id"].split(b": ", 1)[1] == b"Abc-1"
    assert lines[b"accept-encoding"].split(b": ", 1)[1] == b"identity"
    assert received.body == body
    assert proxy.records(1)[0]["response"]["status"] == 200


def test_a_header_value_that_is_not_utf8_is_a_400_in_azure_shape_and_recorded(
    raw_proxy: Any,
) -> None:
    upstream, proxy = raw_proxy(OK_JSON)
    # Latin-1: the upstream client cannot write it back as these bytes.
    head, response_body = raw_post(proxy.base_url, b'{"messages": []}', [b"x-caller-name: Zo\xeb"])
    assert head.startswith(b"HTTP/1.1 400"), head
    assert b'"code": "invalid_request"' in response_body
    assert b"x-caller-name" in response_body
    assert upstream.requests == []
    assert proxy.records(1)[0]["response"]["status"] == 400


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
    head, response_body = raw_post(proxy.base_url, b'{"messages": []}')
    lines = head.split(b"\r\n")
    assert b"x-ms-region: Zo\xc3\xab" in lines
    assert b"apim-request-id: caf\xe9" in lines
    assert b"x-ratelimit-remaining-tokens: 9999" in lines
    assert not any(line.lower().startswith(b"set-cookie") for line in lines)
    assert response_body == COMPLETION
    record = proxy.records(1)[0]
    assert record["response"]["region"] == "Zoë"


def _sse(*events: bytes) -> bytes:
    return b"".join(b"data: " + event + b"\n\n" for event in events)


def streaming(events: list[bytes], gap_s: float, *, end: bool = True) -> Respond:
    """A chunked SSE response, one event per chunk, `gap_s` apart; `end=False` stalls instead."""

    async def respond(received: Received, writer: asyncio.StreamWriter) -> None:
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
    async def truncated(received: Received, writer: asyncio.StreamWriter) -> None:
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

    async def barrier(received: Received, writer: asyncio.StreamWriter) -> None:
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
