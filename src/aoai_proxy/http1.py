"""An HTTP/1.1 client for one origin, shaped for a relay: the request goes out as the exact bytes
it is given, the response comes back as the exact header bytes and the body chunks as they arrive.

Why not a general client (docs/benchmarks.md): per call, aiohttp's request pipeline (request and
response objects, a writer task, cookie, tracing and timeout machinery) cost more CPU than the rest
of the proxy's own work, and the relay needs none of it. Here one asyncio protocol per connection
feeds httptools (llhttp, in C, which uvicorn already uses in the Functions worker); a response is a
list of chunks and one future; kept-alive connections wait in a LIFO list and are taken without
scanning the others; the read timeout is one timer per connection, re-armed only when it fires.

What it does not do, because the relay never asks for it: redirects, decompression, cookies,
proxies, `Expect: 100-continue` (1xx answers are skipped), upgrades, HTTP/2.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools

RawHeaders = list[tuple[bytes, bytes]]

# Methods a kept-alive connection that the server closed in the meantime may be retried on once,
# before any byte of the answer came (RFC 9112 section 9.3.1.1; aiohttp does the same).
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
# A reader that does not keep up (a slow client) stops the upstream socket past this many bytes.
_HIGH_WATER = 256 * 1024
_DNS_TTL_S = 10.0  # aiohttp's default: DNS changes are seen within seconds, not per connection


class ConnectFailed(Exception):
    """No connection to the origin could be made (refused, unreachable, name not resolved)."""


class ConnectTimedOut(ConnectFailed):
    """The origin did not accept a connection within the connect timeout."""


class ResponseFailed(Exception):
    """The connection failed, or the answer was not HTTP, before the response head was complete."""


class UpstreamBodyError(Exception):
    """The response body could not be read to its end."""

    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class Response:
    """A response whose head has arrived; its body is read with `read_chunk` or `read`, and it
    must be `close`d: back to the pool if read to its end, else the connection is closed (which is
    how the upstream learns that nobody reads the rest)."""

    __slots__ = (
        "_body",
        "_chunks",
        "_closed",
        "_connection",
        "_eof",
        "_error",
        "_paused",
        "_size",
        "_waiter",
        "headers",
        "raw_headers",
        "status",
    )

    def __init__(self, connection: _Connection, status: int, raw_headers: RawHeaders) -> None:
        self._connection = connection
        self.status = status
        self.raw_headers = raw_headers  # the exact wire bytes, in order
        # Lookups by lower-case name, the first value of a repeated header; values decoded as
        # UTF-8 (other bytes as U+FFFD), so a record keeps a region like "Zoë" readable.
        headers: dict[str, str] = {}
        for name, value in raw_headers:
            headers.setdefault(name.decode("latin-1").lower(), value.decode("utf-8", "replace"))
        self.headers: Mapping[str, str] = headers
        self._chunks: list[bytes] = []
        self._size = 0
        self._eof = False
        self._error: UpstreamBodyError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._body: bytes | None = None
        self._closed = False

    @property
    def is_event_stream(self) -> bool:
        return self.headers.get("content-type", "").startswith("text/event-stream")

    async def read_chunk(self) -> bytes:
        """Whatever body bytes have arrived (waiting for some), as sent: b"" at the end."""
        while True:
            chunks = self._chunks
            if chunks:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self._size = 0
                if self._paused:
                    self._paused = False
                    self._connection.resume_reading()
                return data
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            waiter = self._waiter = self._connection.loop.create_future()
            self._connection.waiting()
            try:
                await waiter
            finally:
                self._waiter = None

    async def read(self) -> bytes:
        """The whole body (kept: a second call returns it again)."""
        if self._body is None:
            chunks = []
            while chunk := await self.read_chunk():
                chunks.append(chunk)
            self._body = b"".join(chunks)
        return self._body

    def close(self) -> None:
        """Idempotent: the connection goes back to the pool (or is closed) once."""
        if not self._closed:
            self._closed = True
            # Paused (a reader fell behind): its socket would stay unread in the pool.
            reusable = self._eof and self._error is None and not self._paused
            self._connection.done(reusable=reusable)

    # -- fed by the connection ---------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > _HIGH_WATER and not self._paused:
            self._paused = True
            self._connection.pause_reading()
        self._wake()

    def _end(self) -> None:
        self._eof = True
        self._wake()

    def _fail(self, error: UpstreamBodyError) -> None:
        if not self._eof and self._error is None:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: a request at a time, its response fed by llhttp callbacks."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.loop = origin.loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.released_at = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._head: RawHeaders = []
        self._head_bytes = 0  # as received, while the head is incomplete
        self._head_size = 0  # of the complete header lines
        self._head_waiter: asyncio.Future[Response] | None = None
        self._response: Response | None = None
        self._informational = False  # a 1xx answer is being parsed: skipped
        self._skip_body = False  # HEAD: the answer has no body, whatever its length headers say
        self._until_close = False  # no length: the body ends when the connection does
        self._keep_alive = False
        self._received = False  # any byte of the answer to the current request
        self._read_timeout = 0.0
        self._last_data = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # -- driven by Origin and Response -------------------------------------------------------

    async def exchange(self, request: bytes, *, head_only: bool, read_timeout: float) -> Response:
        assert self.transport is not None
        if self.closed:
            raise ResponseFailed("the connection closed before the request")
        self._head, self._head_bytes, self._head_size, self._response = [], 0, 0, None
        self._skip_body, self._until_close, self._keep_alive = head_only, False, False
        self._received = False
        self._read_timeout = read_timeout
        self._last_data = self.loop.time()
        waiter: asyncio.Future[Response] = self.loop.create_future()
        self._head_waiter = waiter
        self.transport.write(request)
        self.waiting()
        try:
            return await waiter
        except BaseException:
            self.close()  # a request is in flight: this connection cannot carry another
            raise
        finally:
            self._head_waiter = None

    def waiting(self) -> None:
        """Someone waits for bytes: the read timeout runs from the last bytes that arrived."""
        if self._timer is None and not self.closed:
            self._timer = self.loop.call_at(self._last_data + self._read_timeout, self._timed)

    def _timed(self) -> None:
        self._timer = None
        response = self._response
        waited = self._head_waiter is not None or (
            response is not None and response._waiter is not None
        )
        if not waited:
            return  # armed again by the next wait
        if self.loop.time() - self._last_data >= self._read_timeout:
            self._fail(f"no data for {self._read_timeout:g} s", timed_out=True)
        else:
            self._timer = self.loop.call_at(self._last_data + self._read_timeout, self._timed)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self._last_data = self.loop.time()  # the read timeout does not count our own pause
            self.transport.resume_reading()

    def done(self, *, reusable: bool) -> None:
        """The response is finished with: keep the connection for the next request if it can."""
        self._response = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if reusable and self._keep_alive and not self._skip_body and not self.closed:
            self.origin.release(self)
        else:
            self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._last_data = self.loop.time()
        self._received = True
        response = self._response
        if response is None:
            if self._head_waiter is None:
                self.close()  # bytes nobody asked for: this connection is out of step
                return
            self._head_bytes += len(data)
        elif self._skip_body:
            return  # after a HEAD answer: the connection is not reused
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            cause = exc.__context__  # what a callback raised
            reason = str(cause) if isinstance(cause, ResponseFailed) else f"not HTTP: {exc}"
            self._fail(reason, timed_out=False)
            return
        if self._response is None and self._head_bytes > self.origin.max_head_bytes:
            self._fail("the response head is too large", timed_out=False)  # and still coming

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        response = self._response
        if response is not None and self._until_close and exc is None:
            response._end()
        else:
            self._fail(f"connection closed ({exc or 'by the server'})", timed_out=False)

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._response is not None:  # another answer on the same request: out of step
            raise ResponseFailed("the upstream sent bytes after its answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._response is not None:
            return  # a trailer field (after a chunked body): not part of the relayed head
        self._head.append((name, value))
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.origin.max_head_bytes:
            raise ResponseFailed("the response head is too large")
        if len(self._head) > self.origin.max_headers:
            raise ResponseFailed("the response has too many headers")

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            self._informational = True  # e.g. 103 Early Hints: the real answer follows
            self._head, self._head_size = [], 0
            return
        response = self._response = Response(self, status, self._head)
        self._head = []
        self._keep_alive = self._parser.should_keep_alive()
        if self._skip_body:
            response._end()
        else:
            headers = response.headers
            self._until_close = (
                "content-length" not in headers
                and "chunked" not in headers.get("transfer-encoding", "").lower()
                and status not in (204, 304)
            )
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def on_body(self, body: bytes) -> None:
        if self._response is not None and not self._skip_body:
            self._response._feed(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if self._response is not None:
            self._response._end()

    # -- failures ----------------------------------------------------------------------------

    def _fail(self, reason: str, *, timed_out: bool) -> None:
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError(reason) if timed_out else ResponseFailed(reason))
        elif self._response is not None:
            self._response._fail(UpstreamBodyError(reason, timed_out=timed_out))
        self.close()


class Origin:
    """The connections to one origin (scheme, host, port): made on demand without a limit (each
    stream holds one), kept alive for `keepalive_s` after their last answer."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        keepalive_s: float,
        max_head_bytes: int,
        max_headers: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.loop = asyncio.get_running_loop()
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        # The port only when it is not the scheme's (as browsers and aiohttp write Host).
        netloc = parts.netloc.rpartition("@")[2]
        if parts.port is not None and parts.port == (443 if parts.scheme == "https" else 80):
            netloc = netloc.rpartition(":")[0]
        self.host_header = netloc.encode("idna")
        self.path_prefix = parts.path.rstrip("/")
        self._ssl = (
            (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        )
        self.connect_timeout = connect_timeout
        self.keepalive_s = keepalive_s
        self.max_head_bytes = max_head_bytes
        self.max_headers = max_headers
        self._idle: deque[_Connection] = deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._addresses: list[tuple[socket.AddressFamily, str]] = []
        self._resolved_at = -_DNS_TTL_S
        self._resolving: asyncio.Future[list[tuple[socket.AddressFamily, str]]] | None = None

    async def request(self, method: bytes, request: bytes, *, read_timeout: float) -> Response:
        """Sends `request` (the whole message: head and body) and returns once the response head
        has arrived."""
        connection = self._idle_connection()
        if connection is not None:
            try:
                return await connection.exchange(
                    request, head_only=method == b"HEAD", read_timeout=read_timeout
                )
            except ResponseFailed:
                # The server closed the kept-alive connection as the request went out.
                if connection._received or method not in _IDEMPOTENT:
                    raise
        connection = await self._connect()
        return await connection.exchange(
            request, head_only=method == b"HEAD", read_timeout=read_timeout
        )

    def release(self, connection: _Connection) -> None:
        connection.released_at = self.loop.time()
        self._idle.append(connection)
        if self._sweep is None:
            self._sweep = self.loop.call_later(self.keepalive_s, self._close_expired)

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        while self._idle:
            self._idle.pop().close()

    def _idle_connection(self) -> _Connection | None:
        idle, oldest = self._idle, self.loop.time() - self.keepalive_s
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to be closing
            if not connection.closed and connection.released_at > oldest:
                return connection
            connection.close()
        return None

    def _close_expired(self) -> None:
        self._sweep = None
        idle, oldest = self._idle, self.loop.time() - self.keepalive_s
        while idle and (idle[0].closed or idle[0].released_at <= oldest):
            idle.popleft().close()
        if idle:
            self._sweep = self.loop.call_at(
                idle[0].released_at + self.keepalive_s, self._close_expired
            )

    async def _connect(self) -> _Connection:
        """A new connection; the connect timeout bounds the lookup and every address tried."""
        error: OSError | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                for family, address in await self._resolve():
                    try:
                        _, connection = await self.loop.create_connection(
                            lambda: _Connection(self),
                            address,
                            self.port,
                            family=family,
                            ssl=self._ssl,
                            server_hostname=self.host if self._ssl is not None else None,
                        )
                        return connection
                    except OSError as exc:  # refused, unreachable, TLS (ssl.SSLError)
                        error = exc
        except TimeoutError:
            raise ConnectTimedOut(
                f"{self.host}:{self.port} did not accept a connection within "
                f"{self.connect_timeout:g} s"
            ) from None
        raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: {error}") from error

    async def _resolve(self) -> list[tuple[socket.AddressFamily, str]]:
        """The origin's addresses, looked up at most once per _DNS_TTL_S, one lookup at a time."""
        if self.loop.time() - self._resolved_at < _DNS_TTL_S:
            return self._addresses
        resolving = self._resolving
        if resolving is None:
            resolving = self._resolving = asyncio.ensure_future(self._lookup())
            resolving.add_done_callback(self._resolved)
        return await asyncio.shield(resolving)

    def _resolved(self, resolving: asyncio.Future[list[tuple[socket.AddressFamily, str]]]) -> None:
        self._resolving = None
        if not resolving.cancelled():
            resolving.exception()  # retrieved: every waiter may have left (no "never retrieved")

    async def _lookup(self) -> list[tuple[socket.AddressFamily, str]]:
        try:
            infos = await self.loop.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except OSError as exc:
            raise ConnectFailed(f"cannot resolve {self.host}: {exc}") from exc
        # IPv4 first: Azure's outbound traffic (Functions included) is IPv4, and an IPv6 address
        # tried first on a network that drops it would spend the whole connect timeout.
        addresses: list[tuple[socket.AddressFamily, str]] = sorted(
            dict.fromkeys((info[0], str(info[4][0])) for info in infos),
            key=lambda family_address: family_address[0] != socket.AF_INET,
        )
        self._addresses, self._resolved_at = addresses, self.loop.time()
        return addresses
