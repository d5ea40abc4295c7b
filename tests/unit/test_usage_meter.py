"""The meter turns what the relay saw into one exact record, from real Azure responses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.calls import parse_call

from aoai_proxy.routes import PROXY_ROUTES
from aoai_proxy.sse import SSEFramer, parse_event
from aoai_proxy.usage import SCHEMA_VERSION, UsageMeter, now_ms

ROUTES = {spec.name: spec for spec in PROXY_ROUTES}


def meter_for(body: dict[str, Any], route: str = "chat_completions", **kw: Any) -> UsageMeter:
    call = parse_call(
        spec=ROUTES[route],
        method="POST",
        path_params={"deployment": "gpt-4o-mini"}
        if "deployments" in ROUTES[route].template
        else {},
        query="api-version=2024-10-21",
        headers={
            "x-apim-subscription-id": "sub-1",
            "x-apim-request-id": "apim-1",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        },
        body=json.dumps(body).encode(),
    )
    return UsageMeter(
        call, instance_id="test", capture_limit=kw.get("capture_limit"), started_ms=0.0
    )


def feed_stream(meter: UsageMeter, stream: bytes) -> None:
    framer = SSEFramer()
    for position, raw in enumerate(framer.feed(stream)):
        event = parse_event(raw)
        if event is not None:
            meter.observe_event(event, received_ms=float(position * 10))


def test_stream_with_provider_usage_gives_exact_tokens(recorded: Path) -> None:
    meter = meter_for({"stream": True, "stream_options": {"include_usage": True}})
    meter.upstream_headers(200, {"x-ms-region": "East US", "apim-request-id": "up-1"})
    feed_stream(meter, (recorded / "chat_stream_usage.sse").read_bytes())
    record = meter.finish()
    assert record["type"] == "usage"
    assert record["schema_version"] == SCHEMA_VERSION
    assert record["usage"] == {
        "prompt_tokens": 16,
        "completion_tokens": 11,
        "total_tokens": 27,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "source": "provider",
        "source_reason": None,
    }
    assert record["response"]["model"] == "gpt-4o-mini-2024-07-18"
    assert record["response"]["id"] == "chatcmpl-CpWAArSDvggw47fbheteoSkzXl1uH"
    assert record["response"]["finish_reasons"] == ["stop"]
    assert record["response"]["region"] == "East US"
    assert record["caller"]["subscription_id"] == "sub-1"
    assert record["request"]["traceparent"].startswith("00-0af7")


def test_time_to_first_token_skips_the_prompt_filter_event(recorded: Path) -> None:
    meter = meter_for({"stream": True})
    feed_stream(meter, (recorded / "chat_stream.sse").read_bytes())
    # Event 0 is the filter annotation, event 1 the empty role delta: the first content is event 2.
    assert meter.finish()["timings"]["first_token_ms"] == 20.0


def test_tool_call_only_stream_counts_parallel_calls(recorded: Path) -> None:
    meter = meter_for({"stream": True, "tools": []})
    meter.injected = True
    feed_stream(meter, (recorded / "tools_stream_usage.sse").read_bytes())
    record = meter.finish()
    assert record["response"]["tool_calls"] == 2
    assert record["response"]["finish_reasons"] == ["tool_calls"]
    assert record["usage"]["completion_tokens"] == 54
    assert record["usage"]["source"] == "injected"
    assert record["timings"]["first_token_ms"] is not None


def test_stream_without_usage_says_why(recorded: Path) -> None:
    meter = meter_for({"stream": True})
    meter.injection_skipped_reason = "api_version_not_in_injection_allow_list"
    feed_stream(meter, (recorded / "chat_stream.sse").read_bytes())
    usage = meter.finish()["usage"]
    assert usage["source"] == "none"
    assert usage["source_reason"] == "api_version_not_in_injection_allow_list"
    assert usage["prompt_tokens"] is None


def test_non_streamed_chat_and_tool_calls(recorded: Path) -> None:
    meter = meter_for({"messages": []})
    meter.observe_body((recorded / "chat_completion.json").read_bytes())
    record = meter.finish()
    assert record["usage"]["source"] == "provider"
    assert (
        record["usage"]["total_tokens"]
        == record["usage"]["prompt_tokens"] + record["usage"]["completion_tokens"]
    )
    tools = meter_for({"messages": []})
    tools.observe_body((recorded / "tools_completion.json").read_bytes())
    assert tools.finish()["response"]["tool_calls"] == 2


def test_content_filter_400_is_recorded_as_a_filtered_prompt(recorded: Path) -> None:
    meter = meter_for({"messages": []})
    meter.upstream_headers(400, {})
    meter.observe_body((recorded / "error_400_content_filter.json").read_bytes())
    record = meter.finish()
    assert record["response"]["status"] == 400
    assert record["response"]["outcome"] == "upstream_error"
    assert record["response"]["error_code"] == "content_filter"
    assert record["response"]["prompt_filtered"] is True
    assert record["usage"]["source_reason"] == "upstream_error"


def test_embeddings_usage(recorded: Path) -> None:
    meter = meter_for({"input": "x"}, route="embeddings")
    meter.observe_body((recorded / "embeddings.json").read_bytes())
    usage = meter.finish()["usage"]
    assert usage["prompt_tokens"] == usage["total_tokens"] == 8
    assert usage["completion_tokens"] is None


def test_responses_api_usage_from_response_completed() -> None:
    meter = meter_for({"model": "gpt-4o-mini", "stream": True, "input": "hi"}, route="v1_responses")
    events = [
        (
            "response.created",
            {
                "type": "response.created",
                "response": {"id": "resp_1", "model": "m", "status": "in_progress"},
            },
        ),
        ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "Hel"}),
        (
            "response.completed",
            {
                "type": "response.completed",
                "response": {
                    "id": "resp_1",
                    "model": "gpt-4o-mini",
                    "status": "completed",
                    "usage": {
                        "input_tokens": 12,
                        "input_tokens_details": {"cached_tokens": 4},
                        "output_tokens": 30,
                        "output_tokens_details": {"reasoning_tokens": 10},
                        "total_tokens": 42,
                    },
                },
            },
        ),
    ]
    for position, (name, data) in enumerate(events):
        raw = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
        meter.observe_event(parse_event(raw), received_ms=float(position))  # type: ignore[arg-type]
    record = meter.finish()
    assert record["usage"]["prompt_tokens"] == 12
    assert record["usage"]["completion_tokens"] == 30
    assert record["usage"]["cached_tokens"] == 4
    assert record["usage"]["reasoning_tokens"] == 10
    assert record["response"]["finish_reasons"] == ["completed"]
    assert record["timings"]["first_token_ms"] == 1.0
    assert record["request"]["deployment"] == "gpt-4o-mini"


def test_capture_is_truncated_with_length_and_hash() -> None:
    meter = meter_for({"messages": [{"role": "user", "content": "é" * 100}]}, capture_limit=11)
    meter.observe_body(
        json.dumps(
            {"choices": [{"index": 0, "message": {"content": "hello world, long"}}]}
        ).encode()
    )
    capture = meter.finish()["capture"]
    assert capture["completion"]["text"] == "hello world"
    assert capture["completion"]["truncated"] is True
    assert capture["completion"]["bytes"] == len(b"hello world, long")
    assert len(capture["prompt"]["sha256"]) == 64
    assert capture["prompt"]["truncated"] is True


def test_finish_builds_the_record_once() -> None:
    meter = meter_for({"messages": []})
    assert meter.finish() is meter.finish()


def test_an_error_event_inside_a_200_stream_is_an_upstream_error() -> None:
    meter = meter_for({"model": "m", "stream": True, "input": "hi"}, route="v1_responses")
    meter.upstream_headers(200, {})
    failed = {
        "type": "response.failed",
        "response": {
            "id": "resp_1",
            "status": "failed",
            "error": {"code": "server_error", "message": "boom"},
        },
    }
    raw = f"event: response.failed\ndata: {json.dumps(failed)}\n\n".encode()
    meter.observe_event(parse_event(raw), received_ms=1.0)  # type: ignore[arg-type]
    record = meter.finish()
    assert record["response"]["outcome"] == "upstream_error"
    assert record["response"]["error_code"] == "server_error"
    assert record["usage"]["source_reason"] == "upstream_error"


def test_missing_usage_when_the_client_asked_for_it_is_not_blamed_on_injection(
    recorded: Path,
) -> None:
    meter = meter_for({"stream": True, "stream_options": {"include_usage": True}})
    meter.injection_skipped_reason = "client_requested_usage"
    feed_stream(meter, (recorded / "chat_stream.sse").read_bytes())
    assert meter.finish()["usage"]["source_reason"] == "no_usage_in_response"


def test_tokens_per_second_counts_only_visible_tokens() -> None:
    meter = meter_for({"stream": True})
    content = {"choices": [{"index": 0, "delta": {"content": "hi"}}]}
    first_token = now_ms() - 1000.0  # the first visible token came a second before the end
    meter.observe_event(parse_event(f"data: {json.dumps(content)}\n\n".encode()), first_token)  # type: ignore[arg-type]
    details = {"reasoning_tokens": 100}
    usage = {
        "choices": [],
        "usage": {"completion_tokens": 110, "completion_tokens_details": details},
    }
    meter.observe_event(parse_event(f"data: {json.dumps(usage)}\n\n".encode()), now_ms())  # type: ignore[arg-type]
    record = meter.finish()
    # 10 visible tokens in about one second; counting the 100 reasoning tokens would give ~110/s.
    assert 5 < record["timings"]["output_tokens_per_second"] <= 10
    assert record["response"]["output_events"] == 1
