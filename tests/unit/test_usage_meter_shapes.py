"""The meter on Responses API and Assistants shapes as Azure sends them: a Response object always has
`"error": null`, incomplete ones have `incomplete_details`, reasoning models add reasoning items."""

from __future__ import annotations

import json
from typing import Any

from tests.calls import parse_call

from aoai_proxy.routes import PROXY_ROUTES
from aoai_proxy.sse import SSEFramer, parse_event
from aoai_proxy.usage import UsageMeter

ROUTES = {spec.name: spec for spec in PROXY_ROUTES}
USAGE = {
    "input_tokens": 8,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 20,
    "output_tokens_details": {"reasoning_tokens": 12},
    "total_tokens": 28,
}


def response_object(**changes: Any) -> dict[str, Any]:
    """A non-streamed Responses API body of a reasoning model, as Azure returns it."""
    body: dict[str, Any] = {
        "id": "resp_68af3b4f2f4c8190a0b9b1c2d3e4f5a6",
        "object": "response",
        "created_at": 1756314447,
        "status": "completed",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": "o4-mini",
        "output": [
            {"id": "rs_68af3b50a1", "type": "reasoning", "summary": []},
            {
                "id": "msg_68af3b51b2",
                "type": "message",
                "status": "completed",
                "content": [
                    {"type": "output_text", "annotations": [], "logprobs": [], "text": "Hi there"}
                ],
                "role": "assistant",
            },
        ],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": "medium", "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": USAGE,
        "user": None,
        "metadata": {},
    }
    body.update(changes)
    return body


def meter(route: str = "v1_responses", body: dict[str, Any] | None = None) -> UsageMeter:
    spec = ROUTES[route]
    call = parse_call(
        spec=spec,
        method="POST",
        path_params={},
        query="" if route.startswith("v1_") else "api-version=2025-04-01-preview",
        headers={},
        body=json.dumps(body or {"model": "o4-mini", "input": "Hi"}).encode(),
    )
    return UsageMeter(call, instance_id="test", capture_limit=1024, started_ms=0.0)


def feed(m: UsageMeter, stream: bytes) -> None:
    for position, raw in enumerate(SSEFramer().feed(stream)):
        event = parse_event(raw)
        if event is not None:
            m.observe_event(event, received_ms=float(position))


def sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def test_a_non_streamed_response_with_error_null_is_recorded_with_provider_usage() -> None:
    for route in ("v1_responses", "responses"):
        m = meter(route)
        m.upstream_headers(200, {"content-type": "application/json"})
        m.observe_body(json.dumps(response_object()).encode())
        record = m.finish()
        assert record["usage"] == {
            "prompt_tokens": 8,
            "completion_tokens": 20,
            "total_tokens": 28,
            "cached_tokens": 0,
            "reasoning_tokens": 12,
            "source": "provider",
            "source_reason": None,
        }
        assert record["response"]["id"] == "resp_68af3b4f2f4c8190a0b9b1c2d3e4f5a6"
        assert record["response"]["model"] == "o4-mini"
        assert record["response"]["outcome"] == "completed"
        assert record["response"]["error_code"] is None
        assert record["response"]["finish_reasons"] == ["completed"]
        assert record["capture"]["completion"]["text"] == "Hi there"


def test_an_incomplete_response_keeps_its_usage_and_reason() -> None:
    m = meter()
    m.upstream_headers(200, {})
    body = response_object(status="incomplete", incomplete_details={"reason": "max_output_tokens"})
    m.observe_body(json.dumps(body).encode())
    record = m.finish()
    assert record["usage"]["total_tokens"] == 28
    assert record["response"]["finish_reasons"] == ["max_output_tokens"]
    assert record["response"]["outcome"] == "completed"


def test_only_a_non_null_error_object_makes_a_body_an_error() -> None:
    failed = meter()
    failed.upstream_headers(200, {})
    error = {"code": "server_error", "message": "The model failed."}
    body = response_object(status="failed", error=error, usage=None)
    failed.observe_body(json.dumps(body).encode())
    record = failed.finish()
    assert record["response"]["error_code"] == "server_error"
    assert record["response"]["outcome"] == "upstream_error"
    assert record["response"]["id"] == body["id"]

    plain_error = meter()
    plain_error.upstream_headers(400, {})
    plain_error.observe_body(b'{"error":{"code":"invalid_value","message":"bad input"}}')
    assert plain_error.finish()["response"]["error_code"] == "invalid_value"

    chat_with_null_error = meter("chat_completions", {"messages": []})
    chat_with_null_error.upstream_headers(200, {})
    chat_with_null_error.observe_body(
        b'{"id":"chatcmpl-1","model":"gpt-4o","error":null,"choices":[],'
        b'"usage":{"prompt_tokens":3,"completion_tokens":0,"total_tokens":3}}'
    )
    record = chat_with_null_error.finish()
    assert record["usage"]["source"] == "provider"
    assert record["response"]["error_code"] is None


