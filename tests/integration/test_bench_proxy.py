"""The proxy process the benchmark measures loads what the proxy (and, worker-shaped, the Functions
HTTP extension's FastAPI stack) loads, and none of the bench's own modules: its memory is the
proxy's. The process's sys.modules is read after it served a streamed and a non-streamed call."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from tests.loopback import SimulatorServer

from aoai_bench import load
from aoai_bench.servers import start_proxy
from aoai_bench_proxy import MODULES_ENV
from aoai_proxy.config import Settings

BENCH_ONLY = ("httpx", "httpcore", "aoai_bench", "aoai_simulator")


@pytest.mark.parametrize("shape", ["local", "worker"])
def test_the_bench_proxy_process_loads_none_of_the_bench(
    shape: str, simulator: SimulatorServer, tmp_path: Path
) -> None:
    usage = tmp_path / "usage.jsonl"
    modules_path = tmp_path / "modules.txt"
    settings = Settings(
        openai_endpoint=simulator.base_url,
        upstream_auth="none",
        sink="jsonl",
        usage_log_path=str(usage),
    )
    proxy = start_proxy(settings, shape, env={MODULES_ENV: str(modules_path)})  # type: ignore[arg-type]
    try:
        with httpx.Client(base_url=proxy.url, timeout=10, trust_env=False) as client:
            assert client.post(load.CHAT_PATH, json=load.JSON_BODY).status_code == 200
            with client.stream("POST", load.CHAT_PATH, json=load.STREAM_BODY) as response:
                assert response.status_code == 200
                assert b"[DONE]" in response.read()
    finally:
        proxy.stop()
    modules = set(modules_path.read_text().splitlines())
    # The proxy really served from this process (the control for the absences below).
    assert {"aoai_proxy.proxy", "aoai_proxy.sinks.jsonl", "aoai_proxy.http1", "uvicorn"} <= modules
    assert "aiohttp" not in modules  # the upstream client is http1; aiohttp only for Azure SDKs
    assert ("fastapi" in modules) == (shape == "worker")
    loaded = sorted(m for m in modules if m.split(".")[0] in BENCH_ONLY)
    assert loaded == []
    assert len(usage.read_text().splitlines()) == 2
    assert all(json.loads(line)["usage"] for line in usage.read_text().splitlines())
