"""Byte-level building blocks of Azure OpenAI's wire format, copied from live recordings.

Azure serialises compactly (`separators=(",", ":")`) and, for chat completions, with keys in
alphabetical order, except inside `prompt_filter_results` (`prompt_index` first) and the
`{"filtered":..,"detected":..}` pairs. The dicts below are written in exactly the recorded order,
so `dumps()` reproduces the bytes; nothing here sorts keys.
"""

from __future__ import annotations

import json
import secrets
import string
import uuid
from typing import Any, Final, NamedTuple

JSON: Final = "application/json"
EVENT_STREAM: Final = "text/event-stream; charset=utf-8"
DONE: Final = b"data: [DONE]\n\n"


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class Event(NamedTuple):
    """One SSE event as sent; `content` marks events that carry generated tokens (text or
    tool-call fragments), which x-sim-fail-after counts."""

    data: bytes
    content: bool = False


def data_event(payload: str, content: bool = False) -> Event:
    return Event(f"data: {payload}\n\n".encode(), content)


def named_event(name: str, payload: str, content: bool = False) -> Event:
    # Responses-API framing: an `event:` line before the data line.
    return Event(f"event: {name}\ndata: {payload}\n\n".encode(), content)


# --- content filter annotations (Azure AI Content Safety), in recorded key order -------------
SAFE: Final = {"filtered": False, "severity": "safe"}
NOT_DETECTED: Final = {"filtered": False, "detected": False}
FILTERED_MEDIUM: Final = {"filtered": True, "severity": "medium"}


def prompt_filter_results(prompts: int = 1, jailbreak: bool = True) -> list[dict[str, Any]]:
    """The prompt annotations; the legacy completions recording predates the jailbreak check."""
    results: dict[str, Any] = {"hate": SAFE}
    if jailbreak:
        results["jailbreak"] = NOT_DETECTED
    results.update({"self_harm": SAFE, "sexual": SAFE, "violence": SAFE})
    return [{"prompt_index": i, "content_filter_results": results} for i in range(prompts)]


# Per-chunk annotation on streamed text; role, tool-call and finish chunks carry `{}` instead.
CHUNK_FILTER: Final = {"hate": SAFE, "self_harm": SAFE, "sexual": SAFE, "violence": SAFE}
# What a stream or body carries when the completion itself was filtered (x-sim-content-filter).
CHUNK_FILTER_BLOCKED: Final = {
    "hate": SAFE,
    "self_harm": SAFE,
    "sexual": SAFE,
    "violence": FILTERED_MEDIUM,
}
# Non-streamed completions add the protected-material checks.
COMPLETION_FILTER: Final = {
    "hate": SAFE,
    "protected_material_code": NOT_DETECTED,
    "protected_material_text": NOT_DETECTED,
    "self_harm": SAFE,
    "sexual": SAFE,
    "violence": SAFE,
}
COMPLETION_FILTER_BLOCKED: Final = {**COMPLETION_FILTER, "violence": FILTERED_MEDIUM}


# --- ids ---------------------------------------------------------------------------------------
_ALPHABET: Final = string.ascii_letters + string.digits


def random_id(prefix: str, length: int) -> str:
    # One urandom call per id (not per character): ids are made for every call and tool call.
    return prefix + "".join(_ALPHABET[b % len(_ALPHABET)] for b in secrets.token_bytes(length))


def request_ids() -> tuple[str, str]:
    """(apim-request-id, x-request-id): fresh UUIDs per call, as Azure sends them."""
    return str(uuid.uuid4()), str(uuid.uuid4())


# `obfuscation` pads each chunk to a random length so sizes do not leak tokens. A fixed pool keeps
# it cheap per event while still varying in length (0-15 characters, as recorded).
_OBFUSCATION_POOL: Final = tuple(
    "".join(_ALPHABET[(i * 7 + j * 13) % len(_ALPHABET)] for j in range(i % 16)) for i in range(64)
)


def obfuscation(seq: int) -> str:
    return _OBFUSCATION_POOL[seq % len(_OBFUSCATION_POOL)]


def response_headers(
    *,
    content_type: str,
    deployment: str,
    region: str,
    model_session: str,
    limit_requests: int,
    limit_tokens: int,
    tokens_used: int,
    client_request_id: str | None,
) -> dict[str, str]:
    """Headers of a successful answer, in the recorded order. `x-ms-client-request-id` is only
    sent on the v1 API (pass None elsewhere), echoing the caller's or `Not-Set`."""
    apim_id, request_id = request_ids()
    headers = {
        "Content-Type": content_type,
        "Strict-Transport-Security": "max-age=31536000; includeSubDomains; preload",
        "apim-request-id": apim_id,
        "azureml-model-session": model_session,
        "x-accel-buffering": "no",
        "x-content-type-options": "nosniff",
    }
    if client_request_id is not None:
        headers["x-ms-client-request-id"] = client_request_id
    headers.update(
        {
            "x-ms-deployment-name": deployment,
            "x-ms-rai-invoked": "true",
            "x-ms-region": region,
            "x-ratelimit-limit-requests": str(limit_requests),
            "x-ratelimit-limit-tokens": str(limit_tokens),
            "x-ratelimit-remaining-requests": str(limit_requests - 1),
            "x-ratelimit-remaining-tokens": str(max(0, limit_tokens - tokens_used)),
            "x-request-id": request_id,
        }
    )
    return headers
