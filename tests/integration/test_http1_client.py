"""The upstream HTTP/1.1 client (aoai_proxy.http1) against scripted servers on 127.0.0.1: the cases
the proxy-level tests do not reach (keep-alive, bodiless answers, 1xx, bodies ended by a close,
malformed or oversized heads, retries, flow control, TLS).

Each server is a plain asyncio server in the test's own loop that answers with scripted bytes, so
what the client does with exactly those bytes is what is checked."""

from __future__ import annotations

import asyncio
import gc
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trustme

from aoai_proxy.config import Settings
from aoai_proxy.errors import UpstreamTimeout, UpstreamUnreachable
from aoai_proxy.http1 import ConnectFailed, ConnectTimedOut, Origin, UpstreamBodyError
from aoai_proxy.upstream import Upstream

pytestmark = pytest.mark.timeout(30)

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
WAIT_S = 5.0


class Server:
    """Counts connections and requests; `serve` handles each connection."""

    def __init__(self, serve: Serve) -> None:
        self.serve = serve
        self.connections = 0
        self.heads: list[bytes] = []
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                await reader.readexactly(int(line.split(b":")[1]))
        return head


@asynccontextmanager
async def serving(
    serve: Callable[[Server, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    ssl_context: ssl.SSLContext | None = None,
    host: str = "127.0.0.1",
) -> AsyncIterator[Server]:
    server = Server(lambda reader, writer: serve(server, reader, writer))
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=ssl_context)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"{'https' if ssl_context else 'http'}://{host}:{port}"
    try:
        yield server
    finally:
        listener.close()


def keep_answering(*answers: bytes) -> Any:
    """Answers each request with the next of `answers`, on whichever connection, keeping
    connections open."""
    left = list(answers)

    async def serve(server: Server, reader: asyncio.StreamReader, writer: Any) -> None:
        while left:
            await server.read_request(reader)
            writer.write(left.pop(0))
            await writer.drain()
        await reader.read()

    return serve


def ok(body: bytes = b"{}", *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 200 OK", b"content-type: application/json", *extra]
    head.append(b"content-length: " + str(len(body)).encode())
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def origin(url: str, **overrides: Any) -> Origin:
    options: dict[str, Any] = {
        "connect_timeout": 2.0,
        "keepalive_s": 4.0,
        "max_head_bytes": 100 * 1024,
        "max_headers": 256,
    }
    return Origin(url, **(options | overrides))


def request(method: bytes = b"POST", body: bytes = b"{}") -> bytes:
    length = b"content-length: " + str(len(body)).encode() + b"\r\n" if body else b""
    return method + b" /openai/x HTTP/1.1\r\nhost: test\r\n" + length + b"\r\n" + body


async def fetch(pool: Origin, method: bytes = b"POST", read_timeout: float = WAIT_S) -> Any:
    response = await pool.request(method, request(method), read_timeout=read_timeout)
    body = await response.read()
    response.close()
    return response, body


# -- keep-alive --------------------------------------------------------------------------------------


async def test_sequential_calls_share_one_kept_alive_connection() -> None:
    async with serving(keep_answering(ok(b"1"), ok(b"2"), ok(b"3"))) as server:
        pool = origin(server.url)
        bodies = [(await fetch(pool))[1] for _ in range(3)]
        pool.close()
    assert bodies == [b"1", b"2", b"3"]
    assert server.connections == 1


async def test_closing_a_response_twice_returns_its_connection_to_the_pool_once() -> None:
    """The proxy closes an answer it read to check for a stream_options refusal, then again once
    relayed: a connection pooled twice would carry two calls at once."""
    async with serving(keep_answering(ok(b"1"), ok(b"2"), ok(b"3"))) as server:
        pool = origin(server.url)
        response = await pool.request(b"POST", request(), read_timeout=WAIT_S)
        await response.read()
        response.close()
        response.close()
        first, second = await asyncio.gather(fetch(pool), fetch(pool))
        pool.close()
    assert sorted([first[1], second[1]]) == [b"2", b"3"]
    assert server.connections == 2  # the second concurrent call needed a connection of its own


async def test_an_idle_connection_past_the_keepalive_window_is_not_reused() -> None:
    async with serving(keep_answering(ok(b"1"), ok(b"2"))) as server:
        pool = origin(server.url, keepalive_s=0.2)
        await fetch(pool)
        await asyncio.sleep(0.4)
        await fetch(pool)
        pool.close()
    assert server.connections == 2


async def test_connection_close_from_the_server_is_honoured() -> None:
    async with serving(keep_answering(ok(b"1", b"connection: close"), ok(b"2"))) as server:
        pool = origin(server.url)
        await fetch(pool)
        await fetch(pool)
        pool.close()
    assert server.connections == 2


async def test_a_get_on_a_kept_alive_connection_the_server_closed_is_retried_once() -> None:
    async def serve(server: Server, reader: asyncio.StreamReader, writer: Any) -> None:
        await server.read_request(reader)
        writer.write(ok(b"first"))
        await writer.drain()
        if server.connections == 1:
            await server.read_request(reader)  # then close without answering

    async with serving(serve) as server:
        pool = origin(server.url)
        await fetch(pool, b"GET")
        _, body = await fetch(pool, b"GET")
        pool.close()
    assert body == b"first"
    assert server.connections == 2


async def test_a_post_on_a_connection_closed_before_any_answer_is_not_retried() -> None:
    async def serve(server: Server, reader: asyncio.StreamReader, writer: Any) -> None:
        await server.read_request(reader)
        if server.connections == 1:
            writer.write(ok())
            await writer.drain()
            await server.read_request(reader)  # then close without answering

    async with serving(serve) as server:
        settings = Settings(openai_endpoint=server.url, upstream_auth="none")
        upstream = Upstream(settings, None)
        deadline = asyncio.get_running_loop().time() + WAIT_S
        path = "/openai/deployments/d/chat/completions"
        first = await upstream.open("POST", path, "", [], b"{}", stream=False, deadline=deadline)
        await first.read()
        first.close()
        with pytest.raises(UpstreamUnreachable):
            await upstream.open("POST", path, "", [], b"{}", stream=False, deadline=deadline)
        await upstream.aclose()
    assert server.connections == 1  # POST is not idempotent: it may have been processed


# -- bodies ------------------------------------------------------------------------------------------


async def test_a_head_answer_ends_at_its_head_whatever_its_content_length() -> None:
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n"
    async with serving(keep_answering(answer, ok(b"after"))) as server:
        pool = origin(server.url)
        response, body = await fetch(pool, b"HEAD", read_timeout=1.0)
        _, after = await fetch(pool, b"GET")
        pool.close()
    assert (response.status, body, after) == (200, b"", b"after")
    assert server.connections == 2  # not reused after a HEAD


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
async def test_bodiless_statuses_end_at_their_head_and_keep_the_connection(status: bytes) -> None:
    async with serving(keep_answering(b"HTTP/1.1 " + status + b"\r\n\r\n", ok(b"2"))) as server:
        pool = origin(server.url)
        _, body = await fetch(pool, read_timeout=1.0)
        _, second = await fetch(pool)
        pool.close()
    assert (body, second) == (b"", b"2")
    assert server.connections == 1


async def test_informational_answers_are_skipped_for_the_final_one() -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nlink: </x>; rel=preload\r\n\r\n"
    async with serving(keep_answering(early + ok(b"final", b"x-ms-region: here"))) as server:
        pool = origin(server.url)
        response, body = await fetch(pool)
        pool.close()
    assert (response.status, body) == (200, b"final")
    assert [name for name, _ in response.raw_headers] == [
        b"content-type",
        b"x-ms-region",
        b"content-length",
    ]


async def test_a_body_without_length_ends_with_the_connection() -> None:
    async def serve(server: Server, reader: asyncio.StreamReader, writer: Any) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\npart one, ")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"part two")
        await writer.drain()

    async with serving(serve) as server:
        pool = origin(server.url)
        _, body = await fetch(pool)
        pool.close()
    assert body == b"part one, part two"


async def test_chunks_are_handed_on_as_they_arrive_not_at_the_end() -> None:
    second_sent = asyncio.Event()

    async def serve(server: Server, reader: asyncio.StreamReader, writer: Any) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await asyncio.sleep(0.3)
        second_sent.set()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with serving(serve) as server:
        pool = origin(server.url)
        response = await pool.request(b"POST", request(), read_timeout=WAIT_S)
        first = await response.read_chunk()
        was_sent = second_sent.is_set()
        rest = [await response.read_chunk(), await response.read_chunk()]
        response.close()
        pool.close()
    assert (first, was_sent, rest) == (b"first", False, [b"second", b""])


async def test_a_body_cut_short_is_a_body_error_not_a_short_body() -> None:
    async def serve(server: Server, reader: asyncio.StreamReader, writer: Any) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
        await writer.drain()

    async with serving(serve) as server:
        pool = origin(server.url)
        response = await pool.request(b"POST", request(), read_timeout=WAIT_S)
        with pytest.raises(UpstreamBodyError) as raised:
            await response.read()
        response.close()
        pool.close()
    assert not raised.value.timed_out


async def test_a_reader_that_falls_behind_pauses_the_socket_and_gets_every_byte() -> None:
    body = bytes(range(256)) * 16 * 1024  # 4 MiB

    async def serve(server: Server, reader: asyncio.StreamReader, writer: Any) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        await reader.read()

    async with serving(serve) as server:
        pool = origin(server.url)
        response = await pool.request(b"POST", request(), read_timeout=WAIT_S)
        await asyncio.sleep(0.3)  # the server writes while nobody reads
        transport = response._connection.transport
        assert transport is not None
        paused = not transport.is_reading()
        received = await response.read()
        response.close()
        pool.close()
    assert paused
    assert received == body


async def test_a_connection_paused_for_a_slow_reader_is_not_pooled() -> None:
    body = b"x" * (400 * 1024)  # over the high-water mark: reading pauses until the reader drains

    async def serve(server: Server, reader: asyncio.StreamReader, writer: Any) -> None:
        while True:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()

    async with serving(serve) as server:
        pool = origin(server.url)
        response = await pool.request(b"GET", request(b"GET", b""), read_timeout=WAIT_S)
        await asyncio.sleep(0.3)  # the whole body arrives; nobody reads it
        response.close()  # e.g. the client left mid-relay
        _, second = await fetch(pool, b"GET", read_timeout=2.0)
        pool.close()
    assert second == body
    assert server.connections == 2


async def test_bytes_after_the_answer_neither_join_its_head_nor_reach_the_next_call() -> None:
    extra = b"HTTP/1.1 200 OK\r\nretry-after: 999\r\ncontent-length: 10\r\n\r\n0123"
    async with serving(keep_answering(ok(b"hi") + extra, ok(b"next"))) as server:
        pool = origin(server.url)
        response, body = await fetch(pool)
        _, following = await fetch(pool)
        pool.close()
    assert body == b"hi"
    assert [name for name, _ in response.raw_headers] == [b"content-type", b"content-length"]
    assert following == b"next"
    assert server.connections == 2  # the out-of-step connection was not reused


async def test_chunked_trailers_are_not_response_headers() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\nretry-after: 999\r\nx-ratelimit-remaining-tokens: 0\r\n\r\n"
    )
    async with serving(keep_answering(answer, ok(b"next"))) as server:
        pool = origin(server.url)
        response, body = await fetch(pool)
        _, following = await fetch(pool)
        pool.close()
    assert (body, following) == (b"{}", b"next")
    assert [name for name, _ in response.raw_headers] == [b"content-type", b"transfer-encoding"]
    assert server.connections == 1


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://example.openai.azure.com:443/", b"example.openai.azure.com"),
        ("https://example.openai.azure.com:8443", b"example.openai.azure.com:8443"),
        ("http://127.0.0.1:80", b"127.0.0.1"),
        ("http://[::1]:8080/prefix/", b"[::1]:8080"),
    ],
)
async def test_the_host_header_names_the_port_only_when_it_is_not_the_schemes(
    url: str, host: bytes
) -> None:
    assert origin(url).host_header == host