def test_a_streamed_response_with_reasoning_items_and_error_null() -> None:
    m = meter(body={"model": "o4-mini", "input": "Hi", "stream": True})
    m.upstream_headers(200, {"content-type": "text/event-stream"})
    in_progress = response_object(status="in_progress", output=[], usage=None)
    events = [
        sse("response.created", {"type": "response.created", "response": in_progress}),
        sse(
            "response.output_item.added",
            {"type": "response.output_item.added", "item": {"type": "reasoning", "id": "rs_1"}},
        ),
        sse("response.output_text.delta", {"type": "response.output_text.delta", "delta": "Hi"}),
        sse("response.completed", {"type": "response.completed", "response": response_object()}),
    ]
    feed(m, b"".join(events))
    record = m.finish()
    assert record["usage"]["source"] == "provider"
    assert record["usage"]["reasoning_tokens"] == 12
    assert record["response"]["id"] == "resp_68af3b4f2f4c8190a0b9b1c2d3e4f5a6"
    assert record["response"]["error_code"] is None
    assert record["response"]["output_events"] == 1


def run_object(status: str, usage: dict[str, int] | None) -> dict[str, Any]:
    return {
        "id": "run_abc123",
        "object": "thread.run",
        "assistant_id": "asst_1",
        "thread_id": "thread_1",
        "status": status,
        "model": "gpt-4o-mini",
        "last_error": None,
        "incomplete_details": None,
        "required_action": None,
        "usage": usage,
    }


def assistants_stream() -> bytes:
    usage = {"prompt_tokens": 57, "completion_tokens": 9, "total_tokens": 66}
    delta = {
        "id": "msg_1",
        "object": "thread.message.delta",
        "delta": {"content": [{"index": 0, "type": "text", "text": {"value": "Hello"}}]},
    }
    return b"".join(
        [
            sse("thread.run.created", run_object("queued", None)),
            sse("thread.run.in_progress", run_object("in_progress", None)),
            sse(
                "thread.run.step.completed",
                {"id": "step_1", "object": "thread.run.step", "usage": usage},
            ),
            sse("thread.message.delta", delta),
            sse("thread.run.completed", run_object("completed", usage)),
            b"event: done\ndata: [DONE]\n\n",
        ]
    )


def test_an_assistants_run_stream_on_the_catch_all_route_is_a_stream_with_usage() -> None:
    m = meter("openai_passthrough", {"assistant_id": "asst_1", "stream": True})
    m.upstream_headers(200, {"content-type": "text/event-stream; charset=utf-8"})
    feed(m, assistants_stream())
    record = m.finish()
    assert record["request"]["operation"] == "other"
    assert record["request"]["stream"] is True
    assert record["usage"]["prompt_tokens"] == 57
    assert record["usage"]["completion_tokens"] == 9
    assert record["usage"]["source"] == "provider"
    assert record["response"]["id"] == "run_abc123"
    assert record["response"]["model"] == "gpt-4o-mini"
    assert record["response"]["finish_reasons"] == ["completed"]
    assert record["response"]["output_events"] == 1
    assert record["timings"]["first_token_ms"] is not None
    assert record["capture"]["completion"]["text"] == "Hello"


def test_a_catch_all_json_answer_is_not_a_stream() -> None:
    m = meter("openai_passthrough", {})
    m.upstream_headers(200, {"content-type": "application/json"})
    m.observe_body(b'{"object":"list","data":[]}')
    assert m.finish()["request"]["stream"] is False


def test_a_failed_run_records_its_last_error() -> None:
    m = meter("openai_passthrough", {})
    m.upstream_headers(200, {"content-type": "text/event-stream"})
    failed = {
        **run_object("failed", None),
        "last_error": {"code": "rate_limit_exceeded", "message": "Rate limit reached."},
    }
    feed(m, sse("thread.run.failed", failed))
    record = m.finish()
    assert record["response"]["outcome"] == "upstream_error"
    assert record["response"]["error_code"] == "rate_limit_exceeded"
    assert record["response"]["finish_reasons"] == ["failed"]
