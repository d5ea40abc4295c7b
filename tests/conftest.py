"""Shared fixtures: loopback servers, the simulator, the proxy under uvicorn."""

# --- recorded Azure OpenAI responses (lead) -------------------------------------------------------
import os as _os
from pathlib import Path as _Path

import pytest as _pytest

RECORDED_DIR = _Path(
    _os.environ.get(
        "AOAI_FIXTURES_DIR",
        str(_Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "azure-openai"),
    )
)


@_pytest.fixture(scope="session")
def recorded() -> _Path:
    """../shared/fixtures/azure-openai: real recorded Azure OpenAI responses (never copied here)."""
    if not (RECORDED_DIR / "SOURCES.md").exists():
        _pytest.skip(f"recorded Azure OpenAI fixtures not found at {RECORDED_DIR}")
    return RECORDED_DIR


# --- loopback servers and the Azure OpenAI simulator (simulator helper) ------------------------------
# serve_asgi(app) -> base_url, simulator (.base_url, .app, .recorder), simulator_factory(**settings):
# defined in tests/loopback.py, imported here so every test sees them.
from tests.loopback import (  # noqa: E402, F401
    SimulatorServer,
    serve_asgi,
    simulator,
    simulator_factory,
)


@_pytest.fixture
def simulator_fixtures_dir() -> _Path | None:
    """Where the simulator finds recordings for x-sim-replay (None when they are absent)."""
    return RECORDED_DIR if (RECORDED_DIR / "SOURCES.md").exists() else None


# --- the proxy under uvicorn (lead) ---------------------------------------------------------------
import dataclasses as _dataclasses  # noqa: E402
import json as _json  # noqa: E402
import socket as _socket  # noqa: E402
import time as _time  # noqa: E402
from collections.abc import Callable as _Callable  # noqa: E402
from typing import Any as _Any  # noqa: E402

from aoai_proxy.asgi import create_app as _create_proxy_app  # noqa: E402
from aoai_proxy.config import Settings as _Settings  # noqa: E402
from aoai_simulator import create_app as _create_simulator_app  # noqa: E402
from tests.loopback import TEST_SIMULATOR_SETTINGS  # noqa: E402
from tests.tap import ResponseTap  # noqa: E402

RECORDS_TIMEOUT_S = 10.0


@_dataclasses.dataclass(frozen=True)
class ProxyServer:
    base_url: str
    settings: _Settings

    def records(self, count: int) -> list[dict[str, _Any]]:
        """The usage records written so far, once there are `count` of them (exactly that many)."""
        path = _Path(self.settings.usage_log_path)
        deadline = _time.monotonic() + RECORDS_TIMEOUT_S
        lines: list[str] = []
        while _time.monotonic() < deadline:
            lines = path.read_text().splitlines() if path.exists() else []
            if len(lines) >= count:
                break
            _time.sleep(0.01)
        _time.sleep(0.05)  # a late extra record would be a bug: give it the chance to show
        lines = path.read_text().splitlines() if path.exists() else []
        assert len(lines) == count, f"expected {count} usage records, found {len(lines)}"
        return [_json.loads(line) for line in lines]


@_dataclasses.dataclass(frozen=True)
class TappedSimulator:
    """The simulator behind a ResponseTap: `.recorder` has what it received, `.tap` what it sent."""

    base_url: str
    app: _Any
    tap: ResponseTap

    @property
    def recorder(self) -> _Any:
        return self.app.state.recorder


@_pytest.fixture
def upstream(
    serve_asgi: _Callable[..., str], simulator_fixtures_dir: _Path | None
) -> TappedSimulator:
    """The simulator with fast test timing, its responses tapped for byte-exact comparisons."""
    settings = _dataclasses.replace(TEST_SIMULATOR_SETTINGS, fixtures_dir=simulator_fixtures_dir)
    app = _create_simulator_app(settings)
    tap = ResponseTap(app)
    return TappedSimulator(serve_asgi(tap), app, tap)


@_pytest.fixture
def proxy_factory(
    serve_asgi: _Callable[..., str], upstream: TappedSimulator, tmp_path: _Path
) -> _Callable[..., ProxyServer]:
    """Factory: `proxy_factory(**settings_overrides) -> ProxyServer` in front of the simulator."""
    created = 0

    def make(**overrides: _Any) -> ProxyServer:
        nonlocal created
        created += 1
        settings = _Settings(
            openai_endpoint=upstream.base_url,
            upstream_auth="none",
            sink="jsonl",
            usage_log_path=str(tmp_path / f"usage-{created}.jsonl"),
        )
        settings = _dataclasses.replace(settings, **overrides)
        app = _create_proxy_app(lambda: settings)
        return ProxyServer(serve_asgi(app), settings)

    return make


@_pytest.fixture
def proxy(proxy_factory: _Callable[..., ProxyServer]) -> ProxyServer:
    """The proxy (ASGI adapter) under uvicorn, upstream = the simulator, records in a JSONL file."""
    return proxy_factory()


@_pytest.fixture
def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with _socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- usage delivery: Event Hub double, dead-letter doubles, Azurite (delivery issue) -------------
# hub (HubDouble), memory_deadletter, azurite (session): defined in tests/delivery_doubles.py.
from tests.delivery_doubles import azurite, hub, memory_deadletter  # noqa: E402, F401
# --- end of usage delivery section ----------------------------------------------------------------