async def test_ipv4_addresses_are_tried_first(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def lookup(*args: Any, **kwargs: Any) -> Any:
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:db8::1", 443, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", 443)),
        ]

    monkeypatch.setattr(loop, "getaddrinfo", lookup)
    assert await origin("https://example.openai.azure.com")._resolve() == [
        (socket.AF_INET, "192.0.2.1"),
        (socket.AF_INET6, "2001:db8::1"),
    ]


async def test_a_failed_lookup_nobody_waits_for_leaves_no_unretrieved_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: errors.append(context))

    async def failing(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.1)
        raise OSError("name not resolved")

    monkeypatch.setattr(loop, "getaddrinfo", failing)
    pool = origin("https://example.openai.azure.com")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.02):  # the caller leaves before the lookup fails
            await pool.request(b"GET", request(b"GET", b""), read_timeout=WAIT_S)
    await asyncio.sleep(0.2)
    gc.collect()
    assert errors == []


# -- failures ----------------------------------------------------------------------------------------


async def test_a_head_over_the_limit_fails_before_any_body() -> None:
    huge = b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 4096 + b"\r\ncontent-length: 0\r\n\r\n"
    async with serving(keep_answering(huge)) as server:
        pool = origin(server.url, max_head_bytes=1024)
        with pytest.raises(Exception, match="too large"):
            await fetch(pool)
        pool.close()


