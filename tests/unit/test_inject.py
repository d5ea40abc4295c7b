"""Un-injection hands the client exactly the bytes Azure sends without include_usage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.calls import parse_call

from aoai_proxy.config import InjectionPolicy, Settings
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
    assert injection_decision(old, SETTINGS, rejected) == "api_version_before_injection_minimum"
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


@pytest.mark.parametrize(
    ("api_version", "reason"),
    [
        ("2024-08-01-preview", None),  # the first guess: the resend covers it if wrong
        ("2024-09-01-preview", None),
        ("2024-10-21", None),  # GA: its YAML spec lists stream_options
        ("2025-04-01-preview", None),
        ("2025-08-01-preview", None),  # newer than any list the proxy ever shipped
        ("2031-01-01-preview", None),  # a future version needs no release
        ("2024-08-01", None),  # compared as dates: GA and preview of one date alike
        ("2024-07-01-preview", "api_version_before_injection_minimum"),
        ("2024-06-01", "api_version_before_injection_minimum"),
        ("2024-02-01", "api_version_before_injection_minimum"),
        ("2023-05-15", "api_version_before_injection_minimum"),
        ("preview", "api_version_not_dated"),
        ("latest", "api_version_not_dated"),
        ("2024-10-21-beta", "api_version_not_dated"),
        ("2024-13-45", "api_version_not_dated"),
    ],
)
def test_dated_api_versions_from_2024_08_01_preview_on_are_injected(
    api_version: str, reason: str | None
) -> None:
    call = chat_call({"stream": True}, api_version=api_version)
    assert injection_decision(call, SETTINGS, RejectedVersions()) == reason


def test_v1_is_injected_whatever_its_api_version_query_says() -> None:
    call = chat_call({"stream": True, "model": "gpt-4o-mini"}, v1=True)
    call.api_version = "preview"
    assert injection_decision(call, SETTINGS, RejectedVersions()) is None


def test_operators_move_the_minimum_add_and_exclude_versions() -> None:
    policy = InjectionPolicy(
        min_api_version="2024-10-21",
        extra=frozenset({"2024-06-01"}),
        excluded=frozenset({"2025-01-01-preview"}),
    )
    settings = Settings(openai_endpoint=SETTINGS.openai_endpoint, injection=policy)
    decide = [
        injection_decision(chat_call({"stream": True}, api_version=v), settings, RejectedVersions())
        for v in ("2024-09-01-preview", "2024-06-01", "2025-01-01-preview", "2025-02-01-preview")
    ]
    assert decide == [
        "api_version_before_injection_minimum",
        None,
        "api_version_excluded_from_injection",
        None,
    ]


def test_the_legacy_list_injects_exactly_its_versions() -> None:
    settings = Settings(
        openai_endpoint=SETTINGS.openai_endpoint,
        injection=InjectionPolicy(only=frozenset({"2024-06-01"})),
    )
    listed = chat_call({"stream": True}, api_version="2024-06-01")
    newer = chat_call({"stream": True}, api_version="2025-04-01-preview")
    assert injection_decision(listed, settings, RejectedVersions()) is None
    assert (
        injection_decision(newer, settings, RejectedVersions())
        == "api_version_not_in_injection_allow_list"
    )


IMAGE_MESSAGE = {
    "role": "user",
    "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ],
}
DATA_SOURCES = [
    {"type": "azure_search", "parameters": {"endpoint": "https://s", "index_name": "i"}}
]


@pytest.mark.parametrize("v1", [False, True])
def test_on_your_data_and_image_calls_are_not_injected(v1: bool) -> None:
    with_data = chat_call(
        {"stream": True, "model": "m", "messages": [], "data_sources": DATA_SOURCES}, v1=v1
    )
    with_image = chat_call({"stream": True, "model": "m", "messages": [IMAGE_MESSAGE]}, v1=v1)
    text_parts = chat_call(
        {
            "stream": True,
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "text"}]}],
        },
        v1=v1,
    )
    rejected = RejectedVersions()
    assert injection_decision(with_data, SETTINGS, rejected) == "request_has_data_sources"
    assert injection_decision(with_image, SETTINGS, rejected) == "request_has_image_input"
    assert injection_decision(text_parts, SETTINGS, rejected) is None


def test_a_400_from_an_on_your_data_or_image_call_is_never_remembered() -> None:
    rejected = RejectedVersions()
    rejected.add(chat_call({"stream": True, "messages": [], "data_sources": DATA_SOURCES}))
    rejected.add(chat_call({"stream": True, "messages": [IMAGE_MESSAGE]}))
    plain = chat_call({"stream": True, "messages": []})
    assert plain not in rejected
    assert injection_decision(plain, SETTINGS, rejected) is None
    rejected.add(plain)
    assert plain in rejected
