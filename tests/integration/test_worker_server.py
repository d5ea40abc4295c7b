"""Which HTTP parser and event loop the Functions Python worker's server uses: its
`WebServer.serve()` (azurefunctions-extensions-http-fastapi) run as the worker runs it, on a loop
the worker created. This venv has both httptools and uvloop installed."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from azurefunctions.extensions.http.fastapi.web import WebServer
from starlette.types import Receive, Scope, Send

from aoai_bench_proxy import deployed_packages
from aoai_proxy.logs import quiet_libraries

WAIT_S = 10.0


def test_the_worker_server_parses_with_httptools_when_installed_and_keeps_the_workers_loop(
    free_port: int,
) -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await _lifespan(receive, send)
        seen["loop"] = type(asyncio.get_running_loop())
        # uvicorn hands the app its protocol's RequestResponseCycle.send (no wrapper between).
        seen["protocol"] = type(send.__self__).__module__  # type: ignore[attr-defined]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    with _worker_server(app, free_port) as url:
        assert httpx.get(url, timeout=2).content == b"ok"
    assert seen["protocol"] == "uvicorn.protocols.http.httptools_impl"
    # serve() runs on the loop it is given: uvloop, installed here, is never used.
    assert seen["loop"].__module__.startswith("asyncio.")


def test_the_workers_access_log_is_quiet_once_the_runtime_quiets_the_libraries(
    free_port: int,
) -> None:
    """uvicorn's defaults log every request at INFO and set that level when the server starts,
    after function_app.py quieted the libraries: the runtime, built at the first request, quiets
    them again (Runtime.create)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await _lifespan(receive, send)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    lines: list[logging.LogRecord] = []
    collector = logging.Handler()
    collector.emit = lines.append  # type: ignore[method-assign]
    access = logging.getLogger("uvicorn.access")
    quiet_libraries("warning")  # as function_app.py does at import
    try:
        with _worker_server(app, free_port) as url, httpx.Client(timeout=2) as client:
            access.addHandler(collector)
            client.get(url)
            assert len(lines) == 1, "uvicorn's defaults log each request"
            quiet_libraries("warning")  # Runtime.create, at the first proxied call
            client.get(url)
            assert len(lines) == 1
            quiet_libraries("info")
            client.get(url)
            assert len(lines) == 2, "LIBRARY_LOG_LEVEL=info brings the lines back"
    finally:
        access.removeHandler(collector)
        quiet_libraries("warning")


async def _lifespan(receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "lifespan.startup.complete"})
    await receive()
    await send({"type": "lifespan.shutdown.complete"})


@contextmanager
def _worker_server(app: Any, port: int) -> Iterator[str]:
    """The extension's WebServer serving `app` on a plain asyncio loop of its own thread."""

    class WebApp:
        @staticmethod
        def get_app() -> Any:
            return app

    loop = asyncio.new_event_loop()  # the worker's loop: plain asyncio
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(WebServer("127.0.0.1", port, WebApp()).serve(), loop)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                httpx.get(url, timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the worker-shaped server did not start"
                time.sleep(0.05)
        yield url
    finally:
        asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result(WAIT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT_S)
        loop.close()


async def _cancel_all() -> None:
    tasks = asyncio.all_tasks() - {asyncio.current_task()}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_the_function_app_installs_httptools_and_not_uvloop() -> None:
    """httptools is what the worker's server picks up (above); uvloop would only add weight."""
    packages = deployed_packages()
    assert "httptools" in packages
    assert "uvloop" not in packages
    assert Path(__file__).resolve().parents[2].joinpath("src", "requirements.txt").exists()
