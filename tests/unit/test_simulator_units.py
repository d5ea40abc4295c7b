"""Pure parts of the simulator: api-version gate, pseudo-text, plans, chunk bytes, replay splitting,
header controls. No server involved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.datastructures import Headers

from aoai_simulator.chat import CallMeta, plan_chat
from aoai_simulator.chat_stream import chat_events
from aoai_simulator.controls import BadControl, Controls, accepts_stream_options
from aoai_simulator.replay import ReplayStore, UnknownRecording
from aoai_simulator.settings import SimulatorSettings
from aoai_simulator.text import tokens
from aoai_simulator.tool_calls import plan_tool_calls

SETTINGS = SimulatorSettings()
META = CallMeta("chatcmpl-x", 1, "gpt-4o-mini-2024-07-18", "fp_x")


def controls(**headers: str) -> Controls:
    return Controls.from_headers(Headers(headers), SETTINGS)


@pytest.mark.parametrize(
    ("api_version", "accepted"),
    [
        ("2024-02-15-preview", False),
        ("2024-07-01-preview", False),
        ("2024-08-01-preview", True),
        ("2024-06-01", False),
        ("2024-09-01-preview", True),
        ("2024-10-21", True),
        ("2025-04-01-preview", True),
        ("preview", True),
        (None, True),
    ],
)
def test_stream_options_gate_compares_the_date_part(
    api_version: str | None, accepted: bool
) -> None:
    assert accepts_stream_options(api_version) is accepted


def test_pseudo_text_is_deterministic_and_counts_tokens() -> None:
    assert tokens(5, 42) == tokens(5, 42)
    assert len(tokens(17, 3)) == 17
    assert tokens(0, 1) == []
    assert all(t.startswith(" ") for t in tokens(6, 9)[1:])


def test_chat_stream_chunks_are_compact_json_with_usage_null_last() -> None:
    plan = plan_chat(
        {"messages": [{"role": "user", "content": "hi"}]}, controls(**{"x-sim-tokens": "2"})
    )
    events = [e.data for e in chat_events(plan, META, include_usage=True)]
    assert events[-1] == b"data: [DONE]\n\n"
    for event in events[1:-2]:
        assert event.startswith(b'data: {"choices":[{')
        assert event.endswith(b',"usage":null}\n\n')
        payload = event[len(b"data: ") :]
        assert b": " not in payload
        assert b", " not in payload
    assert json.loads(events[-2][6:])["usage"]["completion_tokens"] == 2
    flags = [e.content for e in chat_events(plan, META, include_usage=False)]
    assert flags == [False, False, True, True, False, False]


def test_tool_call_arguments_come_from_the_schema_in_small_fragments() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                },
            },
        }
    ]
    (call,) = plan_tool_calls({"tools": tools}, controls())
    assert json.loads(call.arguments) == {"city": "simulated", "days": 42}
    assert "".join(call.fragments) == call.arguments
    assert max(len(f) for f in call.fragments) <= 6
    assert plan_tool_calls({"tools": tools, "tool_choice": "none"}, controls()) == ()


def test_controls_reject_unusable_values() -> None:
    with pytest.raises(BadControl):
        controls(**{"x-sim-tokens": "many"})
    with pytest.raises(BadControl):
        controls(**{"x-sim-status": "200"})
    with pytest.raises(BadControl):
        controls(**{"x-sim-content-filter": "maybe"})
    assert controls(**{"x-sim-ttft-ms": "250"}).ttft_s == 0.25


def test_replayed_events_join_to_the_recorded_bytes(recorded: Path) -> None:
    store = ReplayStore(recorded)
    recording = store.get("tools_stream")
    assert (
        b"".join(e.data for e in recording.events()) == (recorded / "tools_stream.sse").read_bytes()
    )
    assert sum(e.content for e in recording.events()) == 12  # 2 heads + 10 argument fragments
    with pytest.raises(UnknownRecording):
        store.get("../fixtures/chat_stream")
    with pytest.raises(UnknownRecording):
        ReplayStore(None).get("chat_stream")


@pytest.mark.parametrize("token", ["Hello", ' "quoted"', " naïve", "\n"])
def test_templated_text_choice_equals_the_serialised_dict(token: str) -> None:
    from aoai_simulator.chat_stream import content_choice
    from aoai_simulator.wire import CHUNK_FILTER, dumps

    expected = {
        "content_filter_results": CHUNK_FILTER,
        "delta": {"content": token},
        "finish_reason": None,
        "index": 3,
        "logprobs": None,
    }
    assert content_choice(3, token) == dumps(expected)


def test_async_filter_mode_annotates_after_the_text_and_after_finish_reason() -> None:
    plan = plan_chat(
        {"messages": [{"role": "user", "content": "hi"}]},
        controls(**{"x-sim-tokens": "15", "x-sim-content-filter": "async"}),
    )
    raw = [e.data for e in chat_events(plan, META, include_usage=False)]
    assert raw[-1] == b"data: [DONE]\n\n"
    events = [json.loads(e[6:]) for e in raw[:-1]]
    text = [
        e for e in events if e["id"] and e["choices"] and e["choices"][0]["delta"].get("content")
    ]
    assert all(e["choices"][0]["content_filter_results"] == {} for e in text)
    annotations = [
        e for e in events if e["choices"] and "content_filter_offsets" in e["choices"][0]
    ]
    assert len(annotations) == 2
    finish_at = next(
        i for i, e in enumerate(events) if e["choices"] and e["choices"][0].get("finish_reason")
    )
    assert events.index(annotations[-1]) > finish_at
    offsets = [a["choices"][0]["content_filter_offsets"] for a in annotations]
    assert offsets[0]["start_offset"] == 0
    assert offsets[1]["start_offset"] == offsets[0]["end_offset"]
    assert offsets[1]["end_offset"] == sum(len(t) for t in plan.choices[0])