async def test_too_many_header_lines_fail() -> None:
    lines = b"".join(b"x-h%d: v\r\n" % i for i in range(20))
    async with serving(keep_answering(b"HTTP/1.1 200 OK\r\n" + lines + b"\r\n")) as server:
        pool = origin(server.url, max_headers=10)
        with pytest.raises(Exception, match="too many headers"):
            await fetch(pool)
        pool.close()


async def test_an_answer_that_is_not_http_is_a_502() -> None:
    async with serving(keep_answering(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")) as server:
        settings = Settings(openai_endpoint=server.url, upstream_auth="none")
        upstream = Upstream(settings, None)
        deadline = asyncio.get_running_loop().time() + WAIT_S
        with pytest.raises(UpstreamUnreachable):
            await upstream.open(
                "GET", "/openai/models", "", [], b"", stream=False, deadline=deadline
            )
        await upstream.aclose()


async def test_an_upstream_silent_before_its_head_times_out_as_a_504() -> None:
    async def serve(server: Server, reader: asyncio.StreamReader, writer: Any) -> None:
        await server.read_request(reader)
        await reader.read()

    async with serving(serve) as server:
        settings = Settings(openai_endpoint=server.url, upstream_auth="none", response_timeout=0.3)
        upstream = Upstream(settings, None)
        deadline = asyncio.get_running_loop().time() + WAIT_S
        with pytest.raises(UpstreamTimeout):
            await upstream.open(
                "GET", "/openai/models", "", [], b"", stream=False, deadline=deadline
            )
        await upstream.aclose()


async def test_a_refused_connection_is_connect_failed() -> None:
    async with serving(keep_answering()) as server:
        url = server.url
    pool = origin(url)  # nobody listens there any more
    with pytest.raises(ConnectFailed):
        await pool.request(b"GET", request(b"GET", b""), read_timeout=WAIT_S)


async def test_a_connection_not_accepted_in_time_is_connect_timed_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A SYN nobody answers cannot be made on loopback: the loop's connect never completes."""
    loop = asyncio.get_running_loop()

    async def never(*args: Any, **kwargs: Any) -> Any:
        await asyncio.Event().wait()

    monkeypatch.setattr(loop, "create_connection", never)
    pool = origin("http://127.0.0.1:9", connect_timeout=0.2)
    with pytest.raises(ConnectTimedOut):
        await pool.request(b"GET", request(b"GET", b""), read_timeout=WAIT_S)


# -- TLS ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


async def test_https_checks_the_certificate_for_the_host_name(
    certificate_authority: trustme.CA,
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("localhost").configure_cert(server_context)
    trusting = ssl.create_default_context()
    certificate_authority.configure_trust(trusting)
    async with serving(
        keep_answering(ok(b"secure"), ok(b"again")), server_context, "localhost"
    ) as server:
        pool = origin(server.url, ssl_context=trusting)
        _, first = await fetch(pool)
        _, second = await fetch(pool)
        pool.close()
        untrusting = origin(server.url, ssl_context=ssl.create_default_context())
        with pytest.raises(ConnectFailed):
            await fetch(untrusting)
    assert (first, second) == (b"secure", b"again")
    assert server.connections == 1  # kept alive for both; the refused handshake never got in


async def test_a_lookup_that_hangs_is_bounded_by_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()

    async def hanging(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(30)

    monkeypatch.setattr(loop, "getaddrinfo", hanging)
    pool = origin("https://example.openai.azure.com", connect_timeout=0.2)
    started = loop.time()
    with pytest.raises(ConnectTimedOut):
        await pool.request(b"GET", request(b"GET", b""), read_timeout=WAIT_S)
    assert loop.time() - started < 2
