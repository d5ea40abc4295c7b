"""Helpers to compare SSE streams by structure: which event kinds come in which order, and which
keys (nested, in order) each kind carries. Values that differ per call (ids, times, text,
obfuscation padding) are ignored; key order is not."""

from __future__ import annotations

import json
from typing import Any


def split_events(body: bytes) -> list[bytes]:
    """Events of an SSE body, each without its trailing blank line."""
    return [e for e in body.split(b"\n\n") if e.strip()]


def data_of(event: bytes) -> Any:
    line = next(ln for ln in event.split(b"\n") if ln.startswith(b"data: "))
    payload = line[len(b"data: ") :]
    return None if payload == b"[DONE]" else json.loads(payload)


def shape(value: Any) -> Any:
    """Keys in order with the type of each leaf (lists: the shapes of their items)."""
    if isinstance(value, dict):
        return [(k, shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def kind(event: Any) -> str:
    """A chat chunk's role in the stream."""
    if event is None:
        return "done"
    if event.get("prompt_filter_results") is not None:
        return "prompt_filter"
    if not event["choices"]:
        return "usage"
    choice = event["choices"][0]
    delta = choice["delta"]
    if choice["finish_reason"] is not None:
        return "finish"
    if "role" in delta:
        return "role"
    if "tool_calls" in delta:
        return "tool_head" if "id" in delta["tool_calls"][0] else "tool_args"
    return "content"


def kinds(body: bytes) -> list[str]:
    """Event kinds with runs of the same kind collapsed (the number of tokens differs)."""
    out: list[str] = []
    for event in split_events(body):
        k = kind(data_of(event))
        if not out or out[-1] != k or k in ("tool_head",):
            out.append(k)
    return out


def shapes_by_kind(body: bytes) -> dict[str, Any]:
    """The shape of the first event of each kind (all events of a kind share it)."""
    found: dict[str, Any] = {}
    for event in split_events(body):
        data = data_of(event)
        found.setdefault(kind(data), shape(data))
    return found
