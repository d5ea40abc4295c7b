"""Failures on demand, auth, replay, the recorder and timing: what the proxy's tests lean on."""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest
from tests.integration.sse_shapes import split_events
from tests.loopback import SimulatorServer

TIMEOUT = httpx.Timeout(10.0)
CHAT_BODY = {"messages": [{"role": "user", "content": "hello"}]}
ROOT = Path(__file__).resolve().parents[2]


def chat_url(sim: SimulatorServer, api_version: str = "2024-10-21") -> str:
    return (
        f"{sim.base_url}/openai/deployments/gpt-4o-mini/chat/completions?api-version={api_version}"
    )


def post(
    sim: SimulatorServer, body: object = CHAT_BODY, url: str | None = None, **headers: str
) -> httpx.Response:
    with httpx.Client(timeout=TIMEOUT) as client:
        return client.post(url or chat_url(sim), json=body, headers=headers)


def test_429_carries_retry_headers_in_the_recorded_shape(
    simulator: SimulatorServer, recorded: Path
) -> None:
    response = post(simulator, **{"x-sim-status": "429", "x-sim-retry-after": "7"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.headers["retry-after-ms"] == "7000"
    assert response.headers["x-ratelimit-remaining-tokens"] == "0"
    assert response.content.startswith(
        b'{"error":{"code":"429","message": "Requests to the ChatCompletions_Create'
    )
    meta = json.loads((recorded / "error_429.meta.json").read_text())
    for name, _ in meta["headers"]:
        assert name.lower() in response.headers, name


def test_sdk_sees_rate_limit_content_filter_and_auth_errors(simulator: SimulatorServer) -> None:
    with openai.AzureOpenAI(
        azure_endpoint=simulator.base_url, api_key="unused", api_version="2024-10-21", max_retries=0
    ) as client:
        create = client.chat.completions.create
        messages = [{"role": "user", "content": "x"}]
        with pytest.raises(openai.RateLimitError):
            create(model="d", messages=messages, extra_headers={"x-sim-status": "429"})  # type: ignore[arg-type]
        with pytest.raises(openai.BadRequestError) as filtered:
            create(model="d", messages=messages, extra_headers={"x-sim-status": "400"})  # type: ignore[arg-type]
        assert filtered.value.code == "content_filter"
        with pytest.raises(openai.AuthenticationError):
            create(model="d", messages=messages, extra_headers={"x-sim-status": "401"})  # type: ignore[arg-type]
        with pytest.raises(openai.NotFoundError):
            create(model="d", messages=messages, extra_headers={"x-sim-status": "404"})  # type: ignore[arg-type]
        with pytest.raises(openai.InternalServerError):
            create(model="d", messages=messages, extra_headers={"x-sim-status": "500"})  # type: ignore[arg-type]


def test_errors_reuse_azures_bodies(simulator: SimulatorServer, recorded: Path) -> None:
    filtered = post(simulator, **{"x-sim-content-filter": "prompt"})
    live = json.loads((recorded / "error_400_content_filter.json").read_bytes())
    assert filtered.status_code == 400
    assert filtered.json() == live
    meta = json.loads((recorded / "error_400_content_filter.meta.json").read_text())
    assert {n.lower() for n, _ in meta["headers"]} <= set(filtered.headers)
    assert filtered.headers["x-ms-deployment-name"] == "gpt-4o-mini"
    unauthorized = post(simulator, **{"x-sim-status": "401"})
    assert unauthorized.content == (recorded / "error_401.json").read_bytes()
    no_version = post(simulator, url=f"{simulator.base_url}/openai/deployments/d/chat/completions")
    assert no_version.status_code == 404
    assert no_version.content == (recorded / "error_404_resource_not_found.json").read_bytes()


def test_stream_options_is_refused_by_api_versions_that_predate_it(
    simulator: SimulatorServer,
) -> None:
    body = {**CHAT_BODY, "stream": True, "stream_options": {"include_usage": True}}
    old = post(simulator, body, url=chat_url(simulator, "2024-06-01"))
    assert old.status_code == 400
    error = old.json()["error"]
    assert error["message"].startswith("Unrecognized request argument supplied: stream_options")
    assert error["type"] == "invalid_request_error"
    assert post(simulator, body, url=chat_url(simulator, "2024-09-01-preview")).status_code == 200
    assert post(simulator, body, url=chat_url(simulator, "2025-04-01-preview")).status_code == 200
    not_streaming = post(simulator, {**CHAT_BODY, "stream_options": {"include_usage": True}})
    assert not_streaming.status_code == 400
    completions = f"{simulator.base_url}/openai/deployments/d/completions?api-version=2024-10-21"
    legacy = post(simulator, {"prompt": "x", "stream": True, "stream_options": {}}, url=completions)
    assert legacy.status_code == 400


def test_fail_after_cuts_the_connection_mid_stream(simulator: SimulatorServer) -> None:
    body = {**CHAT_BODY, "stream": True}
    chunks: list[bytes] = []
    with (
        httpx.Client(timeout=TIMEOUT) as client,
        client.stream(
            "POST", chat_url(simulator), json=body, headers={"x-sim-fail-after": "3"}
        ) as response,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        chunks.extend(response.iter_bytes())
    received = b"".join(chunks)
    events = split_events(received)
    # prompt filter + role + 3 content events, then nothing: no finish chunk, no [DONE].
    assert len(events) == 5
    record = simulator.recorder.last()
    assert record.cut
    assert not record.completed


def test_client_disconnect_is_recorded(simulator: SimulatorServer) -> None:
    body = {**CHAT_BODY, "stream": True}
    headers = {"x-sim-token-ms": "50", "x-sim-tokens": "100"}
    with (
        httpx.Client(timeout=TIMEOUT) as client,
        client.stream("POST", chat_url(simulator), json=body, headers=headers) as response,
    ):
        next(response.iter_bytes())
    record = simulator.recorder.last()
    deadline = time.monotonic() + 5
    while not record.disconnected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert record.disconnected
    assert not record.completed
    assert len(record.events) < 20


def test_bearer_token_is_required_when_configured(
    simulator_factory: Callable[..., SimulatorServer],
) -> None:
    sim = simulator_factory(required_bearer_token="secret-token")
    assert post(sim).status_code == 401
    assert post(sim, **{"Authorization": "Bearer wrong"}).status_code == 401
    assert post(sim, **{"Authorization": "Bearer secret-token"}).status_code == 200


def test_recorder_keeps_what_upstream_received(simulator: SimulatorServer) -> None:
    post(simulator, {**CHAT_BODY, "stream": True}, **{"x-custom": "1"})
    record = simulator.recorder.last()
    assert record.method == "POST"
    assert record.path == "/openai/deployments/gpt-4o-mini/chat/completions"
    assert record.query == "api-version=2024-10-21"
    assert record.header("x-custom") == "1"
    assert record.json()["stream"] is True
    assert record.status == 200
    assert record.completed
    assert (
        len(record.event_times) == len(record.events) == 24
    )  # filter, role, 20 tokens, finish, DONE


def test_recorder_is_bounded(simulator_factory: Callable[..., SimulatorServer]) -> None:
    sim = simulator_factory(recorder_size=3)
    for _ in range(5):
        post(sim)
    assert len(sim.recorder) == 3


@pytest.mark.parametrize("name", ["chat_stream", "tools_stream_usage", "long_stream"])
def test_replay_sends_the_recorded_bytes_event_by_event(
    simulator: SimulatorServer, recorded: Path, name: str
) -> None:
    response = post(simulator, **{"x-sim-replay": name, "x-sim-token-ms": "1"})
    assert response.content == (recorded / f"{name}.sse").read_bytes()
    meta = json.loads((recorded / f"{name}.meta.json").read_text())
    assert response.headers["apim-request-id"] == dict(meta["headers"])["apim-request-id"]
    record = simulator.recorder.last()
    assert len(record.events) == len(split_events(response.content))


def test_replay_of_a_json_recording_keeps_status_and_body(
    simulator: SimulatorServer, recorded: Path
) -> None:
    response = post(simulator, **{"x-sim-replay": "error_429"})
    assert response.status_code == 429
    assert response.content == (recorded / "error_429.json").read_bytes()
    assert response.headers["retry-after"] == "22"
    assert post(simulator, **{"x-sim-replay": "../SOURCES"}).status_code == 400


def test_events_follow_ttft_then_token_interval(simulator: SimulatorServer) -> None:
    headers = {"x-sim-ttft-ms": "120", "x-sim-token-ms": "20", "x-sim-tokens": "10"}
    post(simulator, {**CHAT_BODY, "stream": True}, **headers)
    record = simulator.recorder.last()
    first = record.event_times[0] - record.received_at
    gaps = [b - a for a, b in zip(record.event_times, record.event_times[1:], strict=False)]
    assert 0.115 <= first < 0.3
    assert 0.018 <= statistics.median(gaps) < 0.04
    assert record.event_times[-1] - record.event_times[0] >= 0.02 * (len(gaps) - 1)


def test_non_streamed_answer_takes_the_generation_time(simulator: SimulatorServer) -> None:
    started = time.monotonic()
    post(simulator, **{"x-sim-ttft-ms": "50", "x-sim-token-ms": "5", "x-sim-tokens": "20"})
    assert time.monotonic() - started >= 0.15


async def test_a_thousand_concurrent_streams_complete(simulator: SimulatorServer) -> None:
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=0)
    body = {**CHAT_BODY, "stream": True}
    headers = {"x-sim-ttft-ms": "50", "x-sim-token-ms": "10", "x-sim-tokens": "10"}
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0), limits=limits) as client:

        async def one() -> bytes:
            response = await client.post(chat_url(simulator), json=body, headers=headers)
            return response.content

        bodies = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(1000))), 90)
    assert all(b.endswith(b"data: [DONE]\n\n") for b in bodies)
    assert sum(r.completed for r in simulator.recorder.requests) == 1000


def test_cli_serves_from_the_repository_root() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [
        sys.executable,
        "tools/aoai_simulator",
        "--port",
        str(port),
        "--ttft-ms",
        "1",
        "--token-ms",
        "0",
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                response = httpx.post(
                    f"http://127.0.0.1:{port}/openai/v1/chat/completions",
                    json={"model": "m", **CHAT_BODY},
                    timeout=2,
                )
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        assert response.status_code == 200
        assert response.json()["object"] == "chat.completion"
    finally:
        process.terminate()
        process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()


def test_v1_calls_need_a_model(simulator: SimulatorServer) -> None:
    response = post(simulator, CHAT_BODY, url=f"{simulator.v1_url}chat/completions")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"
