"""The SSE parser's fast path (one `data:` line, read without the per-line work) gives exactly the
event the general parse gives, on every event of every recorded Azure stream, of every kind of
stream the simulator makes (over real HTTP on loopback), and on hand-made events at its edges."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from aoai_proxy.sse import SSEFramer, _lone_data_line, _parse_fields, parse_event


def events_match(stream: bytes) -> int:
    """Asserts that both parses agree on every event of `stream`; returns how many took the fast
    path."""
    events = SSEFramer().feed(stream)
    for raw in events:
        assert parse_event(raw) == _parse_fields(raw), raw
    return sum(1 for raw in events if _lone_data_line(raw) is not None)


# -- every recorded stream ------------------------------------------------------------------------


def test_every_event_of_every_recorded_stream_parses_the_same(recorded: Path) -> None:
    streams = sorted(recorded.glob("*.sse"))
    assert streams, f"no recorded streams in {recorded}"
    for path in streams:
        assert events_match(path.read_bytes()) > 0, f"{path.name}: no event took the fast path"


# -- every kind of simulated stream ----------------------------------------------------------------

TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
MESSAGES = [{"role": "user", "content": 'Say something {with "quotes" and braces}.'}]
SIMULATED: list[tuple[str, str, dict[str, Any], dict[str, str]]] = [
    ("chat", "chat_completions", {}, {}),
    ("chat with usage", "chat_completions", {"stream_options": {"include_usage": True}}, {}),
    ("three choices", "chat_completions", {"n": 3}, {}),
    ("tool calls", "chat_completions", {"tools": TOOLS}, {"x-sim-tool-calls": "2"}),
    ("content filter", "chat_completions", {}, {"x-sim-content-filter": "completion"}),
    ("async filter", "chat_completions", {}, {"x-sim-content-filter": "async"}),
    ("reasoning", "chat_completions", {}, {"x-sim-reasoning-tokens": "12"}),
    ("cut mid-stream", "chat_completions", {}, {"x-sim-fail-after": "3"}),
    ("v1 chat", "v1_chat_completions", {"model": "gpt-4o-mini"}, {}),
    ("legacy completions", "completions", {"prompt": "Say"}, {}),
    ("responses", "v1_responses", {"model": "gpt-4o-mini", "input": "Say"}, {}),
]
PATHS = {
    "chat_completions": "/openai/deployments/gpt-4o-mini/chat/completions",
    "v1_chat_completions": "/openai/v1/chat/completions",
    "completions": "/openai/deployments/gpt-4o-mini/completions",
    "v1_responses": "/openai/v1/responses",
}


def _read(client: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
    received = b""
    try:
        with client.stream("POST", url, json=body, headers=headers) as response:
            assert response.status_code == 200, response.read()
            for chunk in response.iter_raw():
                received += chunk
    except httpx.RemoteProtocolError:  # x-sim-fail-after cuts the connection
        pass
    return received


@pytest.mark.parametrize(
    ("route", "extra", "headers"),
    [pytest.param(route, extra, headers, id=name) for name, route, extra, headers in SIMULATED],
)
def test_every_event_of_every_kind_of_simulated_stream_parses_the_same(
    simulator: Any, route: str, extra: dict[str, Any], headers: dict[str, str]
) -> None:
    body = {"messages": MESSAGES, "stream": True, **extra}
    query = "" if route.startswith("v1_") else "?api-version=2025-04-01-preview"
    with httpx.Client(base_url=simulator.base_url, timeout=10) as client:
        stream = _read(client, PATHS[route] + query, body, {"x-sim-tokens": "12", **headers})
    fast = events_match(stream)
    # Responses API events carry an `event:` line: the general parse, always.
    assert fast == 0 if route == "v1_responses" else fast > 0


# -- the edges ---------------------------------------------------------------------------------------

FAST = {
    "space after data:": b'data: {"a":1}\n\n',
    "no space": b'data:{"a":1}\n\n',
    "two spaces (one is data)": b'data:  {"a":1}\n\n',
    "CRLF": b'data: {"a":1}\r\n\r\n',
    "CR": b'data: {"a":1}\r\r',
    "empty": b"data:\n\n",
    "[DONE]": b"data: [DONE]\n\n",
    "UTF-8 text": 'data: {"content":"Zoë ✓"}\n\n'.encode(),
}
GENERAL = {
    "event line": b'event: response.created\ndata: {"a":1}\n\n',
    "two data lines": b"data: a\ndata: b\n\n",
    "id line after": b"data: a\nid: 7\n\n",
    "comment": b": keep-alive\n\n",
    "mixed line ends": b"data: a\r\n\n",
    "not UTF-8": b'data: {"content":"caf\xe9"}\n\n',
    "encoded surrogate": b'data: {"content":"\xed\xa0\x80"}\n\n',
    "no blank line": b"data: a",
    "lone LF piece": b"\n",
}


@pytest.mark.parametrize("name", FAST)
def test_lone_data_lines_take_the_fast_path_with_the_same_event(name: str) -> None:
    raw = FAST[name]
    assert _lone_data_line(raw) is not None
    assert parse_event(raw) == _parse_fields(raw)


@pytest.mark.parametrize("name", GENERAL)
def test_anything_else_takes_the_general_parse(name: str) -> None:
    raw = GENERAL[name]
    assert _lone_data_line(raw) is None
    assert parse_event(raw) == _parse_fields(raw)
