"""asyncio's socket reads, once the runtime is built: at most 64 KiB each, every byte delivered."""

from __future__ import annotations

import asyncio
import os
from asyncio import selector_events
from pathlib import Path

import pytest

from aoai_proxy.config import Settings
from aoai_proxy.runtime import RuntimeHolder
from aoai_proxy.socket_reads import READ_BYTES

TRANSPORT = selector_events._SelectorSocketTransport  # type: ignore[attr-defined]


class _Collect(asyncio.Protocol):
    def __init__(self, done: asyncio.Future[None]) -> None:
        self.chunks: list[bytes] = []
        self.done = done

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)

    def eof_received(self) -> None:
        self.done.set_result(None)


async def test_the_runtime_makes_asyncio_read_sockets_in_64_kib_pieces_losing_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # asyncio's own 256 KiB (inherited), as before any runtime of this test process set it
    if "max_size" in vars(TRANSPORT):
        monkeypatch.delattr(TRANSPORT, "max_size")
    assert TRANSPORT.max_size > READ_BYTES
    settings = Settings(
        openai_endpoint="http://127.0.0.1:9",
        upstream_auth="none",
        sink="jsonl",
        usage_log_path=str(tmp_path / "usage.jsonl"),
    )
    holder = RuntimeHolder(lambda: settings)
    await holder.get()
    await holder.aclose()
    assert TRANSPORT.max_size == READ_BYTES

    loop = asyncio.get_running_loop()
    assert isinstance(loop, asyncio.SelectorEventLoop)  # asyncio's own, as in the Functions worker
    payload = os.urandom(1024 * 1024)
    done: asyncio.Future[None] = loop.create_future()
    received = _Collect(done)
    server = await loop.create_server(lambda: received, "127.0.0.1", 0)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.write(payload)
        writer.write_eof()
        await asyncio.wait_for(done, 10)
        writer.close()
    finally:
        server.close()
    assert b"".join(received.chunks) == payload
    assert max(len(chunk) for chunk in received.chunks) <= READ_BYTES
