"""`scripts/dev` (tools/run_local.py) as a newcomer runs it: the offline mode serves every route,
the origin's /api/aoaifn included, and a busy port is reported before anything is printed."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_LOCAL = ROOT / "tools" / "run_local.py"
START_TIMEOUT_S = 20.0


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def command(port: int, simulator_port: int) -> list[str]:
    """What scripts/dev runs, on the given ports."""
    return [
        sys.executable,
        str(RUN_LOCAL),
        "--port",
        str(port),
        "--simulator-port",
        str(simulator_port),
    ]


@pytest.fixture
def offline(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port, simulator_port = free_ports(2)
    usage = tmp_path / "usage.jsonl"
    process = subprocess.Popen(
        [*command(port, simulator_port), "--usage-log", str(usage)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("tools/run_local.py did not start")
        yield base, usage
    finally:
        process.terminate()
        process.wait(10)
        assert process.stdout is not None
        process.stdout.close()


def test_the_offline_mode_serves_the_origins_aoaifn_with_no_setting(
    offline: tuple[str, Path],
) -> None:
    base, usage = offline
    body = {
        "messages": [{"role": "user", "content": "Tell me about Singapore in 1 sentence"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = httpx.post(f"{base}/api/aoaifn", json=body, timeout=10)
    assert response.status_code == 200
    assert response.text.endswith("data: [DONE]\n\n")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not usage.exists():
        time.sleep(0.05)
    assert '"route":"aoaifn"' in usage.read_text()


def test_a_busy_port_is_reported_before_the_banner() -> None:
    (simulator_port,) = free_ports(1)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            command(port, simulator_port),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode != 0
    assert "Proxy on" not in result.stdout  # no banner, no examples to paste
    assert f"127.0.0.1:{port}" in result.stderr
    assert "--port" in result.stderr
