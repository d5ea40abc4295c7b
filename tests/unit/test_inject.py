"""Un-injection hands the client exactly the bytes Azure sends without include_usage."""

from __future__ import annotations

import json
from pathlib import Path

from tests.calls import parse_call

from aoai_proxy.config import Settings
from aoai_proxy.inject import (
    RejectedVersions,
    injected_body,
    injection_decision,
    rejects_stream_options,
    uninject,
)
from aoai_proxy.routes import PROXY_ROUTES
from aoai_proxy.sse import SSEFramer, parse_event

SETTINGS = Settings(openai_endpoint="https://example.openai.azure.com")
ROUTES = {spec.name: spec for spec in PROXY_ROUTES}


def chat_call(
    body: dict[str, object], *, api_version: str = "2025-04-01-preview", v1: bool = False
):
    spec = ROUTES["v1_chat_completions" if v1 else "chat_completions"]
    return parse_call(
        spec=spec,
        method="POST",
        path_params={} if v1 else {"deployment": "gpt-4o-mini"},
        query="" if v1 else f"api-version={api_version}",
        headers={"content-type": "application/json"},
        body=json.dumps(body).encode(),
    )


def events_of(stream: bytes) -> list[bytes]:
    framer = SSEFramer()
    return [*framer.feed(stream), framer.flush()][:-1] if stream else []


def test_uninjected_recorded_stream_has_the_shape_of_the_plain_recording(recorded: Path) -> None:
    with_usage = (recorded / "chat_stream_usage.sse").read_bytes()
    plain = (recorded / "chat_stream.sse").read_bytes()
    client_bytes = uninject(events_of(with_usage))

    assert b'"usage"' not in client_bytes
    # Azure's own stream without include_usage has the same events with the same members in the
    # same order (the recordings are two calls, so ids and texts differ, not the structure).
    ours = [parse_event(raw) for raw in events_of(client_bytes)]
    theirs = [parse_event(raw) for raw in events_of(plain)]
    assert len(ours) == len(theirs) == 14
    for mine, azure in zip(ours, theirs, strict=True):
        assert mine is not None
        assert azure is not None
        if azure.data == "[DONE]":
            assert mine.data == "[DONE]"
            continue
        assert list(json.loads(mine.data)) == list(json.loads(azure.data))


def test_uninjection_removes_only_the_usage_member_byte_for_byte(recorded: Path) -> None:
    with_usage = (recorded / "chat_stream_usage.sse").read_bytes()
    raw_events = events_of(with_usage)
    client_events = events_of(uninject(raw_events))
    assert len(client_events) == len(raw_events) - 1  # the usage event is gone
    for original, edited in zip(raw_events[:-2], client_events[:-1], strict=True):
        assert edited == original.replace(b',"usage":null', b"")
        expected = json.loads(parse_event(original).data)  # type: ignore[union-attr]
        expected.pop("usage", None)  # the prompt-filter event never has one
        assert json.loads(parse_event(edited).data) == expected  # type: ignore[union-attr]
    assert client_events[-1] == b"data: [DONE]\n\n"


def test_tool_call_stream_uninjects_to_the_plain_tool_call_shape(recorded: Path) -> None:
    client = uninject(events_of((recorded / "tools_stream_usage.sse").read_bytes()))
    plain = (recorded / "tools_stream.sse").read_bytes()
    assert b'"usage"' not in client
    assert len(events_of(client)) == len(events_of(plain))


def test_a_stream_without_usage_members_passes_unchanged(recorded: Path) -> None:
    plain = (recorded / "chat_stream.sse").read_bytes()
    assert uninject(events_of(plain)) == plain


def test_usage_text_inside_model_content_is_never_cut() -> None:
    event = b'data: {"choices":[{"delta":{"content":"say \\"usage\\":null"}}],"usage":null}\n\n'
    assert (
        uninject([event]) == b'data: {"choices":[{"delta":{"content":"say \\"usage\\":null"}}]}\n\n'
    )


