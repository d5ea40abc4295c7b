"""Shared fixtures: recorded Azure responses, loopback servers, the simulator, the proxy under uvicorn,
and the usage-delivery doubles. Fixtures defined in helper modules are re-exported here."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.tap import ResponseTap

from aoai_proxy.asgi import create_app as create_proxy_app
from aoai_proxy.config import Settings
from aoai_simulator import create_app as create_simulator_app

# Fixtures kept in their own modules: serve_asgi, simulator, simulator_factory (loopback servers);
# hub, memory_deadletter, azurite (usage delivery); recording_upstream, raw_proxy (exact request bytes);
# identity_endpoint (managed identity); ingestion (the Logs Ingestion API).
pytest_plugins = [
    "tests.loopback",
    "tests.delivery_doubles",
    "tests.recording_upstream",
    "tests.identity_double",
    "tests.ingestion_double",
]

RECORDED_DIR = Path(
    os.environ.get(
        "AOAI_FIXTURES_DIR",
        str(Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "azure-openai"),
    )
)


def have_recordings() -> bool:
    return (RECORDED_DIR / "SOURCES.md").exists()


def recordings_skip_reason(count: int) -> str:
    """Said once for all of them in pytest's summary (identical reasons are grouped)."""
    return (
        "recorded Azure OpenAI responses are not included in this repository (they are kept "
        f"outside it); {count} tests skipped. The simulator tests cover the same behaviour."
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without the recordings, every test that reads them is skipped with one plain reason that
    says how many there are."""
    if have_recordings():
        return
    needing = [item for item in items if "recorded" in getattr(item, "fixturenames", ())]
    skip = pytest.mark.skip(reason=recordings_skip_reason(len(needing)))
    for item in needing:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def recorded() -> Path:
    """../shared/fixtures/azure-openai: real recorded Azure OpenAI responses (never copied here)."""
    if not have_recordings():  # tests that ask for it were skipped at collection already
        pytest.skip(recordings_skip_reason(1))
    return RECORDED_DIR


@pytest.fixture
def simulator_fixtures_dir() -> Path | None:
    """Where the simulator finds recordings for x-sim-replay (None when they are absent)."""
    return RECORDED_DIR if have_recordings() else None


# --- the proxy under uvicorn ------------------------------------------------------------------------

RECORDS_TIMEOUT_S = 10.0


@dataclasses.dataclass(frozen=True)
class ProxyServer:
    base_url: str
    settings: Settings

    def records(self, count: int) -> list[dict[str, Any]]:
        """The usage records written so far, once there are `count` of them (exactly that many)."""
        path = Path(self.settings.usage_log_path)
        deadline = time.monotonic() + RECORDS_TIMEOUT_S
        lines: list[str] = []
        while time.monotonic() < deadline:
            lines = _complete_lines(path)
            if len(lines) >= count:
                break
            time.sleep(0.01)
        time.sleep(0.05)  # a late extra record would be a bug: give it the chance to show
        lines = _complete_lines(path)
        assert len(lines) == count, f"expected {count} usage records, found {len(lines)}"
        return [json.loads(line) for line in lines]


def _complete_lines(path: Path) -> list[str]:
    """The JSONL file's finished lines: the sink may be appending the last one right now."""
    text = path.read_text() if path.exists() else ""
    return text[: text.rfind("\n") + 1].splitlines()


@dataclasses.dataclass(frozen=True)
class TappedSimulator:
    """The simulator behind a ResponseTap: `.recorder` has what it received, `.tap` what it sent."""

    base_url: str
    app: Any
    tap: ResponseTap

    @property
    def recorder(self) -> Any:
        return self.app.state.recorder


@pytest.fixture
def upstream(
    serve_asgi: Callable[..., str], simulator_fixtures_dir: Path | None
) -> TappedSimulator:
    """The simulator with fast test timing, its responses tapped for byte-exact comparisons."""
    from tests.loopback import TEST_SIMULATOR_SETTINGS  # a plugin module: imported once registered

    settings = dataclasses.replace(TEST_SIMULATOR_SETTINGS, fixtures_dir=simulator_fixtures_dir)
    app = create_simulator_app(settings)
    tap = ResponseTap(app)
    return TappedSimulator(serve_asgi(tap), app, tap)


@pytest.fixture
def proxy_factory(
    serve_asgi: Callable[..., str], upstream: TappedSimulator, tmp_path: Path
) -> Callable[..., ProxyServer]:
    """Factory: `proxy_factory(**settings_overrides) -> ProxyServer` in front of the simulator."""
    created = 0

    def make(**overrides: Any) -> ProxyServer:
        nonlocal created
        created += 1
        settings = Settings(
            openai_endpoint=upstream.base_url,
            upstream_auth="none",
            sink="jsonl",
            usage_log_path=str(tmp_path / f"usage-{created}.jsonl"),
        )
        settings = dataclasses.replace(settings, **overrides)
        app = create_proxy_app(lambda: settings)
        return ProxyServer(serve_asgi(app), settings)

    return make


@pytest.fixture
def proxy(proxy_factory: Callable[..., ProxyServer]) -> ProxyServer:
    """The proxy (ASGI adapter) under uvicorn, upstream = the simulator, records in a JSONL file."""
    return proxy_factory()


@pytest.fixture
def recorded_proxy(
    serve_asgi: Callable[..., str], recording_upstream: Any, tmp_path: Path
) -> ProxyServer:
    """The proxy under uvicorn in front of `recording_upstream` (the exact bytes it received)."""
    settings = Settings(
        openai_endpoint=recording_upstream.base_url,
        upstream_auth="none",
        sink="jsonl",
        usage_log_path=str(tmp_path / "usage-recorded.jsonl"),
    )
    return ProxyServer(serve_asgi(create_proxy_app(lambda: settings)), settings)


@pytest.fixture
def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
