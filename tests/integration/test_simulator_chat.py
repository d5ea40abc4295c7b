"""The simulator speaks Azure OpenAI's chat wire format: structure compared with live recordings,
include_usage behaviour, tool-call deltas, n>1, limits, and the official SDK parsing it all."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.integration.sse_shapes import data_of, kinds, shapes_by_kind, split_events
from tests.loopback import SimulatorServer

API_VERSION = "2024-10-21"
TIMEOUT = httpx.Timeout(10.0)
PROMPT = {"messages": [{"role": "user", "content": "What is 4200 + 42?"}], "model": "gpt-4o-mini"}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "secret_retrieval_tool",
            "description": "A tool that requires a password to retrieve a secret.",
            "parameters": {
                "properties": {"password": {"title": "Password", "type": "string"}},
                "required": ["password"],
                "type": "object",
            },
        },
    }
]


def chat_url(sim: SimulatorServer, api_version: str = API_VERSION) -> str:
    return (
        f"{sim.base_url}/openai/deployments/gpt-4o-mini/chat/completions?api-version={api_version}"
    )


def post(sim: SimulatorServer, body: dict[str, Any], **headers: str) -> httpx.Response:
    with httpx.Client(timeout=TIMEOUT) as client:
        return client.post(chat_url(sim), json=body, headers=headers)


def test_first_stream_event_is_byte_identical_to_azures_prompt_filter_event(
    simulator: SimulatorServer, recorded: Path
) -> None:
    response = post(simulator, {**PROMPT, "stream": True})
    recorded_first = split_events((recorded / "chat_stream.sse").read_bytes())[0]
    assert split_events(response.content)[0] == recorded_first


@pytest.mark.parametrize(
    ("fixture", "body"),
    [
        ("chat_stream", {**PROMPT, "stream": True}),
        (
            "chat_stream_usage",
            {**PROMPT, "stream": True, "stream_options": {"include_usage": True}},
        ),
        ("tools_stream", {**PROMPT, "stream": True, "tools": TOOLS}),
        (
            "tools_stream_usage",
            {**PROMPT, "stream": True, "tools": TOOLS, "stream_options": {"include_usage": True}},
        ),
    ],
)
def test_stream_has_the_recorded_event_sequence_and_key_layout(
    simulator: SimulatorServer, recorded: Path, fixture: str, body: dict[str, Any]
) -> None:
    response = post(simulator, body, **{"x-sim-tool-calls": "2"})
    assert response.status_code == 200
    live = (recorded / f"{fixture}.sse").read_bytes()
    assert kinds(response.content) == kinds(live)
    assert shapes_by_kind(response.content) == shapes_by_kind(live)
    assert response.content.endswith(b"\n\ndata: [DONE]\n\n")


def test_stream_headers_match_the_recording(simulator: SimulatorServer, recorded: Path) -> None:
    response = post(simulator, {**PROMPT, "stream": True})
    meta = json.loads((recorded / "chat_stream.meta.json").read_text())
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    for name, _ in meta["headers"]:
        assert name.lower() in response.headers, name


def test_non_streamed_body_has_the_recorded_key_layout(
    simulator: SimulatorServer, recorded: Path
) -> None:
    from tests.integration.sse_shapes import shape

    response = post(simulator, PROMPT)
    live = json.loads((recorded / "chat_completion.json").read_bytes())
    assert response.headers["content-type"] == "application/json"
    assert shape(response.json()) == shape(live)
    tools_response = post(simulator, {**PROMPT, "tools": TOOLS}, **{"x-sim-tool-calls": "2"})
    live_tools = json.loads((recorded / "tools_completion.json").read_bytes())
    assert shape(tools_response.json()) == shape(live_tools)


def _strip_call_specific(body: bytes) -> list[Any]:
    events = []
    for event in split_events(body):
        data = data_of(event)
        if isinstance(data, dict):
            for key in ("id", "created", "obfuscation"):
                data.pop(key, None)
            for choice in data.get("choices", []):
                for call in choice["delta"].get("tool_calls", []):
                    call.pop("id", None)
        events.append(data)
    return events


def test_include_usage_adds_usage_null_everywhere_but_the_first_event_and_a_final_usage_event(
    simulator: SimulatorServer,
) -> None:
    plain = post(simulator, {**PROMPT, "stream": True}).content
    with_usage = post(
        simulator, {**PROMPT, "stream": True, "stream_options": {"include_usage": True}}
    ).content
    assert b'"usage"' not in plain
    plain_events = _strip_call_specific(plain)
    usage_events = _strip_call_specific(with_usage)
    # Same events, plus one usage event before [DONE].
    assert len(usage_events) == len(plain_events) + 1
    final = usage_events[-2]
    assert final["choices"] == []
    assert final["usage"]["total_tokens"] == (
        final["usage"]["prompt_tokens"] + final["usage"]["completion_tokens"]
    )
    del usage_events[-2]
    for ours, theirs in zip(usage_events[1:-1], plain_events[1:-1], strict=True):
        # The member is last in the chunk, as Azure places it.
        assert list(ours)[-1] == "usage"
        assert ours.pop("usage") is None
        assert ours == theirs
    assert "usage" not in usage_events[0]


def test_recorded_pair_differs_exactly_like_ours(recorded: Path) -> None:
    # The property the usage-injection code relies on, checked on Azure's own bytes.
    plain = split_events((recorded / "chat_stream.sse").read_bytes())
    with_usage = split_events((recorded / "chat_stream_usage.sse").read_bytes())
    assert len(with_usage) == len(plain) + 1
    assert b'"usage"' not in with_usage[0]
    assert all(e.endswith(b',"usage":null}') for e in with_usage[1:-2])
    assert data_of(with_usage[-2])["choices"] == []


def test_usage_counts_match_what_was_streamed(simulator: SimulatorServer) -> None:
    body = {**PROMPT, "stream": True, "stream_options": {"include_usage": True}, "n": 2}
    response = post(simulator, body, **{"x-sim-tokens": "7"})
    events = [data_of(e) for e in split_events(response.content)]
    content = [e for e in events if e and e["choices"] and e["choices"][0]["delta"].get("content")]
    assert len(content) == 14
    # n>1: choice indexes interleave.
    assert [e["choices"][0]["index"] for e in content[:4]] == [0, 1, 0, 1]
    usage = events[-2]["usage"]
    assert usage["completion_tokens"] == 14
    finishes = [e["choices"][0]["finish_reason"] for e in events if e and e["choices"]]
    assert finishes.count("stop") == 2


def test_max_tokens_truncates_with_finish_reason_length(simulator: SimulatorServer) -> None:
    response = post(simulator, {**PROMPT, "max_tokens": 5}, **{"x-sim-tokens": "30"})
    body = response.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5
    stream = post(
        simulator, {**PROMPT, "stream": True, "max_completion_tokens": 3}, **{"x-sim-tokens": "30"}
    )
    finishes = [data_of(e) for e in split_events(stream.content)][-2]
    assert finishes["choices"][0]["finish_reason"] == "length"


def test_reasoning_and_cached_tokens_are_reported(simulator: SimulatorServer) -> None:
    response = post(
        simulator,
        PROMPT,
        **{"x-sim-tokens": "4", "x-sim-reasoning-tokens": "10", "x-sim-cached-tokens": "3"},
    )
    usage = response.json()["usage"]
    assert usage["completion_tokens"] == 14
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 10
    assert usage["prompt_tokens_details"]["cached_tokens"] == 3


def test_output_is_deterministic_for_the_same_prompt(simulator: SimulatorServer) -> None:
    first = post(simulator, PROMPT).json()
    second = post(simulator, PROMPT).json()
    assert first["choices"] == second["choices"]
    assert first["usage"] == second["usage"]
    assert first["id"] != second["id"]


def test_completion_content_filter_ends_the_stream_with_finish_reason_content_filter(
    simulator: SimulatorServer,
) -> None:
    response = post(simulator, {**PROMPT, "stream": True}, **{"x-sim-content-filter": "completion"})
    last = [data_of(e) for e in split_events(response.content)][-2]
    choice = last["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["content_filter_results"]["violence"] == {"filtered": True, "severity": "medium"}


# --- the official SDK ---------------------------------------------------------------------------
def azure_client(sim: SimulatorServer) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=sim.base_url,
        api_key="unused",
        api_version="2024-10-21",
        max_retries=0,
        timeout=10.0,
    )


def test_sdk_parses_non_streamed_chat(simulator: SimulatorServer) -> None:
    with azure_client(simulator) as client:
        completion = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
        )
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 20


def test_sdk_parses_stream_with_include_usage(simulator: SimulatorServer) -> None:
    with azure_client(simulator) as client:
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) >= 10
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 20


def test_sdk_accumulates_streamed_tool_calls(simulator: SimulatorServer) -> None:
    with openai.OpenAI(base_url=simulator.v1_url, api_key="unused", max_retries=0) as client:
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "secrets for mellon, radiance"}],
            tools=TOOLS,  # type: ignore[arg-type]
            stream=True,
        )
        arguments: dict[int, str] = {}
        names: dict[int, str] = {}
        finish = None
        for chunk in stream:
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for call in choice.delta.tool_calls or []:
                    if call.function and call.function.name:
                        names[call.index] = call.function.name
                    if call.function and call.function.arguments:
                        arguments[call.index] = (
                            arguments.get(call.index, "") + call.function.arguments
                        )
    assert finish == "tool_calls"
    assert names == {0: "secret_retrieval_tool"}
    assert json.loads(arguments[0]) == {"password": "simulated"}


_PER_CALL = re.compile(rb'"(id|created|obfuscation)":("[^"]*"|\d+)')


def _normalise(body: bytes) -> bytes:
    return _PER_CALL.sub(rb'"\1":_', body)


def test_plain_stream_is_the_usage_stream_minus_usage_null_and_the_usage_event_byte_for_byte(
    simulator: SimulatorServer, recorded: Path
) -> None:
    # The byte-level edit the proxy applies when it un-injects include_usage, on our output...
    plain = post(simulator, {**PROMPT, "stream": True}).content
    usage = post(
        simulator, {**PROMPT, "stream": True, "stream_options": {"include_usage": True}}
    ).content
    events = split_events(usage)
    edited = b"".join(
        e.replace(b',"usage":null}', b"}") + b"\n\n" for e in events[:-2] + events[-1:]
    )
    assert _normalise(edited) == _normalise(plain)
    # ...and on Azure's recorded pair (different calls, so only the structure can match).
    live_plain = split_events((recorded / "chat_stream.sse").read_bytes())
    live_usage = split_events((recorded / "chat_stream_usage.sse").read_bytes())
    live_edited = [e.replace(b',"usage":null}', b"}") for e in live_usage[:-2] + live_usage[-1:]]
    assert len(live_edited) == len(live_plain)
    for ours, theirs in zip(live_edited, live_plain, strict=True):
        assert kinds(ours + b"\n\n") == kinds(theirs + b"\n\n")
