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
    """(deployment, api-version) pairs whose upstream refused stream_options: not injected again.

    Keyed by deployment too: whether a version accepts the parameter has depended on the model
    behind it. Only a refusal of our own injection is remembered, never one of a caller's body.
    """

    def __init__(self) -> None:
        self._keys: set[tuple[str, str]] = set()

    def add(self, call: Call) -> None:
        self._keys.add(_rejection_key(call))

    def __contains__(self, call: object) -> bool:
        return isinstance(call, Call) and _rejection_key(call) in self._keys


def injection_decision(call: Call, settings: Settings, rejected: RejectedVersions) -> str | None:
    """None when include_usage should be injected, else why not."""
    if not call.stream:
        return "not_streamed"  # usage comes in the body, if the API reports any
    if call.operation != "chat":
        return "operation_not_injected"  # legacy completions; Responses API has response.completed
    if call.include_usage_requested:
        return "client_requested_usage"
    if not call.is_v1 and not call.api_version:
        return "no_api_version"
    if not call.is_v1 and call.api_version not in settings.inject_api_versions:
        return "api_version_not_in_injection_allow_list"
    if call in rejected:
        return "api_version_rejected_stream_options"
    return None


def _rejection_key(call: Call) -> tuple[str, str]:
    # The v1 API has no api-version; it is tracked as "v1".
    return (call.deployment or "", "v1" if call.is_v1 else (call.api_version or ""))


def injected_body(call: Call) -> bytes | None:
    """The body with include_usage asked for, or None when that cannot be done safely.

    Without a stream_options member the edit is a byte-level append, so every other byte of the
    caller's body goes upstream unchanged. Merging into an existing member re-serialises (ASCII,
    strict JSON); a body that cannot be written back as valid JSON is not injected.
    """
    payload = call.payload or {}
    if "stream_options" not in payload:
        body = call.body.rstrip()
        if body.endswith(b"}"):
            return body[:-1] + b',"stream_options":{"include_usage":true}}'
    options = payload.get("stream_options")
    merged = {
        **payload,
        "stream_options": {**(options if isinstance(options, dict) else {}), "include_usage": True},
    }
    try:
        return json.dumps(
            merged, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode()
    except ValueError:  # e.g. 1e400 parsed as infinity: not representable in JSON
        return None


# How Azure OpenAI words a parameter it does not know (the 400 body names the parameter).
_UNKNOWN_PARAMETER_MARKERS = (
    b"nrecognized request argument",
    b"nknown parameter",
    b"unknown_parameter",
)


def rejects_stream_options(status: int, body: bytes) -> bool:
    return (
        status == 400
        and b"stream_options" in body
        and any(marker in body for marker in _UNKNOWN_PARAMETER_MARKERS)
    )


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
