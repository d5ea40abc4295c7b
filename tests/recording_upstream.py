"""A recording upstream on 127.0.0.1 that keeps the exact bytes of every request it receives.

Below any HTTP framework on purpose: confinement tests assert on the request line as it crossed
the socket (a framework, or the client's URL object, would already have normalised it). It speaks
just enough HTTP/1.1 for the proxy's client: keep-alive, Content-Length or chunked bodies, and one
fixed Azure-shaped chat completion as the answer, or any bytes a test writes (`respond`).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from aoai_proxy.asgi import create_app as create_proxy_app
from aoai_proxy.config import Settings

if TYPE_CHECKING:
    from tests.conftest import ProxyServer

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
MAX_HEAD_BYTES = 1 << 20

ANSWER = json.dumps(
    {
        "id": "chatcmpl-recorded",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ok"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
).encode()


@dataclass(frozen=True)
class ReceivedRequest:
    head: bytes  # request line and headers, exactly as received (CRLFs included)
    body: bytes  # the body after de-chunking

    @property
    def request_line(self) -> bytes:
        return self.head.split(b"\r\n", 1)[0]

    @property
    def method(self) -> bytes:
        return self.request_line.split(b" ")[0]

    @property
    def target(self) -> bytes:
        """The request target (path and query) exactly as it crossed the socket."""
        return self.request_line.split(b" ")[1]

    @property
    def path(self) -> bytes:
        return self.target.split(b"?", 1)[0]

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        lines = self.head.split(b"\r\n")[1:]
        pairs = [line.split(b":", 1) for line in lines if line]
        return [(name.strip().lower(), value.strip()) for name, value in pairs]

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name.lower()), None)


Respond = Callable[["ReceivedRequest", asyncio.StreamWriter], Awaitable[None]]


class RecordingUpstream:
    """With `respond`, each connection serves one request: `respond` writes the answer, and the
    client's next move, its close, is noted in `closed` even while `respond` still runs."""

    def __init__(self, respond: Respond | None = None) -> None:
        self.requests: list[ReceivedRequest] = []
        self.closed: list[ReceivedRequest] = []
        self._respond = respond
        self.base_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recording-upstream", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise TimeoutError("the recording upstream did not start")

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            done = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            done.result(STOP_TIMEOUT_S)
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(STOP_TIMEOUT_S)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._server = loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, limit=MAX_HEAD_BYTES)
        )
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request = ReceivedRequest(head, b"")
                body = await _read_body(reader, request)
                request = ReceivedRequest(head, body)
                self.requests.append(request)
                if self._respond is not None:
                    await self._answer(request, reader, writer)
                    return
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"x-ms-region: Local\r\ncontent-length: "
                    + str(len(ANSWER)).encode()
                    + b"\r\n\r\n"
                    + (b"" if request.method == b"HEAD" else ANSWER)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(
        self, request: ReceivedRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        assert self._respond is not None
        watcher = asyncio.ensure_future(reader.read())
        watcher.add_done_callback(lambda task: task.cancelled() or self.closed.append(request))
        try:
            await self._respond(request, writer)
            await writer.drain()
            await watcher
        finally:
            watcher.cancel()

    def wait_closed(self, request: ReceivedRequest, timeout: float) -> bool:
        """Whether the client closed the connection of `request` within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not any(closed is request for closed in self.closed):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True


async def _read_body(reader: asyncio.StreamReader, request: ReceivedRequest) -> bytes:
    if (request.header(b"transfer-encoding") or b"").lower() == b"chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return b"".join(chunks)
            chunks.append(chunk[:-2])
    length = int(request.header(b"content-length") or b"0")
    return await reader.readexactly(length)


@pytest.fixture
def recording_upstream() -> Iterator[RecordingUpstream]:
    """An HTTP/1.1 upstream on 127.0.0.1 that keeps every request's exact bytes."""
    upstream = RecordingUpstream()
    upstream.start()
    try:
        yield upstream
    finally:
        upstream.stop()


@pytest.fixture
def raw_proxy(
    serve_asgi: Callable[..., str], tmp_path: Path
) -> Iterator[Callable[..., tuple[RecordingUpstream, ProxyServer]]]:
    """Factory: `raw_proxy(respond, http=None, **settings) -> (upstream, proxy)`, the proxy in front
    of a raw recording upstream (tests/recording_upstream.py) that answers with `respond`'s bytes;
    `http` picks the proxy's server parser ("h11", "httptools")."""
    upstreams: list[RecordingUpstream] = []

    def make(
        respond: Respond, http: str | None = None, **overrides: Any
    ) -> tuple[RecordingUpstream, ProxyServer]:
        upstream = RecordingUpstream(respond)
        upstreams.append(upstream)
        upstream.start()
        settings = Settings(
            openai_endpoint=upstream.base_url,
            upstream_auth="none",
            sink="jsonl",
            usage_log_path=str(tmp_path / f"usage-{len(upstreams)}.jsonl"),
            **overrides,
        )
        app = create_proxy_app(lambda: settings)
        url = serve_asgi(app) if http is None else serve_asgi(app, http=http)
        from tests.conftest import ProxyServer  # conftest loads this module as a plugin

        return upstream, ProxyServer(url, settings)

    yield make
    for upstream in upstreams:
        upstream.stop()
