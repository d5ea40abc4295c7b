"""A lean load generator for the non-streamed throughput phase: each caller keeps one HTTP/1.1
connection open and sends the same prebuilt request on it back to back, its answers parsed by
httptools.

Why not httpx here: httpx spent about 2.7 ms of CPU per call (5 CPU-seconds for 1,900 calls),
more than the proxy and the simulator together. On 2 cores the load generator then set the pace,
and the proxy's CPU per call was measured at whatever call rate was left, where the fixed cost of
every wake-up is shared by few calls (docs/benchmarks.md). This one costs a few tens of
microseconds per call, so the phase measures the servers. `--load-client httpx` keeps the old one.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

import httptools


class _Connection(asyncio.Protocol):
    """One keep-alive connection: `call()` sends the request and returns the answer's status."""

    def __init__(self, request: bytes) -> None:
        self._request = request
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._answer: asyncio.Future[int] | None = None
        self._status = 0

    async def call(self) -> int:
        assert self._transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self._transport.write(self._request)
        return await self._answer

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(exc or ConnectionResetError("closed by the server"))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_message_complete(self) -> None:
        self._finish(None)

    def _finish(self, error: BaseException | None) -> None:
        answer, self._answer = self._answer, None
        if answer is None or answer.done():
            return
        if error is None:
            answer.set_result(self._status)
        else:
            answer.set_exception(error)


def build_request(base_url: str, target: str, body: object, headers: dict[str, str]) -> bytes:
    payload = json.dumps(body).encode()
    host = urlsplit(base_url).netloc
    lines = [f"POST {target} HTTP/1.1", f"host: {host}", "content-type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"content-length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def caller(
    base_url: str,
    request: bytes,
    deadline: float,
    latencies_ms: list[float],
    errors: dict[str, int],
    timeout_s: float,
) -> int:
    """Calls until `deadline` (time.monotonic), on one connection, reconnecting after a failure.
    Returns the number of calls started."""
    parts = urlsplit(base_url)
    loop = asyncio.get_running_loop()
    connection: _Connection | None = None
    started_calls = 0
    try:
        while time.monotonic() < deadline:
            started_calls += 1
            sent = time.monotonic_ns()
            try:
                if connection is None:
                    _, connection = await loop.create_connection(
                        lambda: _Connection(request), parts.hostname, parts.port
                    )
                status = await asyncio.wait_for(connection.call(), timeout_s)
            except (OSError, TimeoutError, httptools.HttpParserError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                if connection is not None:
                    connection.close()
                connection = None
                continue
            if status != 200:
                errors[f"status {status}"] = errors.get(f"status {status}", 0) + 1
                continue
            latencies_ms.append((time.monotonic_ns() - sent) / 1e6)
    finally:
        if connection is not None:
            connection.close()
    return started_calls
