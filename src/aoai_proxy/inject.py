"""Exact stream usage without the client's cooperation: inject include_usage, then un-inject.

With `stream_options.include_usage`, Azure OpenAI adds `"usage":null` to every chunk and one last
event with `"choices":[]` and the usage (compare chat_stream.sse and chat_stream_usage.sse in the
recorded fixtures). To hand the client the bytes it would have had without injection, the relay
drops that last event and cuts the `"usage":null` member out of the others: byte edits on the
raw event, never a re-serialisation. A JSON string cannot hold an unescaped `"`, so the patterns
below can only match JSON structure, never text the model wrote.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from .config import Settings
from .inbound import Call

_NULL_USAGE_LAST = b',"usage":null}'
_NULL_USAGE_FIRST = b'{"usage":null,'
_NULL_USAGE_MIDDLE = b',"usage":null,'
_USAGE_OBJECT = b'"usage":{'
_NO_CHOICES = b'"choices":[]'


class RejectedVersions:
    """api-versions that answered 400 to stream_options: not injected again in this process."""

    def __init__(self) -> None:
        self._versions: set[str] = set()

    def add(self, api_version: str) -> None:
        self._versions.add(api_version)

    def __contains__(self, api_version: object) -> bool:
        return api_version in self._versions


def injection_decision(call: Call, settings: Settings, rejected: RejectedVersions) -> str | None:
    """None when include_usage should be injected, else why not (the record's source_reason)."""
    if not call.stream:
        return "not_streamed"  # usage comes in the body, if the API reports any
    if call.operation != "chat":
        return "operation_not_injected"  # legacy completions; Responses API has response.completed
    if call.include_usage_requested:
        return "client_requested_usage"
    key = version_key(call)
    if not key:
        return "no_api_version"
    if not call.is_v1 and key not in settings.inject_api_versions:
        return "api_version_not_in_injection_allow_list"
    if key in rejected:
        return "api_version_rejected_stream_options"
    return None


def version_key(call: Call) -> str:
    """The v1 API has no api-version; it is tracked as "v1"."""
    return "v1" if call.is_v1 else (call.api_version or "")


def injected_body(call: Call) -> bytes:
    payload = dict(call.payload or {})
    options = payload.get("stream_options")
    payload["stream_options"] = {
        **(options if isinstance(options, dict) else {}),
        "include_usage": True,
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def rejects_stream_options(status: int, body: bytes) -> bool:
    return status == 400 and b"stream_options" in body


def uninject(events: Iterable[bytes]) -> bytes:
    """The client's view of a batch of raw events from an injected stream."""
    out = bytearray()
    for raw in events:
        if _USAGE_OBJECT in raw and _NO_CHOICES in raw:
            continue  # the usage event we asked for
        if raw.count(b'"usage":null') == 1:
            if _NULL_USAGE_LAST in raw:
                raw = raw.replace(_NULL_USAGE_LAST, b"}", 1)
            elif _NULL_USAGE_FIRST in raw:
                raw = raw.replace(_NULL_USAGE_FIRST, b"{", 1)
            elif _NULL_USAGE_MIDDLE in raw:
                raw = raw.replace(_NULL_USAGE_MIDDLE, b",", 1)
        out += raw
    return bytes(out)