def test_injection_merges_into_existing_stream_options() -> None:
    call = chat_call({"stream": True, "messages": [], "stream_options": {"foo": 1}})
    assert injection_decision(call, SETTINGS, RejectedVersions()) is None
    body = json.loads(injected_body(call))
    assert body["stream_options"] == {"foo": 1, "include_usage": True}
    assert body["messages"] == []


def test_no_injection_when_client_asked_for_usage_or_not_streaming_or_old_version() -> None:
    rejected = RejectedVersions()
    asked = chat_call({"stream": True, "stream_options": {"include_usage": True}})
    assert injection_decision(asked, SETTINGS, rejected) == "client_requested_usage"
    assert injection_decision(chat_call({"stream": False}), SETTINGS, rejected) == "not_streamed"
    old = chat_call({"stream": True}, api_version="2024-06-01")
    assert injection_decision(old, SETTINGS, rejected) == "api_version_not_in_injection_allow_list"
    assert injection_decision(chat_call({"stream": True}, v1=True), SETTINGS, rejected) is None
    rejected.add(chat_call({"stream": True, "model": "gpt-4o-mini"}, v1=True))
    assert (
        injection_decision(
            chat_call({"stream": True, "model": "gpt-4o-mini"}, v1=True), SETTINGS, rejected
        )
        == "api_version_rejected_stream_options"
    )
    # Remembered per deployment: another model behind the same version is still injected.
    other = chat_call({"stream": True, "model": "gpt-4.1"}, v1=True)
    assert injection_decision(other, SETTINGS, rejected) is None


def test_injection_is_a_byte_level_append_that_keeps_every_other_byte() -> None:
    call = chat_call({"stream": True})
    # Escapes, spacing and number formats the caller chose must reach upstream as they were.
    call.body = (
        rb'{"messages": [{"role":"user","content":"\u00e9 1.50"}], "stream": true}  ' + b"\n"
    )
    assert injected_body(call) == (
        rb'{"messages": [{"role":"user","content":"\u00e9 1.50"}], "stream": true'
        rb',"stream_options":{"include_usage":true}}'
    )


def test_a_body_that_cannot_be_rewritten_as_json_is_not_injected() -> None:
    call = chat_call({"stream": True})
    call.payload = {"stream": True, "stream_options": {}, "temperature": float("inf")}
    assert injected_body(call) is None


def test_never_injected_on_legacy_completions_responses_or_embeddings() -> None:
    for name, params in (
        ("completions", {"deployment": "d"}),
        ("embeddings", {"deployment": "d"}),
        ("responses", {}),
        ("v1_responses", {}),
    ):
        call = parse_call(
            spec=ROUTES[name],
            method="POST",
            path_params=params,
            query="api-version=2025-04-01-preview",
            headers={},
            body=b'{"stream": true, "model": "d"}',
        )
        assert injection_decision(call, SETTINGS, RejectedVersions()) == "operation_not_injected"


def test_a_400_naming_stream_options_is_a_rejection() -> None:
    body = b'{"error":{"message":"Unrecognized request argument supplied: stream_options"}}'
    assert rejects_stream_options(400, body)
    assert not rejects_stream_options(400, b'{"error":{"code":"content_filter"}}')
    assert not rejects_stream_options(429, body)


def test_ga_2024_10_21_is_not_injected_unless_the_operator_lists_it() -> None:
    # Its API reference has no stream_options; USAGE_INJECT_API_VERSIONS can opt in.
    ga = chat_call({"stream": True}, api_version="2024-10-21")
    assert (
        injection_decision(ga, SETTINGS, RejectedVersions())
        == "api_version_not_in_injection_allow_list"
    )
    opted_in = Settings(
        openai_endpoint=SETTINGS.openai_endpoint, inject_api_versions=frozenset({"2024-10-21"})
    )
    assert injection_decision(ga, opted_in, RejectedVersions()) is None
