"""A usage record always fits one Event Hubs event: every string copied from the call is capped (and
named in `truncated_fields`), and the largest possible record, content capture on, still fits."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from azure.eventhub import EventData, EventDataBatch
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.conftest import ProxyServer
from tests.raw_http import exchange

from aoai_proxy.asgi import create_app as create_proxy_app
from aoai_proxy.config import Settings
from aoai_proxy.record_bounds import MAX_ITEM_CHARS, MAX_LIST_ITEMS, MAX_STRING_CHARS, bounded
from aoai_proxy.sinks.events import MAX_EVENT_BYTES, encode

STANDARD_TIER_EVENT_BYTES = 1024 * 1024  # learn.microsoft.com/azure/event-hubs/event-hubs-quotas
# The character that costs the most as ASCII JSON: an astral code point, 12 bytes (\uXXXX\uXXXX).
WORST = "\U0001f600"
# In a header (latin-1 on the wire) the costliest is 6 bytes (\u00ff).
WORST_HEADER = "\xff"


def _hostile_upstream() -> Starlette:
    """Answers with every string it controls at its worst: ids, model, finish reasons, 1,000 choices."""

    async def answer(request: Request) -> Response:
        body = {
            "id": WORST * 100_000,
            "object": "chat.completion",
            "model": WORST * 100_000,
            "choices": [
                {
                    "index": i,
                    "finish_reason": WORST * 5_000,
                    "message": {"role": "assistant", "content": WORST * 100},
                }
                for i in range(1_000)
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        return Response(
            json.dumps(body),
            media_type="application/json",
            headers={
                # Within the client's 64 KB limit on a response head.
                "x-ms-region": WORST_HEADER * 10_000,
                "apim-request-id": WORST_HEADER * 10_000,
                "x-request-id": WORST_HEADER * 10_000,
            },
        )

    return Starlette(routes=[Route("/{path:path}", answer, methods=["POST"])])


def _fits_one_event(record: dict[str, Any]) -> None:
    encoded = encode(record)
    assert len(encoded.body) <= MAX_EVENT_BYTES
    # The SDK's own accounting, AMQP envelope and partition key included, against Standard's limit.
    batch = EventDataBatch(partition_key=encoded.partition_key)
    batch.add(EventData(encoded.body))
    assert batch.size_in_bytes <= STANDARD_TIER_EVENT_BYTES


def test_a_hostile_call_gives_a_capped_record_that_fits_one_event(
    serve_asgi: Callable[..., str], tmp_path: Path
) -> None:
    settings = Settings(
        openai_endpoint=serve_asgi(_hostile_upstream()),
        upstream_auth="none",
        sink="jsonl",
        usage_log_path=str(tmp_path / "usage.jsonl"),
        capture_content=True,
        capture_max_bytes=8 * 1024 * 1024,
        max_request_bytes=64 * 1024 * 1024,
    )
    proxy = ProxyServer(serve_asgi(create_proxy_app(lambda: settings)), settings)
    long_header = (WORST_HEADER * 20_000).encode("latin-1")
    headers = [
        (name.encode(), long_header)
        for name in (
            "x-apim-request-id",
            "x-apim-subscription-id",
            "x-apim-subscription-name",
            "x-apim-product-id",
            "x-apim-user-id",
            "x-apim-client-ip",
        )
    ]
    # traceparent is forwarded upstream, where a value that is not UTF-8 is refused (400): its
    # UTF-8 bytes (C3 BF) are just as costly in the record, 6 bytes each as ASCII JSON.
    headers.append((b"traceparent", (WORST_HEADER * 10_000).encode("utf-8")))
    headers.append((b"Content-Type", b"application/json"))
    prompt = json.dumps({"messages": [{"role": "user", "content": WORST * 1_000_000}]}).encode()
    target = b"/openai/deployments/" + b"d" * 64 + b"/chat/completions?api-version=2024-10-21"

    response = exchange(proxy.base_url, b"POST", target, headers, prompt, timeout=30)

    assert response is not None
    assert response.status == 200
    (record,) = proxy.records(1)
    assert set(record["truncated_fields"]) >= {
        "caller.request_id",
        "caller.subscription_id",
        "caller.subscription_name",
        "caller.product_id",
        "caller.user_id",
        "caller.client_ip",
        "request.traceparent",
        "response.id",
        "response.model",
        "response.region",
        "response.upstream_apim_request_id",
        "response.upstream_request_id",
        "response.finish_reasons",
        "response.finish_reasons[]",
    }
    assert len(record["caller"]["subscription_id"]) == MAX_STRING_CHARS
    assert len(record["response"]["finish_reasons"]) == MAX_LIST_ITEMS
    assert {len(reason) for reason in record["response"]["finish_reasons"]} == {MAX_ITEM_CHARS}
    _fits_one_event(record)


def _worst(value: Any) -> Any:
    """Every string at its worst (long, costliest characters), every array long."""
    if isinstance(value, str) or value is None:
        return WORST * 200_000
    if isinstance(value, dict):
        return {key: _worst(item) for key, item in value.items()}
    if isinstance(value, list):
        return [WORST * 200_000] * 5_000
    return value


def test_the_largest_possible_record_fits_one_event_with_capture_on(tmp_path: Path) -> None:
    """Any record the meter builds, with every field at its worst: caps, then the encoder's fit."""
    example = json.loads(
        (Path(__file__).resolve().parents[2] / "docs" / "usage-record.md")
        .read_text()
        .split("```json\n")[1]
        .split("\n```")[0]
    )
    example.pop("truncated_fields")
    worst = _worst(example)
    worst["capture"] = {
        part: {
            "text": WORST * 4_000_000,
            "bytes": 16_000_000,
            "truncated": True,
            "sha256": "0" * 64,
        }
        for part in ("prompt", "completion")
    }
    record = bounded(worst)
    assert "caller.subscription_id" in record["truncated_fields"]
    _fits_one_event(record)
    without_capture = {key: value for key, value in record.items() if key != "capture"}
    # Bounded well below the event: the captured texts always keep room to shrink into.
    assert len(json.dumps(without_capture, ensure_ascii=True)) < MAX_EVENT_BYTES // 2
