"""Exact usage whatever API and api-version the client uses: the proxy under uvicorn in front of the
simulator (or a loopback upstream speaking the Assistants stream format), driven by the openai SDK
and raw HTTP."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.unit.test_usage_meter_shapes import assistants_stream

from aoai_bench.coverage import BEFORE_STREAM_USAGE, drive, lines, shares
from aoai_proxy.asgi import create_app as create_proxy_app
from aoai_proxy.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_non_streamed_responses_are_recorded_with_usage_id_and_model_on_both_routes(
    proxy: Any,
) -> None:
    v1 = openai.OpenAI(base_url=f"{proxy.base_url}/openai/v1/", api_key="unused", max_retries=0)
    dated = openai.AzureOpenAI(
        azure_endpoint=proxy.base_url,
        api_key="unused",
        api_version="2025-04-01-preview",
        max_retries=0,
    )
    answers = [
        client.responses.create(model="gpt-4o-mini", input="Tell me a joke")
        for client in (v1, dated)
    ]
    records = proxy.records(2)
    for answer, record in zip(answers, records, strict=True):
        assert answer.usage is not None
        assert record["request"]["operation"] == "responses"
        assert record["usage"]["source"] == "provider"
        assert record["usage"]["prompt_tokens"] == answer.usage.input_tokens
        assert record["usage"]["completion_tokens"] == answer.usage.output_tokens
        assert record["usage"]["total_tokens"] == answer.usage.total_tokens
        assert record["response"]["id"] == answer.id
        assert record["response"]["model"] == answer.model
        assert record["response"]["error_code"] is None
    assert [r["request"]["path"] for r in records] == ["/openai/v1/responses", "/openai/responses"]


def test_the_exact_usage_share_across_api_versions(proxy: Any) -> None:
    """The measurement of tools/bench.py usage-coverage, through the running proxy."""

    async def send() -> int:
        async with httpx.AsyncClient(base_url=proxy.base_url, timeout=10) as client:
            return await drive(client, calls_per_case=2)

    sent = asyncio.run(send())
    results = shares(proxy.records(sent))
    assert all(s.ok for s in results), "\n".join(lines(results))
    [old] = [s for s in results if s.api_version == BEFORE_STREAM_USAGE]
    assert old.share == 0.0
    assert old.reasons == {"api_version_before_injection_minimum": 2}


def test_the_2024_10_21_stream_is_injected_and_the_client_gets_azures_plain_bytes(
    proxy: Any, upstream: Any
) -> None:
    path = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        response = client.post(
            path, json={"messages": [{"role": "user", "content": "hi"}], "stream": True}
        )
    assert response.status_code == 200
    assert upstream.recorder.last().json()["stream_options"] == {"include_usage": True}
    assert b'"usage"' not in response.content
    assert proxy.records(1)[0]["usage"]["source"] == "injected"


def test_an_image_call_is_not_injected_and_says_why(proxy: Any, upstream: Any) -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    body = {"messages": [{"role": "user", "content": [image]}], "stream": True}
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        client.post(
            "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21", json=body
        )
    assert "stream_options" not in upstream.recorder.last().json()
    record = proxy.records(1)[0]
    assert record["usage"]["source"] == "none"
    assert record["usage"]["source_reason"] == "request_has_image_input"


def test_a_catch_all_event_stream_is_recorded_as_a_stream_with_its_usage(
    serve_asgi: Callable[..., str], tmp_path: Path
) -> None:
    stream = assistants_stream()

    async def runs(request: Request) -> Response:
        await request.body()
        return Response(stream, media_type="text/event-stream")

    upstream_url = serve_asgi(
        Starlette(routes=[Route("/openai/threads/{rest:path}", runs, methods=["POST"])])
    )
    log = tmp_path / "usage.jsonl"
    settings = Settings(
        openai_endpoint=upstream_url, upstream_auth="none", sink="jsonl", usage_log_path=str(log)
    )
    proxy_url = serve_asgi(create_proxy_app(lambda: settings))
    with httpx.Client(base_url=proxy_url, timeout=10) as client:
        response = client.post(
            "/openai/threads/thread_1/runs?api-version=2024-05-01-preview",
            json={"assistant_id": "asst_1", "stream": True},
        )
    assert response.content == stream  # relayed byte for byte
    [record] = [json.loads(line) for line in _lines(log, 1)]
    assert record["request"]["operation"] == "other"
    assert record["request"]["stream"] is True
    assert record["usage"]["source"] == "provider"
    assert record["usage"]["total_tokens"] == 66
    assert record["response"]["id"] == "run_abc123"


def _lines(path: Path, count: int) -> list[str]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = path.read_text().splitlines() if path.exists() else []
        if len(found) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"expected {count} records in {path}")


def simulator_table() -> list[tuple[str, bool]]:
    section = (ROOT / "docs" / "simulator.md").read_text().split("## Behaviour per api-version")[1]
    section = section.split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| (accepted|400) \|", section, flags=re.MULTILINE)
    assert len(rows) >= 8
    return [(version, answer == "accepted") for version, answer in rows]


@pytest.mark.parametrize(("api_version", "accepted"), simulator_table())
def test_the_simulator_follows_its_documented_api_version_table(
    simulator: Any, api_version: str, accepted: bool
) -> None:
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if api_version == "v1":
        url = f"{simulator.v1_url}chat/completions"
        body["model"] = "gpt-4o-mini"
    else:
        url = (
            f"{simulator.base_url}/openai/deployments/gpt-4o-mini/chat/completions"
            f"?api-version={api_version}"
        )
    with httpx.Client(timeout=10) as client:
        response = client.post(url, json=body)
    if accepted:
        assert response.status_code == 200
        assert b'"usage":{' in response.content
    else:
        assert response.status_code == 400
        assert "Unrecognized request argument supplied: stream_options" in response.text
