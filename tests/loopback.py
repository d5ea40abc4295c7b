"""Loopback servers for tests: any ASGI app under a real uvicorn on 127.0.0.1, and the Azure OpenAI
simulator on top of that. The fixtures are re-exported by tests/conftest.py."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette

from aoai_simulator import Recorder, SimulatorSettings, create_app

SERVER_START_TIMEOUT_S = 10.0
SERVER_STOP_TIMEOUT_S = 10.0


@pytest.fixture
def serve_asgi() -> Iterator[Callable[..., str]]:
    """Factory: `serve_asgi(app, **uvicorn_config) -> "http://127.0.0.1:<port>"`.

    Serves any ASGI app with a real uvicorn server on a free loopback port, in a background thread
    (with its own event loop), and stops every server it started when the test ends. The socket is
    bound before uvicorn starts, so there is no race for the port; every wait is bounded.
    """
    started: list[tuple[uvicorn.Server, threading.Thread, socket.socket]] = []

    def serve(app: Any, **config: Any) -> str:
        # IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets created with it; without it a
        # reused connection waits for delayed ACKs (~40 ms) and timing tests measure that.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        options: dict[str, Any] = {
            "log_level": "warning",
            "access_log": False,
            "ws": "none",
            "backlog": 2048,
            # Streams still open at teardown must not hold it up for long.
            "timeout_graceful_shutdown": 2,
        }
        options.update(config)
        server = uvicorn.Server(uvicorn.Config(app, **options))
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True
        )
        thread.start()
        started.append((server, thread, sock))
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"uvicorn on port {port} exited during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"uvicorn on port {port} did not start in {SERVER_START_TIMEOUT_S}s"
                )
            time.sleep(0.005)
        return f"http://127.0.0.1:{port}"

    yield serve

    for server, _, _ in started:
        server.should_exit = True
    for server, thread, sock in reversed(started):
        thread.join(SERVER_STOP_TIMEOUT_S)
        if thread.is_alive():
            server.force_exit = True
            thread.join(SERVER_STOP_TIMEOUT_S)
        sock.close()


@dataclass(frozen=True)
class SimulatorServer:
    """A running simulator: `base_url` (no trailing slash), the app and what it recorded."""

    base_url: str
    app: Starlette

    @property
    def recorder(self) -> Recorder:
        recorder: Recorder = self.app.state.recorder
        return recorder

    @property
    def settings(self) -> SimulatorSettings:
        settings: SimulatorSettings = self.app.state.settings
        return settings

    @property
    def v1_url(self) -> str:
        """Base URL for `OpenAI(base_url=...)`."""
        return f"{self.base_url}/openai/v1/"


# Fast but still asynchronous timing; timing tests override it per request (x-sim-ttft-ms,
# x-sim-token-ms) or pass their own settings.
TEST_SIMULATOR_SETTINGS = SimulatorSettings(ttft_ms=2.0, token_ms=1.0)


@pytest.fixture
def simulator_factory(
    serve_asgi: Callable[..., str], simulator_fixtures_dir: Path | None
) -> Callable[..., SimulatorServer]:
    """Factory: `simulator_factory(settings=None, **setting_overrides) -> SimulatorServer`.

    Replay (`x-sim-replay`) reads ../shared/fixtures/azure-openai when it exists."""

    def make(settings: SimulatorSettings | None = None, **overrides: Any) -> SimulatorServer:
        base = settings or TEST_SIMULATOR_SETTINGS
        if base.fixtures_dir is None and simulator_fixtures_dir is not None:
            base = replace(base, fixtures_dir=simulator_fixtures_dir)
        app = create_app(replace(base, **overrides))
        return SimulatorServer(serve_asgi(app), app)

    return make


@pytest.fixture
def simulator(simulator_factory: Callable[..., SimulatorServer]) -> SimulatorServer:
    """The Azure OpenAI simulator under uvicorn on 127.0.0.1 with fast test timing."""
    return simulator_factory()
