"""The usage record, its JSON Schema and docs/usage-record.md say the same thing.

Records built by the meter in every situation validate against docs/usage-record.schema.json (closed
at every level, so a new field fails until it is added there), and every schema field has a row in
the doc's tables with the same type and nullability, and the other way round.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from tests.calls import parse_call

from aoai_proxy.config import DEFAULT_INJECT_MIN_API_VERSION
from aoai_proxy.inbound import describe_call
from aoai_proxy.routes import PROXY_ROUTES
from aoai_proxy.sse import SSEFramer, parse_event
from aoai_proxy.usage import NO_USAGE_REASONS, UsageMeter

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "usage-record.md").read_text()
SCHEMA = json.loads((ROOT / "docs" / "usage-record.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
ROUTES = {spec.name: spec for spec in PROXY_ROUTES}
APIM_HEADERS = {
    "x-apim-request-id": "6f1c2a9e-0d4b-4c8e-9b1a-7c3e5d2f8001",
    "x-apim-subscription-id": "a1b2c3d4e5f6",
    "x-apim-subscription-name": "contoso-support",
    "x-apim-product-id": "openai-standard",
    "x-apim-user-id": "1",
    "x-apim-client-ip": "203.0.113.24",
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4701-00f067aa0ba902b7-01",
}
AZURE_HEADERS = {"x-ms-region": "East US", "apim-request-id": "up-1", "x-request-id": "req-1"}


def assert_valid(record: dict[str, Any]) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(record)]
    assert errors == []


# -- records the meter builds ------------------------------------------------------------------


def meter(
    body: dict[str, Any] | bytes,
    route: str = "chat_completions",
    *,
    method: str = "POST",
    capture_limit: int | None = None,
) -> UsageMeter:
    spec = ROUTES[route]
    params = {"deployment": "gpt-4o-mini"} if "{deployment}" in spec.template else {}
    if route == "openai_passthrough":
        params = {"path": "v1/models"}
    call = parse_call(
        spec=spec,
        method=method,
        path_params=params,
        query="" if route.startswith(("v1_", "openai_")) else "api-version=2024-10-21",
        headers=APIM_HEADERS,
        body=body if isinstance(body, bytes) else json.dumps(body).encode(),
    )
    return UsageMeter(call, instance_id="test", capture_limit=capture_limit, started_ms=0.0)


def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "choices": choices,
        "created": 1766394398,
        "id": "chatcmpl-1",
        "model": "gpt-4o-mini-2024-07-18",
        "object": "chat.completion.chunk",
        **extra,
    }


FILTER_EVENT = {
    "choices": [],
    "created": 0,
    "id": "",
    "model": "",
    "object": "",
    "prompt_filter_results": [
        {"prompt_index": 0, "content_filter_results": {"hate": {"filtered": False}}}
    ],
}


def azure_stream(deltas: list[dict[str, Any]], finish: str, usage: bool = True) -> bytes:
    """An Azure-shaped chat stream (filter event first; with include_usage: "usage":null members
    and a final usage event)."""
    null = {"usage": None} if usage else {}
    events: list[dict[str, Any]] = [FILTER_EVENT]
    events += [chunk([{"index": 0, "delta": d, "finish_reason": None}], **null) for d in deltas]
    events.append(chunk([{"index": 0, "delta": {}, "finish_reason": finish}], **null))
    if usage:
        events.append(
            chunk(
                [],
                usage={
                    "prompt_tokens": 16,
                    "completion_tokens": 11,
                    "total_tokens": 27,
                    "prompt_tokens_details": {"cached_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 0},
                },
            )
        )
    body = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events)
    return body + b"data: [DONE]\n\n"


TEXT_DELTAS = [{"role": "assistant", "content": ""}, {"content": "4242"}, {"content": "."}]
TOOL_DELTAS = [
    {"role": "assistant", "content": None},
    {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}}]},
    {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]},
    {"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "f", "arguments": "{}"}}]},
]


def feed(meter: UsageMeter, stream: bytes, upto: int | None = None) -> None:
    for position, raw in enumerate(SSEFramer().feed(stream)[:upto]):
        event = parse_event(raw)
        if event is not None:
            meter.observe_event(event, received_ms=100.0 + position * 10)


def streamed(stream: bytes, body: dict[str, Any] | None = None, **kw: Any) -> UsageMeter:
    m = meter(body or {"messages": [], "stream": True}, **kw)
    m.upstream_headers(200, AZURE_HEADERS)
    m.first_byte_sent()
    feed(m, stream)
    return m


def situations() -> Iterator[tuple[str, UsageMeter]]:
    injected = streamed(azure_stream(TEXT_DELTAS, "stop"))
    injected.injected = True
    yield "injected text stream", injected
    tools = streamed(azure_stream(TOOL_DELTAS, "tool_calls"))
    tools.injected = True
    yield "injected tool-call stream", tools
    provider = streamed(
        azure_stream(TEXT_DELTAS, "stop"),
        {"messages": [], "stream": True, "stream_options": {"include_usage": True}},
    )
    yield "stream, client asked for usage", provider
    plain = streamed(azure_stream(TEXT_DELTAS, "content_filter", usage=False))
    plain.injection_skipped_reason = "api_version_not_in_injection_allow_list"
    yield "stream without usage, filtered completion", plain

    gone = meter({"messages": [], "stream": True})
    gone.upstream_headers(200, AZURE_HEADERS)
    feed(gone, azure_stream(TEXT_DELTAS, "stop"), upto=3)
    gone.disconnected()
    yield "client disconnect", gone
    broken = meter({"messages": [], "stream": True})
    broken.upstream_headers(200, AZURE_HEADERS)
    feed(broken, azure_stream(TEXT_DELTAS, "stop"), upto=3)
    broken.fail("stream_failed", "upstream_stream_failed", "The upstream stream ended.")
    yield "mid-stream failure", broken

    limited = meter({"messages": []})
    limited.upstream_headers(429, {**AZURE_HEADERS, "retry-after": "1"})
    limited.observe_body(b'{"error":{"code":"429","message":"Requests ... exceeded"}}')
    yield "upstream 429", limited
    filtered = meter({"messages": []})
    filtered.upstream_headers(400, AZURE_HEADERS)
    filtered.observe_body(
        json.dumps(
            {
                "error": {
                    "code": "content_filter",
                    "message": "filtered",
                    "innererror": {"code": "ResponsibleAIPolicyViolation"},
                }
            }
        ).encode()
    )
    yield "content-filter 400", filtered
    unparsed = UsageMeter(
        describe_call(
            spec=ROUTES["chat_completions"],
            method="POST",
            path_params={"deployment": "gpt-4o-mini"},
            query="api-version=2025-04-01-preview",
            headers={"x-apim-subscription-id": "sub-1"},
        ),
        instance_id="test",
        capture_limit=None,
        started_ms=0.0,
    )
    unparsed.proxy_error(400, "invalid_request", "The request body is not valid JSON.")
    yield "proxy error before parsing", unparsed
    unreachable = meter({"messages": []})
    unreachable.proxy_error(502, "upstream_unreachable", "Azure OpenAI could not be reached.")
    yield "upstream unreachable", unreachable

    whole = meter({"messages": [{"role": "user", "content": "é" * 50}]}, capture_limit=16)
    whole.upstream_headers(200, AZURE_HEADERS)
    whole.observe_body(
        json.dumps(
            {
                "id": "chatcmpl-2",
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "a long answer text"},
                    }
                ],
                "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
            }
        ).encode()
    )
    yield "non-streamed chat with capture", whole
    embeddings = meter({"input": "hello"}, "v1_embeddings")
    embeddings.upstream_headers(200, AZURE_HEADERS)
    embeddings.observe_body(b'{"data":[],"usage":{"prompt_tokens":1,"total_tokens":1}}')
    yield "embeddings", embeddings
    background = meter({"model": "gpt-4o-mini", "input": "hi", "background": True}, "v1_responses")
    background.upstream_headers(200, AZURE_HEADERS)
    background.observe_body(b'{"id":"resp_1","object":"response","status":"queued"}')
    yield "background Responses API call", background
    responses = meter(
        {"model": "gpt-4o-mini", "input": "hi", "stream": True}, "v1_responses", capture_limit=64
    )
    responses.upstream_headers(200, AZURE_HEADERS)
    done = {
        "id": "resp_2",
        "status": "completed",
        "usage": {"input_tokens": 8, "output_tokens": 2, "total_tokens": 10},
    }
    for name, data in (
        ("response.created", {"response": {"id": "resp_2", "status": "in_progress"}}),
        ("response.output_text.delta", {"delta": "Hi"}),
        ("response.completed", {"response": done}),
    ):
        raw = f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()
        feed(responses, raw)
    yield "streamed Responses API call", responses
    models = meter(b"", "openai_passthrough", method="GET", capture_limit=8)
    models.upstream_headers(200, AZURE_HEADERS)
    models.observe_body(b'{"data":[],"object":"list"}')
    yield "GET models", models


SITUATIONS = list(situations())


@pytest.mark.parametrize(("situation", "usage_meter"), SITUATIONS, ids=[s for s, _ in SITUATIONS])
def test_the_record_of_every_situation_validates(situation: str, usage_meter: UsageMeter) -> None:
    assert_valid(usage_meter.finish())


def test_a_field_the_schema_does_not_know_fails_at_every_level() -> None:
    record = SITUATIONS[0][1].finish()
    for section in (None, "caller", "request", "response", "usage", "timings"):
        bad = json.loads(json.dumps(record))
        (bad if section is None else bad[section])["new_field"] = 1
        assert not VALIDATOR.is_valid(bad), section


def test_usage_source_and_reason_go_together() -> None:
    record = json.loads(json.dumps(SITUATIONS[0][1].finish()))
    record["usage"]["source_reason"] = "upstream_error"
    assert not VALIDATOR.is_valid(record)


def recorded_bodies(recorded: Path) -> Iterator[tuple[str, UsageMeter]]:
    for path in sorted(recorded.glob("*.sse")):
        yield path.name, streamed(path.read_bytes(), route="v1_chat_completions")
    for path in sorted(recorded.glob("*.json")):
        if path.name.endswith(".meta.json"):
            continue
        meta = json.loads(path.with_name(path.stem + ".meta.json").read_text())
        m = meter({"messages": []})
        m.upstream_headers(int(meta.get("status", 200)), dict(meta.get("headers") or {}))
        m.observe_body(path.read_bytes())
        yield path.name, m


def test_records_from_every_recorded_azure_response_validate(recorded: Path) -> None:
    checked = 0
    for _name, usage_meter in recorded_bodies(recorded):
        assert_valid(usage_meter.finish())
        checked += 1
    assert checked >= 10


# -- the doc and the schema name the same fields -----------------------------------------------

FIELD_ROW = re.compile(r"^\| `([a-z0-9_.]+)` \| ([a-z ]+) \| (yes|no) \|")


def documented_fields() -> dict[str, tuple[str, bool]]:
    """Rows of the doc's field tables (header `| Field | Type | Null |`): path -> (type, null)."""
    fields: dict[str, tuple[str, bool]] = {}
    in_field_table = False
    for line in DOC.splitlines():
        if not line.startswith("|"):
            in_field_table = False
        elif line.startswith("| Field | Type | Null |"):
            in_field_table = True
        elif in_field_table and (match := FIELD_ROW.match(line)):
            name, kind, null = match.groups()
            assert name not in fields, f"{name} is documented twice"
            fields[name] = (kind, null == "yes")
    return fields


