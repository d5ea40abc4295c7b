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
from typing import Any

from .config import InjectionPolicy, Settings, api_version_date
from .inbound import Call

_NULL_USAGE_LAST = b',"usage":null}'
_NULL_USAGE_FIRST = b'{"usage":null,'
_NULL_USAGE_MIDDLE = b',"usage":null,'
_USAGE_OBJECT = b'"usage":{'
_NO_CHOICES = b'"choices":[]'


class RejectedVersions:
    """(deployment, api-version) pairs whose upstream refused stream_options: not injected again.

    Keyed by deployment too: whether a version accepts the parameter has depended on the model
    behind it. Only a refusal of our own injection is remembered, never one of a caller's body,
    and never one of a call with On Your Data sources or image input: those features did not yet
    support streaming usage when the versions did (Azure.AI.OpenAI 2.1.0 changelog), so their 400
    says nothing about the version.
    """

    def __init__(self) -> None:
        self._keys: set[tuple[str, str]] = set()

    def add(self, call: Call) -> None:
        if _input_reason(call.payload or {}) is None:
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
    reason = _input_reason(call.payload or {})
    if reason is None and not call.is_v1:
        reason = api_version_reason(call.api_version, settings.injection)
    if reason is None and call in rejected:
        reason = "api_version_rejected_stream_options"
    return reason


def api_version_reason(api_version: str | None, policy: InjectionPolicy) -> str | None:
    """None when a dated route's api-version gets include_usage injected, else why not."""
    if not api_version:
        return "no_api_version"
    if api_version in policy.excluded:
        return "api_version_excluded_from_injection"
    if policy.only is not None:
        return None if api_version in policy.only else "api_version_not_in_injection_allow_list"
    if api_version in policy.extra:
        return None
    version_date = api_version_date(api_version)
    if version_date is None:
        return "api_version_not_dated"
    if version_date < policy.min_date:
        return "api_version_before_injection_minimum"
    return None


# Content parts that carry an image: chat's image_url, and the Responses API's input_image.
_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})


def _input_reason(payload: dict[str, Any]) -> str | None:
    """Inputs with which streaming usage was not supported when the versions were (Azure.AI.OpenAI
    2.1.0 changelog: "not yet compatible" with On Your Data and with image input)."""
    if payload.get("data_sources"):
        return "request_has_data_sources"
    messages = payload.get("messages")
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") in _IMAGE_PARTS:
                return "request_has_image_input"
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