def schema_fields(node: dict[str, Any], prefix: str = "") -> dict[str, tuple[str, bool]]:
    fields: dict[str, tuple[str, bool]] = {}
    for name, prop in node.get("properties", {}).items():
        path = f"{prefix}{name}"
        types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        kind = next(t for t in types if t != "null")
        if kind == "array":
            kind = f"array of {prop['items']['type']}"
        fields[path] = (kind, "null" in types)
        if kind == "object":
            fields.update(schema_fields(prop, f"{path}."))
    return fields


def test_every_object_in_the_schema_is_closed() -> None:
    def objects(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if "properties" in node:
            yield node
            for prop in node["properties"].values():
                yield from objects(prop)

    assert all(node.get("additionalProperties") is False for node in objects(SCHEMA))


def test_every_schema_field_is_documented_with_its_type() -> None:
    documented = documented_fields()
    expected = schema_fields(SCHEMA)
    assert set(expected) - set(documented) == set(), "in the schema, not in the doc"
    for name, kind in expected.items():
        assert documented[name] == kind, name


def test_every_documented_field_is_in_the_schema() -> None:
    assert set(documented_fields()) - set(schema_fields(SCHEMA)) == set()


def test_the_doc_examples_are_valid_records() -> None:
    blocks = re.findall(r"```json\n(.*?)```", DOC, flags=re.DOTALL)
    examples = [json.loads(block) for block in blocks]
    records = [e for e in examples if e.get("type") == "usage"]
    assert len(records) >= 3
    for record in records:
        assert_valid(record)


def reasons_in_code() -> set[str]:
    """NO_USAGE_REASONS, after checking that every literal the meter returns is one of them."""
    tree = ast.parse((ROOT / "src" / "aoai_proxy" / "usage.py").read_text())
    returned = {
        ret.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "_why_no_usage"
        for ret in ast.walk(node)
        if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Constant)
    }
    assert returned <= set(NO_USAGE_REASONS)
    return set(NO_USAGE_REASONS)


def test_every_source_reason_the_code_produces_is_documented() -> None:
    section = DOC.split("### `usage.source_reason`", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))
    assert len(reasons_in_code()) >= 10
    assert reasons_in_code() == documented


def test_the_default_injection_minimum_is_documented() -> None:
    section = DOC.split("## Injection", 1)[1].split("\n## ", 1)[0]
    assert f"(default\n     `{DEFAULT_INJECT_MIN_API_VERSION}`" in section


def test_the_schema_lists_exactly_the_source_reasons_of_the_code() -> None:
    reason = SCHEMA["properties"]["usage"]["properties"]["source_reason"]
    assert set(reason["enum"]) == {*reasons_in_code(), None}
